#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// libpg_query's JSON parse tree, read once into one flat table of nodes.
///
/// A dedicated reader rather than Foundation's JSONSerialization: the classifier reads one tree per
/// statement on the hot path of every check and proxied statement. The reader allocates two arrays per
/// tree whatever its size: the nodes in document order (each container knows where its subtree ends,
/// so its members are found by jumping from one to the next) and the JSON text itself, which every key,
/// string and number points into (an escaped string is decoded once and appended after it). A
/// `ParseTree` is a position in that table: copying one, or reading a field, allocates nothing.
/// A tree lives only inside the body of the `ParseTreeReader.read` call that made it, on that call's
/// thread (it is not `Sendable`).
public struct ParseTree {
    enum Kind: UInt8 {
        case object, array, string, integer, number, bool, null
    }

    /// 32 bytes.
    struct Node {
        var kind: Kind
        /// The member's key in its object (a range of `text`); length -1 for array elements and the root.
        var keyStart: Int32
        var keyLength: Int32
        /// The node after this one's subtree.
        var end: Int32
        /// Members or elements.
        var count: Int32
        /// An integer's value; 1 for `true`; a string's (decoded) or a number's text as `start | length << 32`.
        var value: Int64

        var start: Int32 { Int32(truncatingIfNeeded: value) }
        var length: Int32 { Int32(truncatingIfNeeded: value >> 32) }

        static func range(_ start: Int32, _ length: Int32) -> Int64 { Int64(UInt32(bitPattern: start)) | Int64(length) << 32 }
    }

    /// The tree's nodes and text in two buffers the reader filled, read through pointers: nothing is
    /// retained, released or bounds-checked on the classifier's hot path. The buffers belong to the
    /// `ParseTreeReader.read` call that made them and are freed when its body returns, so a `ParseTree`
    /// is valid only inside that body, like the pointer of `withUnsafeBufferPointer`. Debug builds check
    /// every read against the document's lease and stop on a tree used after its body returned.
    struct Document {
        #if DEBUG
        private let storedNodes: UnsafeMutablePointer<Node>
        private let storedText: UnsafeMutablePointer<UInt8>
        private let lease = Lease()
        var nodes: UnsafeMutablePointer<Node> { lease.check(); return storedNodes }
        var text: UnsafeMutablePointer<UInt8> { lease.check(); return storedText }

        final class Lease {
            var ended = false
            func check() { precondition(!ended, "a ParseTree was used after the body of ParseTreeReader.read returned") }
        }
        #else
        let nodes: UnsafeMutablePointer<Node>
        let text: UnsafeMutablePointer<UInt8>
        #endif

        /// Takes both buffers (from `malloc`) over.
        init(nodes: UnsafeMutablePointer<Node>, text: UnsafeMutablePointer<UInt8>) {
            #if DEBUG
            storedNodes = nodes
            storedText = text
            #else
            self.nodes = nodes
            self.text = text
            #endif
        }

        /// Frees both buffers; every tree of the document is then invalid.
        func end() {
            #if DEBUG
            lease.ended = true
            free(storedNodes)
            free(storedText)
            #else
            free(nodes)
            free(text)
            #endif
        }
    }

    let document: Document
    let index: Int

    private var node: Node { document.nodes[index] }

    var isObject: Bool { node.kind == .object }
    var isArray: Bool { node.kind == .array }

    /// The member called `key`, when this is an object that has one.
    public subscript(key: StaticString) -> ParseTree? {
        member(key).map { ParseTree(document: document, index: $0) }
    }

    /// The integer member called `key` (a location, say), read in place: no `ParseTree` is made for it.
    public func intValue(of key: StaticString) -> Int? {
        guard let member = member(key) else { return nil }
        let node = document.nodes[member]
        return node.kind == .integer ? Int(exactly: node.value) : nil
    }

    /// Where the member called `key` is in the document.
    private func member(_ key: StaticString) -> Int? {
        let nodes = document.nodes, text = document.text
        guard nodes[index].kind == .object else { return nil }
        let length = key.utf8CodeUnitCount
        var child = index + 1
        let end = Int(nodes[index].end)
        while child < end {
            let entry = nodes[child]
            if Int(entry.keyLength) == length, memcmp(text + Int(entry.keyStart), key.utf8Start, length) == 0 { return child }
            child = Int(entry.end)
        }
        return nil
    }

    /// The member called `key` (a name not known when the code was written).
    public func field(_ key: String) -> ParseTree? {
        children.first { $0.hasKey(key) }
    }

    /// The key this node has in the object that holds it.
    public var key: String? {
        let node = node
        guard node.keyLength >= 0 else { return nil }
        return string(at: node.keyStart, length: node.keyLength)
    }

    /// Whether this node is its object's member called `key`.
    public func hasKey(_ key: String) -> Bool {
        let node = node
        guard node.keyLength >= 0 else { return false }
        var key = key
        return key.withUTF8 { utf8 in
            utf8.count == Int(node.keyLength) && (utf8.isEmpty || memcmp(document.text + Int(node.keyStart), utf8.baseAddress!, utf8.count) == 0)
        }
    }

    public var stringValue: String? {
        let node = node
        guard node.kind == .string else { return nil }
        return string(at: node.start, length: node.length)
    }

    public var intValue: Int? {
        let node = node
        return node.kind == .integer ? Int(exactly: node.value) : nil
    }

    public var boolValue: Bool? {
        let node = node
        return node.kind == .bool ? node.value != 0 : nil
    }

    /// A number that is not an integer (or does not fit one), as written.
    public var numberText: String? {
        let node = node
        return node.kind == .number ? string(at: node.start, length: node.length) : nil
    }

    public var isNull: Bool { node.kind == .null }

    /// An object's members (each with its `key`) or an array's elements, in order; nothing otherwise.
    public var children: Children { Children(document: document, position: index + 1, end: node.kind == .object || node.kind == .array ? Int(node.end) : index + 1) }

    /// An array's number of elements; 0 for anything else.
    public var elementCount: Int {
        let node = node
        return node.kind == .array ? Int(node.count) : 0
    }

    /// An array's first element.
    public var firstElement: ParseTree? {
        guard isArray, node.count > 0 else { return nil }
        return ParseTree(document: document, index: index + 1)
    }

    /// An array's last element, found without making the list of all of them.
    public var lastElement: ParseTree? {
        guard isArray else { return nil }
        var last: ParseTree?
        for child in children { last = child }
        return last
    }

    /// An array's elements; empty for anything else.
    public var elements: [ParseTree] {
        guard node.kind == .array else { return [] }
        var values: [ParseTree] = []
        values.reserveCapacity(Int(node.count))
        for child in children { values.append(child) }
        return values
    }

    /// The node's type when it is a tagged node (`{"DeleteStmt": {...}}`) and its fields.
    public var tagged: (type: String, fields: ParseTree)? {
        tag.map { (String(decoding: $0.name, as: UTF8.self), $0.fields) }
    }

    /// A tagged node's type name and fields, without making a `String`. The bytes point into the tree's
    /// document: use them only while `fields` (or this tree) is still used after them.
    var tag: (name: UnsafeBufferPointer<UInt8>, fields: ParseTree)? {
        let node = node
        guard node.kind == .object, node.count == 1 else { return nil }
        let member = document.nodes[index + 1]
        guard member.keyLength > 0 else { return nil }
        let first = document.text[Int(member.keyStart)]
        guard first >= UInt8(ascii: "A"), first <= UInt8(ascii: "Z") else { return nil }
        return (UnsafeBufferPointer(start: document.text + Int(member.keyStart), count: Int(member.keyLength)), ParseTree(document: document, index: index + 1))
    }

    /// A tagged node's fields, whatever its type.
    var taggedFields: ParseTree? { tag?.fields }

    /// Whether this is a tagged node of type `type`.
    func isTagged(_ type: StaticString) -> Bool {
        tag?.name.is(type) ?? false
    }

    private func string(at start: Int32, length: Int32) -> String {
        String(decoding: UnsafeBufferPointer(start: document.text + Int(start), count: Int(length)), as: UTF8.self)
    }

    private func bytesEqual(_ a: (Int32, Int32), _ other: ParseTree, _ b: (Int32, Int32)) -> Bool {
        guard a.1 == b.1 else { return false }
        guard a.1 > 0 else { return true }
        return memcmp(document.text + Int(a.0), other.document.text + Int(b.0), Int(a.1)) == 0
    }

    private func isLocationKey(_ node: Node) -> Bool {
        let location: StaticString = "location"
        return node.keyLength == 8 && memcmp(document.text + Int(node.keyStart), location.utf8Start, 8) == 0
    }

    /// Whether the two trees are equal: same keys in the same order, same values. `ignoringLocations`
    /// leaves `location` members out on both sides; `ignoringConstantValues` counts any two constants
    /// (`A_Const`) as equal.
    func equals(_ other: ParseTree, ignoringLocations: Bool = false, ignoringConstantValues: Bool = false) -> Bool {
        let a = node, b = other.node
        guard a.kind == b.kind else { return false }
        switch a.kind {
        case .object, .array:
            if ignoringConstantValues, isTagged("A_Const"), other.isTagged("A_Const") { return true }
            var mine = children.makeIterator(), theirs = other.children.makeIterator()
            while true {
                var left = mine.next(), right = theirs.next()
                if ignoringLocations {
                    while let member = left, isLocationKey(member.node) { left = mine.next() }
                    while let member = right, other.isLocationKey(member.node) { right = theirs.next() }
                }
                guard let left, let right else { return left == nil && right == nil }
                if a.kind == .object, !left.bytesEqual((left.node.keyStart, left.node.keyLength), right, (right.node.keyStart, right.node.keyLength)) { return false }
                if !left.equals(right, ignoringLocations: ignoringLocations, ignoringConstantValues: ignoringConstantValues) { return false }
            }
        case .string, .number:
            return bytesEqual((a.start, a.length), other, (b.start, b.length))
        case .integer, .bool:
            return a.value == b.value
        case .null:
            return true
        }
    }

    /// Whether the two trees are equal, locations aside, with `decide` asked first at every pair of values
    /// met together: its answer, when it gives one, stands for that pair and what is inside it.
    func equals(_ other: ParseTree, deciding decide: (ParseTree, ParseTree) -> Bool?) -> Bool {
        if let decided = decide(self, other) { return decided }
        let a = node, b = other.node
        guard a.kind == b.kind else { return false }
        switch a.kind {
        case .object, .array:
            var mine = children.makeIterator(), theirs = other.children.makeIterator()
            while true {
                var left = mine.next(), right = theirs.next()
                while let member = left, isLocationKey(member.node) { left = mine.next() }
                while let member = right, other.isLocationKey(member.node) { right = theirs.next() }
                guard let left, let right else { return left == nil && right == nil }
                if a.kind == .object, !left.bytesEqual((left.node.keyStart, left.node.keyLength), right, (right.node.keyStart, right.node.keyLength)) { return false }
                if !left.equals(right, deciding: decide) { return false }
            }
        case .string, .number:
            return bytesEqual((a.start, a.length), other, (b.start, b.length))
        case .integer, .bool:
            return a.value == b.value
        case .null:
            return true
        }
    }

    /// Whether the tree holds a constant (`A_Const`).
    var containsConstant: Bool {
        if isTagged("A_Const") { return true }
        return children.contains { $0.containsConstant }
    }

    /// Where each constant (`A_Const`) of the tree starts in the text, when the parser says.
    func constantLocations(into locations: inout Set<Int>) {
        if isTagged("A_Const") {
            if let location = ParseTree(document: document, index: index + 1)["location"]?.intValue { locations.insert(location) }
            return
        }
        for child in children { child.constantLocations(into: &locations) }
    }

    public struct Children: Sequence, IteratorProtocol {
        let document: Document
        var position: Int
        let end: Int

        public mutating func next() -> ParseTree? {
            guard position < end else { return nil }
            defer { position = Int(document.nodes[position].end) }
            return ParseTree(document: document, index: position)
        }
    }
}

extension ParseTree: Equatable {
    public static func == (lhs: ParseTree, rhs: ParseTree) -> Bool { lhs.equals(rhs) }
}

extension ParseTree: CustomStringConvertible {
    /// The tree as compact JSON (strings as decoded, escaped again only where JSON must).
    public var description: String {
        var out = ""
        write(to: &out)
        return out
    }

    private func write(to out: inout String) {
        let node = node
        switch node.kind {
        case .object, .array:
            out += node.kind == .object ? "{" : "["
            var first = true
            for child in children {
                if !first { out += "," }
                first = false
                if let key = child.key { Self.quote(key, to: &out); out += ":" }
                child.write(to: &out)
            }
            out += node.kind == .object ? "}" : "]"
        case .string: Self.quote(stringValue ?? "", to: &out)
        case .integer: out += String(node.value)
        case .number: out += numberText ?? ""
        case .bool: out += node.value != 0 ? "true" : "false"
        case .null: out += "null"
        }
    }

    private static func quote(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case _ where scalar.value < 0x20:
                out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

public struct ParseTreeError: Error, Sendable, Equatable {
    public var message: String
}

/// Reads JSON bytes into a `ParseTree`, refusing nesting deeper than `maximumDepth`.
struct ParseTreeReader {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0
    private let maximumDepth: Int
    /// The document's buffers while they are filled: nodes, and the JSON text followed by escaped
    /// strings decoded (`textCount` bytes used).
    private var nodes: UnsafeMutablePointer<ParseTree.Node>
    private var nodeCount = 0
    private var nodeCapacity: Int
    private var text: UnsafeMutablePointer<UInt8>
    private var textCount: Int
    private var textCapacity: Int

    /// Reads `bytes` and hands the tree to `body`; the tree is freed when `body` returns, so neither it
    /// nor any tree found in it may be kept past the call.
    static func read<T>(_ bytes: [UInt8], maximumDepth: Int, _ body: (ParseTree) -> T) -> Result<T, ParseTreeError> {
        bytes.withUnsafeBufferPointer { read($0, maximumDepth: maximumDepth, body) }
    }

    static func read<T>(_ bytes: UnsafeBufferPointer<UInt8>, maximumDepth: Int, _ body: (ParseTree) -> T) -> Result<T, ParseTreeError> {
        guard bytes.count < Int(Int32.max) / 2 else { return .failure(ParseTreeError(message: "larger than the reader's limit of \(Int32.max / 2) bytes")) }
        var reader = ParseTreeReader(bytes: bytes, maximumDepth: maximumDepth)
        do throws(ParseTreeError) {
            try reader.value(depth: 0, keyStart: 0, keyLength: -1)
            reader.skipSpace()
            guard reader.index == bytes.count else { throw ParseTreeError(message: "trailing bytes after the tree") }
        } catch {
            free(reader.nodes)
            free(reader.text)
            return .failure(error)
        }
        let document = ParseTree.Document(nodes: reader.nodes, text: reader.text)
        defer { document.end() }
        return .success(body(ParseTree(document: document, index: 0)))
    }

    private init(bytes: UnsafeBufferPointer<UInt8>, maximumDepth: Int) {
        self.bytes = bytes
        self.maximumDepth = maximumDepth
        // About one node per 12 bytes of libpg_query's JSON.
        nodeCapacity = bytes.count / 12 + 8
        nodes = malloc(nodeCapacity * MemoryLayout<ParseTree.Node>.stride)!.assumingMemoryBound(to: ParseTree.Node.self)
        textCount = bytes.count
        textCapacity = bytes.count + 64
        text = malloc(textCapacity)!.assumingMemoryBound(to: UInt8.self)
        if let base = bytes.baseAddress { memcpy(text, base, bytes.count) }
    }

    /// Skips JSON whitespace; libpg_query writes none, so the usual case is one comparison.
    private mutating func skipSpace() {
        while index < bytes.count {
            let byte = bytes[index]
            guard byte <= 0x20, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 else { return }
            index += 1
        }
    }

    /// The first `"` or `\` at or after `index` (or the end), eight bytes at a time while eight are left:
    /// each byte of the word is compared with both at once (a zero byte of `word ^ pattern` is a match).
    private func stringEnd(from start: Int) -> Int {
        var position = start
        let base = UnsafeRawPointer(bytes.baseAddress!)
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        while position + 8 <= bytes.count {
            let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: position, as: UInt64.self))
            let quote = word ^ (ones &* UInt64(UInt8(ascii: "\"")))
            let slash = word ^ (ones &* UInt64(UInt8(ascii: "\\")))
            let found = ((quote &- ones) & ~quote | (slash &- ones) & ~slash) & highs
            if found != 0 { return position + found.trailingZeroBitCount / 8 }
            position += 8
        }
        while position < bytes.count, bytes[position] != UInt8(ascii: "\""), bytes[position] != UInt8(ascii: "\\") { position += 1 }
        return position
    }

    private mutating func expect(_ byte: UInt8) throws(ParseTreeError) {
        skipSpace()
        guard index < bytes.count, bytes[index] == byte else {
            throw ParseTreeError(message: "expected '\(Character(Unicode.Scalar(byte)))' at byte \(index)")
        }
        index += 1
    }

    private mutating func append(_ kind: ParseTree.Kind, _ keyStart: Int32, _ keyLength: Int32, value: Int64 = 0) {
        if nodeCount == nodeCapacity {
            nodeCapacity *= 2
            nodes = realloc(nodes, nodeCapacity * MemoryLayout<ParseTree.Node>.stride)!.assumingMemoryBound(to: ParseTree.Node.self)
        }
        (nodes + nodeCount).initialize(to: ParseTree.Node(kind: kind, keyStart: keyStart, keyLength: keyLength,
                                                          end: Int32(nodeCount + 1), count: 0, value: value))
        nodeCount += 1
    }

    /// Appends decoded bytes to the text.
    private mutating func appendText(_ byte: UInt8) {
        if textCount == textCapacity {
            textCapacity *= 2
            text = realloc(text, textCapacity)!.assumingMemoryBound(to: UInt8.self)
        }
        text[textCount] = byte
        textCount += 1
    }

    private mutating func value(depth: Int, keyStart: Int32, keyLength: Int32) throws(ParseTreeError) {
        guard depth <= maximumDepth else { throw ParseTreeError(message: "nested more than \(maximumDepth) levels deep") }
        skipSpace()
        guard index < bytes.count else { throw ParseTreeError(message: "unexpected end of the tree") }
        switch bytes[index] {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let isObject = bytes[index] == UInt8(ascii: "{")
            let close = isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
            index += 1
            let container = nodeCount
            append(isObject ? .object : .array, keyStart, keyLength)
            var count: Int32 = 0
            defer {
                nodes[container].end = Int32(nodeCount)
                nodes[container].count = count
            }
            skipSpace()
            if index < bytes.count, bytes[index] == close { index += 1; return }
            while true {
                if isObject {
                    skipSpace()
                    let (start, length) = try string()
                    try expect(UInt8(ascii: ":"))
                    try value(depth: depth + 1, keyStart: start, keyLength: length)
                } else {
                    try value(depth: depth + 1, keyStart: 0, keyLength: -1)
                }
                count += 1
                skipSpace()
                guard index < bytes.count else { throw ParseTreeError(message: isObject ? "unterminated object" : "unterminated array") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == close { index += 1; return }
                throw ParseTreeError(message: "expected ',' or '\(Character(Unicode.Scalar(close)))' at byte \(index)")
            }
        case UInt8(ascii: "\""):
            let (start, length) = try string()
            append(.string, keyStart, keyLength, value: ParseTree.Node.range(start, length))
        case UInt8(ascii: "t"):
            try literal("true")
            append(.bool, keyStart, keyLength, value: 1)
        case UInt8(ascii: "f"):
            try literal("false")
            append(.bool, keyStart, keyLength, value: 0)
        case UInt8(ascii: "n"):
            try literal("null")
            append(.null, keyStart, keyLength)
        default:
            try number(keyStart, keyLength)
        }
    }

    private mutating func literal(_ word: StaticString) throws(ParseTreeError) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw ParseTreeError(message: "unexpected end of the tree") }
        guard memcmp(bytes.baseAddress! + index, word.utf8Start, count) == 0 else { throw ParseTreeError(message: "unexpected token at byte \(index)") }
        index += count
    }

    private mutating func number(_ keyStart: Int32, _ keyLength: Int32) throws(ParseTreeError) {
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
        if integral, let value = Self.integer(UnsafeBufferPointer(rebasing: bytes[start..<index])) {
            append(.integer, keyStart, keyLength, value: Int64(value))
        } else {
            append(.number, keyStart, keyLength, value: ParseTree.Node.range(Int32(start), Int32(index - start)))
        }
    }

    /// `-?[0-9]+` that fits an `Int`; nil for anything else (kept as text).
    private static func integer(_ digits: UnsafeBufferPointer<UInt8>) -> Int? {
        var rest = digits[...]
        let negative = rest.first == UInt8(ascii: "-")
        if negative { rest = rest.dropFirst() }
        guard !rest.isEmpty else { return nil }
        var value = 0
        for byte in rest {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (times, overflowA) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflowB) = negative ? times.subtractingReportingOverflow(Int(byte - UInt8(ascii: "0")))
                                            : times.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
            guard !overflowA, !overflowB else { return nil }
            value = sum
        }
        return value
    }

    /// A string's content as a range of the document's text: in the JSON when it has no escapes, else
    /// decoded after it.
    private mutating func string() throws(ParseTreeError) -> (Int32, Int32) {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
            throw ParseTreeError(message: "expected a string at byte \(index)")
        }
        index += 1
        let start = index
        // Fast path: no escapes.
        index = stringEnd(from: index)
        guard index < bytes.count else { throw ParseTreeError(message: "unterminated string") }
        if bytes[index] == UInt8(ascii: "\"") {
            defer { index += 1 }
            return (Int32(start), Int32(index - start))
        }
        let decodedStart = textCount
        for byte in bytes[start..<index] { appendText(byte) }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return (Int32(decodedStart), Int32(textCount - decodedStart))
            }
            if byte != UInt8(ascii: "\\") {
                appendText(byte)
                index += 1
                continue
            }
            guard index + 1 < bytes.count else { break }
            let escape = bytes[index + 1]
            index += 2
            switch escape {
            case UInt8(ascii: "n"): appendText(0x0A)
            case UInt8(ascii: "t"): appendText(0x09)
            case UInt8(ascii: "r"): appendText(0x0D)
            case UInt8(ascii: "b"): appendText(0x08)
            case UInt8(ascii: "f"): appendText(0x0C)
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
                for byte in String(Character(scalar)).utf8 { appendText(byte) }
            default: appendText(escape)
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

extension UnsafeBufferPointer<UInt8> {
    /// Whether these bytes spell `name` (a tagged node's type, from `ParseTree.tag`).
    func `is`(_ name: StaticString) -> Bool {
        count == name.utf8CodeUnitCount && (count == 0 || memcmp(baseAddress!, name.utf8Start, count) == 0)
    }
}
