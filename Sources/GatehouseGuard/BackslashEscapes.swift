/// The backslash escapes of bash's `$'...'`, of printf and of echo, decoded byte by byte: one decoder for
/// the shell lexer (`$'\x72m'` and `$'\u0072m'` are `rm`) and for what `echo` and `printf` write into a pipe
/// (`ShellOutput`). Each shell's reading is a dialect; where a dialect does not know an escape, the backslash
/// is kept as written, as the shells do.
struct BackslashEscapes: Sendable {
    /// bash's own: `\xHH` (one or two digits), `\uHHHH` and `\UHHHHHHHH` (one to four, one to eight digits: the
    /// character, in UTF-8) and `\E`; dash knows none of them.
    var bash: Bool
    /// `\NNN`: one to three octal digits from the first (`\0101` is `\010` and `1`).
    var octal: Bool
    /// echo's `\0NNN`: up to three octal digits after the zero (`\0101` is `A`).
    var zeroOctal: Bool
    /// `\'`, `\"` and `\?` stand for the character alone.
    var quotes: Bool
    /// `\cX`: the control character of X (`$'...'`).
    var control: Bool
    /// `\c` ends all output (echo, printf's `%b`): nothing after it is written, not even echo's newline.
    var stopsAtC: Bool

    /// bash's `$'...'` (its text ends at a zero byte: the lexer's concern).
    static let ansiC = BackslashEscapes(bash: true, octal: true, zeroOctal: false, quotes: true, control: true, stopsAtC: false)
    /// bash's printf format.
    static let bashPrintf = BackslashEscapes(bash: true, octal: true, zeroOctal: false, quotes: true, control: false, stopsAtC: false)
    /// dash's (sh's) printf format.
    static let dashPrintf = BackslashEscapes(bash: false, octal: true, zeroOctal: false, quotes: false, control: false, stopsAtC: false)
    /// bash's `echo -e`.
    static let bashEcho = BackslashEscapes(bash: true, octal: false, zeroOctal: true, quotes: false, control: false, stopsAtC: true)
    /// bash's printf `%b` (`echo -e`'s escapes, and `\NNN` too).
    static let bashPercentB = BackslashEscapes(bash: true, octal: true, zeroOctal: true, quotes: false, control: false, stopsAtC: true)
    /// dash's (sh's) echo and printf's `%b`.
    static let dashEcho = BackslashEscapes(bash: false, octal: true, zeroOctal: true, quotes: false, control: false, stopsAtC: true)

    /// What one escape does.
    enum Decoded: Equatable {
        /// It stood for bytes (appended), and the text goes on at this index.
        case next(Int)
        /// `\c` where it ends all output.
        case stop
    }

    /// Decodes the escape whose backslash is at `backslash` into `out`; nil (and nothing appended) when the
    /// backslash stands for itself. `bytes` ends where the text ends (`$'...'`: before its closing quote).
    func decode(_ bytes: [UInt8], backslash: Int, into out: inout [UInt8]) -> Decoded? {
        let at = backslash + 1
        guard at < bytes.count else { return nil }
        let escape = bytes[at]
        if let simple = Self.simple(escape) {
            out.append(simple)
            return .next(at + 1)
        }
        switch escape {
        case UInt8(ascii: "x") where bash:
            let (value, end) = Self.number(bytes, from: at + 1, digits: 2, radix: 16)
            guard end > at + 1 else { return nil }
            out.append(UInt8(truncatingIfNeeded: value))
            return .next(end)
        case UInt8(ascii: "u") where bash, UInt8(ascii: "U") where bash:
            let (value, end) = Self.number(bytes, from: at + 1, digits: escape == UInt8(ascii: "u") ? 4 : 8, radix: 16)
            guard end > at + 1 else { return nil }
            out.append(contentsOf: Self.extendedUTF8(UInt32(truncatingIfNeeded: value)))
            return .next(end)
        case UInt8(ascii: "0") where zeroOctal:
            let (value, end) = Self.number(bytes, from: at + 1, digits: 3, radix: 8)
            out.append(UInt8(truncatingIfNeeded: value))
            return .next(end)
        case UInt8(ascii: "0")...UInt8(ascii: "7") where octal:
            let (value, end) = Self.number(bytes, from: at, digits: 3, radix: 8)
            out.append(UInt8(truncatingIfNeeded: value))
            return .next(end)
        case UInt8(ascii: "E") where bash:
            out.append(0x1B)
            return .next(at + 1)
        case UInt8(ascii: "'") where quotes, UInt8(ascii: "\"") where quotes, UInt8(ascii: "?") where quotes:
            out.append(escape)
            return .next(at + 1)
        case UInt8(ascii: "c") where stopsAtC:
            return .stop
        case UInt8(ascii: "c") where control:
            // bash: `\c` at the end stays as written; `\c\\` is the control character of a backslash, both
            // backslashes taken; `\c?` is DEL.
            guard at + 1 < bytes.count else { return nil }
            let letter = bytes[at + 1]
            if letter == UInt8(ascii: "\\"), at + 2 < bytes.count, bytes[at + 2] == UInt8(ascii: "\\") {
                out.append(0x1C)
                return .next(at + 3)
            }
            out.append(letter == UInt8(ascii: "?") ? 0x7F : letter & 0x1F)
            return .next(at + 2)
        default:
            return nil
        }
    }

    /// The bytes with this dialect's escapes expanded, and whether a `\c` ended them.
    func expanding(_ bytes: [UInt8]) -> (bytes: [UInt8], stopped: Bool) {
        var result: [UInt8] = []
        result.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            guard bytes[index] == UInt8(ascii: "\\"), let decoded = decode(bytes, backslash: index, into: &result) else {
                result.append(bytes[index])
                index += 1
                continue
            }
            switch decoded {
            case .next(let end): index = end
            case .stop: return (result, true)
            }
        }
        return (result, false)
    }

    /// The one-letter escapes every dialect knows.
    private static func simple(_ escape: UInt8) -> UInt8? {
        switch escape {
        case UInt8(ascii: "n"): 0x0A
        case UInt8(ascii: "t"): 0x09
        case UInt8(ascii: "r"): 0x0D
        case UInt8(ascii: "v"): 0x0B
        case UInt8(ascii: "f"): 0x0C
        case UInt8(ascii: "a"): 0x07
        case UInt8(ascii: "b"): 0x08
        case UInt8(ascii: "e"): 0x1B
        case UInt8(ascii: "\\"): UInt8(ascii: "\\")
        default: nil
        }
    }

    /// A code point as bash writes it in a UTF-8 locale: the original UTF-8 of up to six bytes, so surrogates and
    /// values past U+10FFFF too; nothing from 0x80000000.
    static func extendedUTF8(_ value: UInt32) -> [UInt8] {
        switch value {
        case ..<0x80: return [UInt8(value)]
        case ..<0x800: return [0xC0 | UInt8(value >> 6), 0x80 | UInt8(value & 0x3F)]
        case ..<0x10000: return [0xE0 | UInt8(value >> 12), 0x80 | UInt8(value >> 6 & 0x3F), 0x80 | UInt8(value & 0x3F)]
        case ..<0x200000:
            return [0xF0 | UInt8(value >> 18), 0x80 | UInt8(value >> 12 & 0x3F), 0x80 | UInt8(value >> 6 & 0x3F), 0x80 | UInt8(value & 0x3F)]
        case ..<0x4000000:
            return [0xF8 | UInt8(value >> 24), 0x80 | UInt8(value >> 18 & 0x3F), 0x80 | UInt8(value >> 12 & 0x3F),
                    0x80 | UInt8(value >> 6 & 0x3F), 0x80 | UInt8(value & 0x3F)]
        case ..<0x80000000:
            return [0xFC | UInt8(value >> 30), 0x80 | UInt8(value >> 24 & 0x3F), 0x80 | UInt8(value >> 18 & 0x3F),
                    0x80 | UInt8(value >> 12 & 0x3F), 0x80 | UInt8(value >> 6 & 0x3F), 0x80 | UInt8(value & 0x3F)]
        default: return []
        }
    }

    private static func number(_ bytes: [UInt8], from start: Int, digits: Int, radix: UInt8) -> (value: Int, end: Int) {
        var value = 0, end = start
        while end < bytes.count, end - start < digits, let digit = bytes[end].hexDigitValue, digit < radix {
            value = value * Int(radix) + Int(digit)
            end += 1
        }
        return (value, end)
    }
}
