import GatehouseCore
import Testing
@testable import GatehouseGuard

@Suite("Parse tree reader")
struct ParseTreeReaderTests {
    @Test("escapes, numbers and nesting limits")
    func reader() throws {
        let tree = try ParseTreeReader.read(Array(#"{"a":"x\u003e\"y\n","b":[1,-2,3.5,true,false,null],"c":{}}"#.utf8), maximumDepth: 5)
        #expect(tree["a"]?.stringValue == "x>\"y\n")
        #expect(tree["b"]?.elements == [.integer(1), .integer(-2), .number("3.5"), .bool(true), .bool(false), .null])
        #expect(tree["c"] == .object([]))
        // Surrogate pairs, and a high surrogate followed by something that is not its low half.
        #expect(try ParseTreeReader.read(Array(#"["\ud83d\ude00"]"#.utf8), maximumDepth: 5).elements.first?.stringValue == "😀")
        #expect(try ParseTreeReader.read(Array(#"["\ud83d\u0041"]"#.utf8), maximumDepth: 5).elements.first?.stringValue == "\u{FFFD}A")
        #expect(throws: ParseTreeError.self) { try ParseTreeReader.read(Array("[[[[[[[1]]]]]]]".utf8), maximumDepth: 5) }
        #expect(throws: ParseTreeError.self) { try ParseTreeReader.read(Array(#"{"a":"#.utf8), maximumDepth: 5) }
        #expect(throws: ParseTreeError.self) { try ParseTreeReader.read(Array(#"{"a":1} x"#.utf8), maximumDepth: 5) }
    }

    @Test("objects and arrays nested in each other keep their own members")
    func nesting() throws {
        let text = #"{"a":[{"b":[1,2],"c":{"d":[],"e":[[3],[4,{"f":5}]]}},6],"g":{"h":{"i":7}},"j":[]}"#
        let tree = try ParseTreeReader.read(Array(text.utf8), maximumDepth: 10)
        #expect(tree == .object([
            ("a", .array([.object([("b", .array([.integer(1), .integer(2)])),
                                   ("c", .object([("d", .array([])),
                                                  ("e", .array([.array([.integer(3)]), .array([.integer(4), .object([("f", .integer(5))])])]))]))]),
                          .integer(6)])),
            ("g", .object([("h", .object([("i", .integer(7))]))])),
            ("j", .array([])),
        ]))
    }
}
