/// The backslash escapes of bash's `$'...'`, of printf and of echo, decoded byte by byte: one decoder for
/// the shell lexer (`$'\x72m'` and `$'\u0072m'` are `rm`) and for the SQL a shell pipes to a database
/// client (`printf '... --\n OR true' | psql` sends two lines). Each shell's reading is a dialect; where a
/// dialect does not know an escape, the backslash is kept as written, as the shells do.
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
    /// `\cX`: the control character of X.
    var control: Bool
    /// A zero byte ends the text (bash's words are C strings: `$'rm\0x'` is `rm`).
    var endsAtZero: Bool

    /// bash's `$'...'`.
    static let ansiC = BackslashEscapes(bash: true, octal: true, zeroOctal: false, quotes: true, control: true, endsAtZero: true)
    /// bash's printf format.
    static let bashPrintf = BackslashEscapes(bash: true, octal: true, zeroOctal: false, quotes: true, control: false, endsAtZero: false)
    /// dash's (sh's) printf format.
    static let dashPrintf = BackslashEscapes(bash: false, octal: true, zeroOctal: false, quotes: false, control: false, endsAtZero: false)
    /// bash's `echo -e`.
    static let bashEcho = BackslashEscapes(bash: true, octal: false, zeroOctal: true, quotes: false, control: false, endsAtZero: false)
    /// dash's (sh's) plain echo.
    static let dashEcho = BackslashEscapes(bash: false, octal: true, zeroOctal: true, quotes: false, control: false, endsAtZero: false)

    /// Decodes the escape whose backslash is at `backslash` into `out`; returns the index after it, or nil
    /// (and appends nothing) when the backslash stands for itself.
    func decode(_ bytes: [UInt8], backslash: Int, into out: inout [UInt8]) -> Int? {
        let at = backslash + 1
        guard at < bytes.count else { return nil }
        let escape = bytes[at]
        if let simple = Self.simple(escape) {
            out.append(simple)
            return at + 1
        }
        switch escape {
        case UInt8(ascii: "x") where bash:
            let (value, end) = Self.number(bytes, from: at + 1, digits: 2, radix: 16)
            guard end > at + 1 else { return nil }
            out.append(UInt8(truncatingIfNeeded: value))
            return end
        case UInt8(ascii: "u") where bash, UInt8(ascii: "U") where bash:
            let (value, end) = Self.number(bytes, from: at + 1, digits: escape == UInt8(ascii: "u") ? 4 : 8, radix: 16)
            guard end > at + 1, let scalar = Unicode.Scalar(UInt32(truncatingIfNeeded: value)) else { return nil }
            out.append(contentsOf: Array(String(Character(scalar)).utf8))
            return end
        case UInt8(ascii: "0") where zeroOctal:
            let (value, end) = Self.number(bytes, from: at + 1, digits: 3, radix: 8)
            out.append(UInt8(truncatingIfNeeded: value))
            return end
        case UInt8(ascii: "0")...UInt8(ascii: "7") where octal:
            let (value, end) = Self.number(bytes, from: at, digits: 3, radix: 8)
            out.append(UInt8(truncatingIfNeeded: value))
            return end
        case UInt8(ascii: "E") where bash:
            out.append(0x1B)
            return at + 1
        case UInt8(ascii: "'") where quotes, UInt8(ascii: "\"") where quotes, UInt8(ascii: "?") where quotes:
            out.append(escape)
            return at + 1
        case UInt8(ascii: "c") where control && at + 1 < bytes.count:
            out.append(bytes[at + 1] & 0x1F)
            return at + 2
        default:
            return nil
        }
    }

    /// The text with this dialect's escapes expanded.
    func expanding(_ text: String) -> String {
        String(decoding: expanding(Array(text.utf8)), as: UTF8.self)
    }

    /// The bytes with this dialect's escapes expanded.
    func expanding(_ bytes: [UInt8]) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "\\"), let end = decode(bytes, backslash: index, into: &result) {
                index = end
            } else {
                result.append(bytes[index])
                index += 1
            }
        }
        if endsAtZero, let zero = result.firstIndex(of: 0) { result.removeSubrange(zero...) }
        return result
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

    private static func number(_ bytes: [UInt8], from start: Int, digits: Int, radix: UInt8) -> (value: Int, end: Int) {
        var value = 0, end = start
        while end < bytes.count, end - start < digits, let digit = bytes[end].hexDigitValue, digit < radix {
            value = value * Int(radix) + Int(digit)
            end += 1
        }
        return (value, end)
    }
}
