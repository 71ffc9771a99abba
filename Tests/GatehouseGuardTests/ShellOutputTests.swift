import Foundation
import Testing
@testable import GatehouseGuard

/// What `echo`, `printf` and `$'...'` make of their arguments is held to bash and dash themselves: each
/// sample runs in the real shell and through the guard's reading, byte for byte.
@Suite("echo, printf and $'...' read as bash and dash write them")
struct ShellOutputTests {
    /// The shell's standard output for `script` with `arguments` as `$1`, `$2`, ...
    static func shell(_ program: String, _ script: String, _ arguments: [String]) throws -> [UInt8] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/" + program)
        process.arguments = ["-c", script, "sample"] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Array(data)
    }

    static let escapes = [
        #"a\nb\tc\\d"#, #"\x41\x4|\x|\xZ|\x414"#, #"\u72m|\u00e9|\U0001F600|\U|\u|\ud800|\U110000|\U7FFFFFFF|\U80000000"#,
        #"\0101|\101|\1010|\0|\08|\8|\9"#, #"\q|\"|\?|\'|\e\E"#, #"\a\b\f\v\r|\377|\400"#,
        #"DELETE FROM users WHERE false --\012OR true"#, #"-- \0012 OR true"#, #"--\u000a OR true"#, "plain é text",
        #"stops\c here"#, #"ends with \c"#,
    ]

    static let echoes: [[String]] = escapes.map { [$0] } + escapes.map { ["-e", $0] } + [
        ["-e", "a\\nb", "c\\cd", "e"], ["-eE", "x\\ny"], ["-Ee", "x\\ny"], ["-E", "-e", "a\\n"], ["-n", "-n", "x"], ["-ne", "a\\nb"],
        ["--", "x"], ["-1; DROP TABLE users"], ["-x", "y"], ["-", "y"], ["-nex", "z"], ["-e"], [], ["-n"],
        ["-E", ";DELETE FROM users WHERE false -- \\n OR true"], ["-e", ";DELETE FROM users WHERE false --\\12 OR true"],
    ]

    static let printfs: [[String]] = escapes.map { [$0] } + escapes.map { ["%b|%s", $0, $0] } + [
        ["%5.2s|%-4s|%03d|%x|%c|%b|%s\\n", "abc", "d", "7", "255", "xyz", "a\\0101\\cZ", "tail"], ["%s-%s;", "a", "b", "c"],
        ["%d|", "abc", "12x", "'A", "0x1F", "010", "-5", " 7", "+3", "0x"], ["%.3b|\\n", "ab\\ncd"], ["x%%y\\n"], ["%*d|%-*d|\\n", "5", "42", "4", "1"],
        ["--", "--\\nDROP"], ["-v", "v", "x"], ["-x"], ["no directives", "extra"], ["%s"], ["%d %s\\n"], ["%.*s|", "3", "abcdef"],
        ["DELETE FROM users WHERE false --%b OR true", "\\n"], ["DELETE FROM users WHERE false --%s OR true", "\n"], ["%.17s", "DELETE FROM users WHERE id = 1"],
        ["%-5d|%+d|% d|%#o|%#x|%5.3d|%u\\n", "3", "3", "3", "8", "255", "7", "-1"], ["%e|%.2f|%g|%10.3E\\n", "1.5", "2.345", "0.0001", "12345.678"],
        ["%c%c%c|", "", "ab", "é"], ["%s", "a\\nb"], ["%b", "DELETE FROM users --\\c\\n WHERE id = 1"], ["trailing %"], ["%5"], ["a\\cb"],
        ["%'d|%ld|%hd\\n", "1234567", "5", "6"], ["a%kb|", "x"], ["a%5.2kb"],
        ["%(DROP TABLE users;)T|%-20(plain)T|"], ["SELECT 1;%n DROP TABLE users;", "x"], ["%Q|%.3Q|%5.2Q|", "a b", "a b c", "x;y"],
        ["SELECT '%q'", ";DROP TABLE users;--\u{85}"], ["%q", "é and \u{7}"], ["SELECT 1 %.*s|", "18446744073709551616", "; DROP TABLE users"],
        ["%.*s|", "\n\u{0B} 3", "abcdef"], ["%d|%d|", "99999999999999999999", "-99999999999999999999"], ["%.2147483648sDELETE FROM users", "--"],
        ["%e|%f|", "1e300", "  -2.5e-3x"], ["%f|%f", "inf", "nan"],
        ["%q|%q|%q|%q|%q", "a b!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~z", "", "#a=b~c", "x\ny\u{1}'\\\u{7F}", "é"], ["%5.3q|", "abcdef"],
    ]

    /// Each modelled shell and how to run it.
    static let shells: [(ShellOutput.Shell, String, String)] = [(.bash, "bash", ""), (.bashXPG, "bash", "shopt -s xpg_echo; "), (.dash, "dash", "")]

    @Test("echo, as bash (also with xpg_echo) and dash write it", arguments: shells)
    func echo(shell: ShellOutput.Shell, program: String, setting: String) throws {
        for arguments in Self.echoes {
            #expect(ShellOutput.echo(arguments, shell: shell) == (try Self.shell(program, setting + #"echo "$@""#, arguments)), "\(shell): echo \(arguments)")
        }
    }

    @Test("printf, as bash and dash write it", arguments: shells)
    func printf(shell: ShellOutput.Shell, program: String, setting: String) throws {
        for arguments in Self.printfs {
            #expect(ShellOutput.printf(arguments, shell: shell) == (try Self.shell(program, setting + #"printf "$@""#, arguments)), "\(shell): printf \(arguments)")
        }
    }

    @Test("an unquoted here-document is taken as expanding where bash expands it")
    func hereDocuments() throws {
        for body in ["SELECT 1;", "SELECT '$';", "LIKE '$%'", #"DO \$\$ BEGIN END \$\$;"#, "SELECT '$HOME';", "SELECT $$;", "SELECT `echo 1`;",
                     "SELECT ${HOME:-1};", "SELECT $(echo 1);", "SELECT $1;", #"SELECT '\`';"#, "cost: 5$ each", #"a\\$HOME"#] {
            // What bash writes when nothing expands: the body with `\$`, `\``, `\\` unescaped.
            let unescaped = body.replacingOccurrences(of: #"\\"#, with: "\u{1}").replacingOccurrences(of: #"\$"#, with: "$")
                .replacingOccurrences(of: #"\`"#, with: "`").replacingOccurrences(of: "\u{1}", with: #"\"#)
            let real = String(decoding: try Self.shell("bash", "cat <<EOF\n\(body)\nEOF", []), as: UTF8.self)
            #expect(ShellLexer.expands(body) == (real != unescaped + "\n"), "\(body): bash wrote \(real)")
            if !ShellLexer.expands(body) {
                #expect(try ShellLexer.split("cat <<EOF\n\(body)\nEOF").commands.first?.input == real, "the body as cat reads it")
            }
        }
    }

    @Test("a printf that would write more than the guard follows is not followed")
    func printfBounded() {
        #expect(ShellOutput.printf(["%1048577s"], shell: .bash) == nil)
        #expect(ShellOutput.printf(["%2000000d|"] + Array(repeating: "1", count: 3), shell: .dash) == nil)
        #expect(ShellOutput.printf(["%.2147483648s|"], shell: .bash) == Array("|".utf8), "past C's int, bash drops the directive")
        #expect(ShellOutput.printf(["%.3f", String(repeating: "9", count: 100_000)], shell: .bash) != nil, "a long number is read from its start")
    }

    @Test("bash's $'...', as the shell lexer reads it")
    func ansiC() throws {
        for sample in Self.escapes + [#"\cA\cz|\c?|\c\\|\c\n|\c"#, #"a\c"#, #"rm\0 ignored"#, #"\u0000x"#, #"x\'y"#] {
            let quoted = sample.replacingOccurrences(of: "\\'", with: "\\x27")
            let real = try Self.shell("bash", "printf %s $'\(quoted)'", [])
            let words = try ShellLexer.split("printf %s $'\(quoted)'").commands.first?.words.map(\.text)
            #expect(words?.last == String(decoding: real, as: UTF8.self), "$'\(quoted)'")
        }
        // `\c` before the closing quote stays as written, and the quote closes.
        let script = try ShellLexer.split(#"echo $'\c'; rm -rf / #'"#)
        #expect(script.commands.count == 2)
        #expect(script.commands.first?.words.last?.text == #"\c"#)
    }
}
