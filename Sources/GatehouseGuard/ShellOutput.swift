import Foundation

/// What `echo` and `printf` write, byte for byte, as bash and as dash (`sh`) write it: the text a pipe hands
/// the next command (`printf 'DELETE ... -- %b OR true' '\n' | psql` sends two lines). The two shells read
/// options and escapes differently, so a caller judges both.
enum ShellOutput {
    enum Shell: CaseIterable, Sendable {
        /// bash; `bashXPG` is bash with `xpg_echo` set (`shopt -s xpg_echo`, `bash -O xpg_echo`), whose echo expands
        /// escapes without `-e`, as coreutils' echo does under POSIXLY_CORRECT. Their printf is the same.
        case bash, bashXPG, dash
    }

    /// `echo ARGUMENTS`. bash takes leading words made only of `-n`, `-e`, `-E` letters as options (the last of
    /// `e` and `E` counts); dash takes a first `-n` alone and always expands escapes. `\c` ends all output.
    static func echo(_ arguments: [String], shell: Shell) -> [UInt8] {
        var rest = arguments[...]
        var newline = true
        var escapes: BackslashEscapes?
        switch shell {
        case .bash, .bashXPG:
            if shell == .bashXPG { escapes = .bashEcho }
            for option in rest.prefix(bashEchoOptions(arguments)) {
                for flag in option.dropFirst() {
                    if flag == "n" { newline = false } else { escapes = flag == "e" ? .bashEcho : nil }
                }
            }
            rest = rest.dropFirst(bashEchoOptions(arguments))
        case .dash:
            escapes = .dashEcho
            if rest.first == "-n" {
                newline = false
                rest = rest.dropFirst()
            }
        }
        var out: [UInt8] = []
        for (index, argument) in rest.enumerated() {
            if index > 0 { out.append(UInt8(ascii: " ")) }
            guard let escapes else {
                out.append(contentsOf: argument.utf8)
                continue
            }
            let (bytes, stopped) = escapes.expanding(Array(argument.utf8))
            out.append(contentsOf: bytes)
            if stopped { return out }
        }
        if newline { out.append(0x0A) }
        return out
    }

    /// How many leading words bash's echo takes as options: each `-` and only the letters n, e and E.
    static func bashEchoOptions(_ arguments: [String]) -> Int {
        arguments.prefix { $0.count > 1 && $0.hasPrefix("-") && $0.dropFirst().allSatisfy { "neE".contains($0) } }.count
    }

    /// The most a `printf` is followed to write (widths can ask for far more than its command line holds).
    static let maximumOutput = 1 << 20

    /// `printf FORMAT ARGUMENTS`: the format's escapes in the shell's printf dialect, its directives (`%s`,
    /// `%b`, `%c`, numbers, `%%`, with flags, width and precision, `*` from the arguments), used again while
    /// arguments remain. `-v NAME` (bash) writes into a variable and any other option is an error: nothing
    /// reaches the pipe. Nil when it would write more than `maximumOutput` bytes.
    static func printf(_ arguments: [String], shell: Shell) -> [UInt8]? {
        var rest = arguments[...]
        if rest.first == "--" {
            rest = rest.dropFirst()
        } else if let first = rest.first, first.count > 1, first.hasPrefix("-") {
            return []
        }
        guard let format = rest.first.map({ Array($0.utf8) }) else { return [] }
        var printf = Printf(format: format, arguments: Array(rest.dropFirst()), shell: shell)
        return printf.run()
    }

    private struct Printf {
        let format: [UInt8]
        let arguments: [String]
        let shell: Shell
        let escapes: BackslashEscapes
        let argumentEscapes: BackslashEscapes
        var next = 0
        var out: [UInt8] = []

        init(format: [UInt8], arguments: [String], shell: Shell) {
            self.format = format
            self.arguments = arguments
            self.shell = shell
            escapes = shell == .dash ? .dashPrintf : .bashPrintf
            argumentEscapes = shell == .dash ? .dashEcho : .bashPercentB
        }

        mutating func run() -> [UInt8]? {
            repeat {
                let before = next
                guard pass() else { return out }
                if out.count > ShellOutput.maximumOutput { return nil }
                // The format is used again only while a pass takes arguments.
                if next == before { break }
            } while next < arguments.count
            return out
        }

        /// One pass over the format; false when a `%b`'s `\c` or a directive the shell refuses ended all output.
        private mutating func pass() -> Bool {
            var index = 0
            while index < format.count, out.count <= ShellOutput.maximumOutput {
                let byte = format[index]
                if byte == UInt8(ascii: "\\"), case .next(let end)? = escapes.decode(format, backslash: index, into: &out) {
                    index = end
                } else if byte == UInt8(ascii: "%") {
                    guard let end = directive(at: index + 1) else { return false }
                    index = end
                } else {
                    out.append(byte)
                    index += 1
                }
            }
            return true
        }

        private mutating func argument() -> String? {
            guard next < arguments.count else { return nil }
            defer { next += 1 }
            return arguments[next]
        }

        /// The directive after a `%` at `start`: writes it and returns the index after it; nil when it ends all
        /// output (`%b`'s `\c`; a directive the shell refuses: the shell stops there with an error).
        private mutating func directive(at start: Int) -> Int? {
            var index = start
            guard index < format.count else { return nil }
            if format[index] == UInt8(ascii: "%") {
                out.append(UInt8(ascii: "%"))
                return index + 1
            }
            var flags = ""
            while index < format.count, "-+ #0'".utf8.contains(format[index]) {
                // dash knows no `'` (grouping) flag.
                if format[index] == UInt8(ascii: "'") {
                    if shell == .dash { return nil }
                } else {
                    flags.append(Character(Unicode.Scalar(format[index])))
                }
                index += 1
            }
            var width: Int?
            // A width or precision written past C's int makes the C library drop the directive (bash writes nothing
            // for it and goes on) or the shell refuse it (dash stops).
            var tooLarge = false
            if index < format.count, format[index] == UInt8(ascii: "*") {
                let value = Self.integer(argument() ?? "")
                if value < 0 { flags.append("-") }
                width = Int(clamping: min(value.magnitude, UInt64(ShellOutput.maximumOutput + 1)))
                index += 1
            } else {
                width = digits(&index, tooLarge: &tooLarge)
            }
            var precision: Int?
            if index < format.count, format[index] == UInt8(ascii: ".") {
                index += 1
                if index < format.count, format[index] == UInt8(ascii: "*") {
                    let value = Self.integer(argument() ?? "")
                    precision = value < 0 ? nil : Int(clamping: min(value, Int64(ShellOutput.maximumOutput + 1)))
                    index += 1
                } else {
                    precision = digits(&index, tooLarge: &tooLarge) ?? 0
                }
            }
            // bash takes C's length modifiers and ignores them; dash refuses them.
            while index < format.count, "hlLjzt".utf8.contains(format[index]) {
                if shell == .dash { return nil }
                index += 1
            }
            guard index < format.count else { return nil }
            let conversion = format[index]
            if tooLarge {
                guard shell != .dash else { return nil }
                _ = argument()
                return index + 1
            }
            switch conversion {
            case UInt8(ascii: "(") where shell != .dash:
                // bash's `%(FORMAT)T`: a time in strftime's FORMAT; its text is taken as written.
                guard let close = format[(index + 1)...].firstIndex(of: UInt8(ascii: ")")), close + 1 < format.count,
                      format[close + 1] == UInt8(ascii: "T") else { return nil }
                _ = argument()
                let text = Array(format[(index + 1)..<close])
                pad(precision.map { Array(text.prefix($0)) } ?? text, width: width, left: flags.contains("-"))
                return close + 2
            case UInt8(ascii: "n") where shell != .dash:
                // bash's `%n`: the count so far goes into the variable named by the argument; nothing is written.
                _ = argument()
            case UInt8(ascii: "s"):
                let text = Array((argument() ?? "").utf8)
                pad(precision.map { Array(text.prefix($0)) } ?? text, width: width, left: flags.contains("-"))
            case UInt8(ascii: "b"):
                let (text, stopped) = argumentEscapes.expanding(Array((argument() ?? "").utf8))
                pad(precision.map { Array(text.prefix($0)) } ?? text, width: width, left: flags.contains("-"))
                if stopped { return nil }
            case UInt8(ascii: "c"):
                // The first byte; an empty argument gives a zero byte.
                pad([(argument() ?? "").utf8.first ?? 0], width: width, left: flags.contains("-"))
            case UInt8(ascii: "q") where shell != .dash:
                let text = Self.quoted(Array((argument() ?? "").utf8))
                pad(precision.map { Array(text.prefix($0)) } ?? text, width: width, left: flags.contains("-"))
            case UInt8(ascii: "Q") where shell != .dash:
                // As `%q`, the precision cutting the argument before it is quoted.
                let argument = Array((argument() ?? "").utf8)
                let text = Self.quoted(precision.map { Array(argument.prefix($0)) } ?? argument)
                pad(text, width: width, left: flags.contains("-"))
            case UInt8(ascii: "d"), UInt8(ascii: "i"), UInt8(ascii: "o"), UInt8(ascii: "u"), UInt8(ascii: "x"), UInt8(ascii: "X"):
                let spec = "%\(flags)\(width.map(String.init) ?? "")\(precision.map { ".\($0)" } ?? "")ll\(Character(Unicode.Scalar(conversion)))"
                out.append(contentsOf: String(format: spec, Self.integer(argument() ?? "")).utf8)
            case UInt8(ascii: "e"), UInt8(ascii: "E"), UInt8(ascii: "f"), UInt8(ascii: "F"), UInt8(ascii: "g"), UInt8(ascii: "G"),
                 UInt8(ascii: "a"), UInt8(ascii: "A"):
                let spec = "%\(flags)\(width.map(String.init) ?? "")\(precision.map { ".\($0)" } ?? "")\(Character(Unicode.Scalar(conversion)))"
                out.append(contentsOf: String(format: spec, Self.real(argument() ?? "")).utf8)
            default:
                // A conversion the shell does not know: it stops there.
                return nil
            }
            return index + 1
        }

        private func digits(_ index: inout Int, tooLarge: inout Bool) -> Int? {
            var value: Int?
            while index < format.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(format[index]) {
                value = min((value ?? 0) * 10 + Int(format[index] - UInt8(ascii: "0")), Int(Int32.max) + 1)
                index += 1
            }
            if let value, value > Int(Int32.max) { tooLarge = true }
            return value.map { min($0, ShellOutput.maximumOutput + 1) }
        }

        private mutating func pad(_ text: [UInt8], width: Int?, left: Bool) {
            let fill = [UInt8](repeating: UInt8(ascii: " "), count: max(0, (width ?? 0) - text.count))
            out.append(contentsOf: left ? text + fill : fill + text)
        }

        /// bash's `%q`: the argument quoted for the shell to read back (`a\ b`, `''`, and `$'a\nb'` when it holds a
        /// character that does not print: a control character, C1's included, or bytes that are not UTF-8, each
        /// such byte written in octal).
        static func quoted(_ bytes: [UInt8]) -> [UInt8] {
            if bytes.isEmpty { return Array("''".utf8) }
            // The text's characters, each with whether it prints.
            var characters: [(bytes: ArraySlice<UInt8>, prints: Bool)] = []
            var index = 0
            while index < bytes.count {
                let length = Self.sequenceLength(bytes, at: index)
                let slice = bytes[index..<(index + max(length, 1))]
                let scalar = length > 0 ? String(decoding: slice, as: UTF8.self).unicodeScalars.first : nil
                let prints = scalar.map { !($0.value < 0x20 || (0x7F...0x9F).contains($0.value)) } ?? false
                characters.append((slice, prints))
                index += max(length, 1)
            }
            if characters.contains(where: { !$0.prints }) {
                var out = Array("$'".utf8)
                for character in characters {
                    guard !character.prints else {
                        if let byte = character.bytes.first, character.bytes.count == 1, byte == UInt8(ascii: "'") || byte == UInt8(ascii: "\\") {
                            out += [UInt8(ascii: "\\"), byte]
                        } else {
                            out += character.bytes
                        }
                        continue
                    }
                    for byte in character.bytes {
                        switch byte {
                        case 0x07: out += Array(#"\a"#.utf8)
                        case 0x08: out += Array(#"\b"#.utf8)
                        case 0x09: out += Array(#"\t"#.utf8)
                        case 0x0A: out += Array(#"\n"#.utf8)
                        case 0x0B: out += Array(#"\v"#.utf8)
                        case 0x0C: out += Array(#"\f"#.utf8)
                        case 0x0D: out += Array(#"\r"#.utf8)
                        case 0x1B: out += Array(#"\E"#.utf8)
                        default: out += Array(String(format: "\\%03o", Int(byte)).utf8)
                        }
                    }
                }
                return out + [UInt8(ascii: "'")]
            }
            var out: [UInt8] = []
            for (index, byte) in bytes.enumerated() {
                if #" !"$&'()*,;<>?[\]^`{|}"#.utf8.contains(byte) || (index == 0 && (byte == UInt8(ascii: "#") || byte == UInt8(ascii: "~"))) {
                    out.append(UInt8(ascii: "\\"))
                }
                out.append(byte)
            }
            return out
        }

        /// The length of the well-formed UTF-8 sequence at `index`; 0 when the byte there starts none.
        static func sequenceLength(_ bytes: [UInt8], at index: Int) -> Int {
            let first = bytes[index]
            let length = first < 0x80 ? 1 : first >= 0xC2 && first < 0xE0 ? 2 : first >= 0xE0 && first < 0xF0 ? 3 : first >= 0xF0 && first < 0xF5 ? 4 : 0
            guard length > 0, index + length <= bytes.count else { return 0 }
            return String(validating: bytes[index..<(index + length)], as: UTF8.self) == nil ? 0 : length
        }

        /// A number argument as C's strtoll reads it (base 0, as far as it goes), or a quote and a character's code.
        static func integer(_ text: String) -> Int64 {
            var bytes = Array(text.utf8)[...]
            if let first = bytes.first, first == UInt8(ascii: "'") || first == UInt8(ascii: "\"") {
                return Int64(bytes.dropFirst().first ?? 0)
            }
            // strtoll skips white space: space, tab, newline, vertical tab, form feed, carriage return.
            while let first = bytes.first, first == UInt8(ascii: " ") || (0x09...0x0D).contains(first) { bytes = bytes.dropFirst() }
            var negative = false
            if let sign = bytes.first, sign == UInt8(ascii: "-") || sign == UInt8(ascii: "+") {
                negative = sign == UInt8(ascii: "-")
                bytes = bytes.dropFirst()
            }
            var radix: UInt8 = 10
            if bytes.first == UInt8(ascii: "0") {
                if bytes.dropFirst().first.map({ $0 | 0x20 }) == UInt8(ascii: "x"), bytes.dropFirst(2).first?.hexDigitValue != nil {
                    radix = 16
                    bytes = bytes.dropFirst(2)
                } else {
                    radix = 8
                }
            }
            // As strtoll: past the range, the largest (or smallest) value.
            var value: Int64 = 0
            var overflow = false
            for byte in bytes {
                guard let digit = byte.hexDigitValue, digit < radix else { break }
                let (times, over) = value.multipliedReportingOverflow(by: Int64(radix))
                let (sum, overAgain) = times.addingReportingOverflow(Int64(digit))
                if over || overAgain { overflow = true }
                value = overflow ? Int64.max : sum
            }
            if overflow { return negative ? Int64.min : Int64.max }
            return negative ? -value : value
        }

        /// A real-number argument as far as it reads as one (decimal digits, a point, an exponent; `inf`, `nan`).
        static func real(_ text: String) -> Double {
            let bytes = Array(text.utf8.drop { $0 == UInt8(ascii: " ") || (0x09...0x0D).contains($0) }.prefix(400))
            var end = 0
            if end < bytes.count, bytes[end] == UInt8(ascii: "-") || bytes[end] == UInt8(ascii: "+") { end += 1 }
            let digits = { (from: Int) -> Int in
                var at = from
                while at < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[at]) { at += 1 }
                return at
            }
            var mantissaEnd = digits(end)
            if mantissaEnd < bytes.count, bytes[mantissaEnd] == UInt8(ascii: ".") { mantissaEnd = digits(mantissaEnd + 1) }
            if mantissaEnd < bytes.count, bytes[mantissaEnd] | 0x20 == UInt8(ascii: "e") {
                var exponent = mantissaEnd + 1
                if exponent < bytes.count, bytes[exponent] == UInt8(ascii: "-") || bytes[exponent] == UInt8(ascii: "+") { exponent += 1 }
                let exponentEnd = digits(exponent)
                if exponentEnd > exponent { mantissaEnd = exponentEnd }
            }
            if let value = Double(String(decoding: bytes[..<mantissaEnd], as: UTF8.self)) { return value }
            let word = String(decoding: bytes[end...].prefix(8), as: UTF8.self).lowercased()
            let sign: Double = bytes.first == UInt8(ascii: "-") ? -1 : 1
            if word.hasPrefix("inf") { return sign * .infinity }
            if word.hasPrefix("nan") { return .nan }
            return 0
        }
    }
}
