import Foundation
import Testing
@testable import GatehouseGuard

/// The escape dialects are held to the shells they stand for: each sample is expanded by bash or dash
/// itself and by the decoder, byte for byte.
@Suite("Backslash escapes read as bash and dash read them")
struct BackslashEscapesTests {
    static let samples = [
        #"a\nb\tc\\d"#, #"\x41\x4|\x|\xZ|\x414"#, #"\u72m|\u00e9|\U0001F600|\U|\u"#, #"\0101|\101|\1010|\0|\08|\8|\9"#,
        #"\q|\"|\?|\'|\e\E"#, #"\a\b\f\v\r|\377|\400"#, #"DELETE FROM users WHERE false --\012OR true"#,
        #"-- \0012 OR true"#, #"--\u000a OR true"#, "plain é text",
    ]

    /// The shell's output for a script given the sample as `$1`.
    static func shell(_ program: String, _ script: String, _ sample: String) throws -> [UInt8] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/" + program)
        process.arguments = ["-c", script, "sample", sample]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Array(data)
    }

    @Test("printf's format, echo -e and plain echo, as bash and dash expand them", arguments: [
        ("bash", #"printf -- "$1""#, BackslashEscapes.bashPrintf),
        ("dash", #"printf -- "$1""#, BackslashEscapes.dashPrintf),
        ("bash", #"echo -ne "$1""#, BackslashEscapes.bashEcho),
        ("dash", #"echo -n "$1""#, BackslashEscapes.dashEcho),
    ])
    func commands(program: String, script: String, dialect: BackslashEscapes) throws {
        for sample in Self.samples {
            #expect(dialect.expanding(Array(sample.utf8)) == (try Self.shell(program, script, sample)), "\(program) \(script) with \(sample)")
        }
    }

    @Test("bash's $'...'")
    func ansiC() throws {
        for sample in Self.samples + [#"\cA\cz"#] {
            let quoted = sample.replacingOccurrences(of: "\\'", with: "\\x27")
            let real = try Self.shell("bash", "printf %s $'\(quoted)'", "")
            #expect(BackslashEscapes.ansiC.expanding(Array(quoted.utf8)) == real, "$'\(quoted)'")
        }
    }
}
