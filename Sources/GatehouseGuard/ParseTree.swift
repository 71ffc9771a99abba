/// libpg_query's JSON parse tree, read into a small value type.
///
/// A dedicated reader rather than Foundation's JSONSerialization: the classifier reads one tree per
/// statement on the hot path of every check and proxied statement, and this reader allocates only
/// the values the tree holds (short keys stay inline in `String`), bounds nesting explicitly, and
/// keeps integer locations as integers. Not `indirect`: objects and arrays already hold their children
/// in arrays, and an indirect enum would put every leaf (each location, each name) in a box of its own.
public enum ParseTree: Sendable, Equatable {
    case object([(key: String, value: ParseTree)])
    case array([ParseTree])
    case string(String)
    case integer(Int)
    case number(String)
    case bool(Bool)
    case null

    public static func == (lhs: ParseTree, rhs: ParseTree) -> Bool {
        switch (lhs, rhs) {
        case let (.object(a), .object(b)):
            a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case let (.array(a), .array(b)): a == b
        case let (.string(a), .string(b)): a == b
        case let (.integer(a), .integer(b)): a == b
        case let (.number(a), .number(b)): a == b
        case let (.bool(a), .bool(b)): a == b
        case (.null, .null): true
        default: false
        }
    }

    public subscript(key: String) -> ParseTree? {
        guard case let .object(fields) = self else { return nil }
        for field in fields where field.key == key { return field.value }
        return nil
    }

    public var stringValue: String? {
        if case let .string(value) = self { return value }
        return nil
    }

    public var intValue: Int? {
        if case let .integer(value) = self { return value }
        return nil
    }

    public var boolValue: Bool? {
        if case let .bool(value) = self { return value }
        return nil
    }

    public var elements: [ParseTree] {
        if case let .array(values) = self { return values }
        return []
    }

    /// The node's type when it is a tagged node (`{"DeleteStmt": {...}}`) and its fields.
    public var tagged: (type: String, fields: ParseTree)? {
        guard case let .object(fields) = self, fields.count == 1,
              let first = fields[0].key.utf8.first, first >= UInt8(ascii: "A"), first <= UInt8(ascii: "Z")
        else { return nil }
        return (fields[0].key, fields[0].value)
    }

    /// Whether the two trees are equal but for the values of their constants (`A_Const`), compared in
    /// place (no tree is built).
    func equalsIgnoringConstantValues(_ other: ParseTree) -> Bool {
        switch (self, other) {
        case let (.object(a), .object(b)):
            if let (mine, _) = tagged, mine == "A_Const", let (theirs, _) = other.tagged, theirs == "A_Const" { return true }
            return a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value.equalsIgnoringConstantValues($1.value) }
        case let (.array(a), .array(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.equalsIgnoringConstantValues($1) }
        default:
            return self == other
        }
    }

    /// Whether the tree holds a constant (`A_Const`).
    var containsConstant: Bool {
        switch self {
        case let .object(fields):
            if let (type, _) = tagged, type == "A_Const" { return true }
            return fields.contains { $0.value.containsConstant }
        case let .array(values): return values.contains { $0.containsConstant }
        default: return false
        }
    }

    /// Where each constant (`A_Const`) of the tree starts in the text, when the parser says.
    func constantLocations(into locations: inout Set<Int>) {
        switch self {
        case let .object(fields):
            if let (type, inner) = tagged, type == "A_Const" {
                if let location = inner["location"]?.intValue { locations.insert(location) }
                return
            }
            for field in fields { field.value.constantLocations(into: &locations) }
        case let .array(values):
            for value in values { value.constantLocations(into: &locations) }
        default:
            break
        }
    }

    /// The same tree with every `location` field removed, for comparing expressions by structure.
    public var withoutLocations: ParseTree {
        switch self {
        case let .object(fields):
            .object(fields.filter { $0.key != "location" }.map { ($0.key, $0.value.withoutLocations) })
        case let .array(values): .array(values.map(\.withoutLocations))
        default: self
        }
    }
}

public struct ParseTreeError: Error, Sendable, Equatable {
    public var message: String
}

/// Reads JSON bytes into a `ParseTree`, refusing nesting deeper than `maximumDepth`.
struct ParseTreeReader {
    private let bytes: [UInt8]
    private var index = 0
    private let maximumDepth: Int

    static func read(_ bytes: [UInt8], maximumDepth: Int) throws(ParseTreeError) -> ParseTree {
        var reader = ParseTreeReader(bytes: bytes, maximumDepth: maximumDepth)
        let value = try reader.value(depth: 0)
        reader.skipSpace()
        guard reader.index == bytes.count else { throw ParseTreeError(message: "trailing bytes after the tree") }
        return value
    }

    private init(bytes: [UInt8], maximumDepth: Int) {
        self.bytes = bytes
        self.maximumDepth = maximumDepth
    }

    private mutating func skipSpace() {
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 {
            index += 1
        }
    }

    private mutating func expect(_ byte: UInt8) throws(ParseTreeError) {
        skipSpace()
        guard index < bytes.count, bytes[index] == byte else {
            throw ParseTreeError(message: "expected '\(Character(Unicode.Scalar(byte)))' at byte \(index)")
        }
        index += 1
    }

    private mutating func value(depth: Int) throws(ParseTreeError) -> ParseTree {
        guard depth <= maximumDepth else { throw ParseTreeError(message: "nested more than \(maximumDepth) levels deep") }
        skipSpace()
        guard index < bytes.count else { throw ParseTreeError(message: "unexpected end of the tree") }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            index += 1
            var fields: [(key: String, value: ParseTree)] = []
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return .object(fields) }
            while true {
                skipSpace()
                let key = try string()
                try expect(UInt8(ascii: ":"))
                fields.append((key, try value(depth: depth + 1)))
                skipSpace()
                guard index < bytes.count else { throw ParseTreeError(message: "unterminated object") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(fields) }
                throw ParseTreeError(message: "expected ',' or '}' at byte \(index)")
            }
        case UInt8(ascii: "["):
            index += 1
            var values: [ParseTree] = []
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return .array(values) }
            while true {
                values.append(try value(depth: depth + 1))
                skipSpace()
                guard index < bytes.count else { throw ParseTreeError(message: "unterminated array") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(values) }
                throw ParseTreeError(message: "expected ',' or ']' at byte \(index)")
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"):
            try literal("true"); return .bool(true)
        case UInt8(ascii: "f"):
            try literal("false"); return .bool(false)
        case UInt8(ascii: "n"):
            try literal("null"); return .null
        default:
            return try number()
        }
    }

    private mutating func literal(_ word: String) throws(ParseTreeError) {
        let expected = Array(word.utf8)
        let count = expected.count
        guard index + count <= bytes.count else { throw ParseTreeError(message: "unexpected end of the tree") }
        let matches = (0..<count).allSatisfy { bytes[index + $0] == expected[$0] }
        guard matches else { throw ParseTreeError(message: "unexpected token at byte \(index)") }
        index += count
    }

    private mutating func number() throws(ParseTreeError) -> ParseTree {
        let start = index
        var integral = true
        while index < bytes.count {
            let byte = bytes[index]
            if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "+") {
                index += 1
            } else if byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") {
                integral = false
                index += 1
            } else {
                break
            }
        }
        guard index > start else { throw ParseTreeError(message: "unexpected byte at \(start)") }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        if integral, let value = Int(text) { return .integer(value) }
        return .number(text)
    }

    private mutating func string() throws(ParseTreeError) -> String {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
            throw ParseTreeError(message: "expected a string at byte \(index)")
        }
        index += 1
        let start = index
        // Fast path: no escapes.
        while index < bytes.count, bytes[index] != UInt8(ascii: "\""), bytes[index] != UInt8(ascii: "\\") { index += 1 }
        guard index < bytes.count else { throw ParseTreeError(message: "unterminated string") }
        if bytes[index] == UInt8(ascii: "\"") {
            defer { index += 1 }
            return String(decoding: bytes[start..<index], as: UTF8.self)
        }
        var scalars = Array(bytes[start..<index])
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return String(decoding: scalars, as: UTF8.self)
            }
            if byte != UInt8(ascii: "\\") {
                scalars.append(byte)
                index += 1
                continue
            }
            guard index + 1 < bytes.count else { break }
            let escape = bytes[index + 1]
            index += 2
            switch escape {
            case UInt8(ascii: "n"): scalars.append(0x0A)
            case UInt8(ascii: "t"): scalars.append(0x09)
            case UInt8(ascii: "r"): scalars.append(0x0D)
            case UInt8(ascii: "b"): scalars.append(0x08)
            case UInt8(ascii: "f"): scalars.append(0x0C)
            case UInt8(ascii: "u"):
                var code = try hex4()
                if (0xD800..<0xDC00).contains(code), index + 1 < bytes.count,
                   bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") {
                    let next = index
                    index += 2
                    let low = try hex4()
                    if (0xDC00..<0xE000).contains(low) {
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        // A high surrogate without its low half is no character; the escape after it is read on its own.
                        index = next
                    }
                }
                let scalar = Unicode.Scalar(code) ?? "\u{FFFD}"
                scalars.append(contentsOf: Array(String(Character(scalar)).utf8))
            default: scalars.append(escape)
            }
        }
        throw ParseTreeError(message: "unterminated string")
    }

    private mutating func hex4() throws(ParseTreeError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw ParseTreeError(message: "short \\u escape") }
        var code: UInt32 = 0
        for offset in 0..<4 {
            guard let digit = bytes[index + offset].hexDigitValue else {
                throw ParseTreeError(message: "bad \\u escape at byte \(index)")
            }
            code = code << 4 | UInt32(digit)
        }
        index += 4
        return code
    }
}
