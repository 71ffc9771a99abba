import Foundation
import GatehouseCore
import GatehouseTestSupport
import Testing
@testable import GatehouseGuard

@Suite("Parse tree reader")
struct ParseTreeReaderTests {
    @Test("escapes, numbers and nesting limits")
    func reader() throws {
        let tree = try ParseTreeReader.read(Array(#"{"a":"x\u003e\"y\n","b":[1,-2,3.5,true,false,null],"c":{}}"#.utf8), maximumDepth: 5)
        #expect(tree["a"]?.stringValue == "x>\"y\n")
        #expect(tree["b"]?.elements.map(\.description) == ["1", "-2", "3.5", "true", "false", "null"])
        #expect(tree["b"]?.elements.map(\.intValue) == [1, -2, nil, nil, nil, nil])
        let located = try ParseTreeReader.read(Array(#"{"location":12,"name":"x","n":1.5}"#.utf8), maximumDepth: 5)
        #expect(located.intValue(of: "location") == 12 && located.intValue(of: "name") == nil && located.intValue(of: "n") == nil
            && located.intValue(of: "missing") == nil && located["location"]?.intValue(of: "location") == nil)
        #expect(tree["b"]?.elements[2].numberText == "3.5")
        #expect(tree["b"]?.elements.map(\.boolValue) == [nil, nil, nil, true, false, nil])
        #expect(tree["c"]?.description == "{}")
        #expect(tree["c"]?.isObject == true && tree["c"]?.children.first(where: { _ in true }) == nil)
        #expect(tree["d"] == nil && tree["a"]?["a"] == nil)
        // An integer too large for Int stays a number, as written.
        #expect(try ParseTreeReader.read(Array("[99999999999999999999,-9223372036854775808]".utf8), maximumDepth: 5).elements.map(\.description)
            == ["99999999999999999999", "-9223372036854775808"])
        // Surrogate pairs, and a high surrogate followed by something that is not its low half.
        #expect(try ParseTreeReader.read(Array(#"["\ud83d\ude00"]"#.utf8), maximumDepth: 5).elements.first?.stringValue == "😀")
        #expect(try ParseTreeReader.read(Array(#"["\ud83d\u0041"]"#.utf8), maximumDepth: 5).elements.first?.stringValue == "\u{FFFD}A")
        #expect(throws: ParseTreeError.self) { try ParseTreeReader.read(Array("[[[[[[[1]]]]]]]".utf8), maximumDepth: 5) }
        #expect(throws: ParseTreeError.self) { try ParseTreeReader.read(Array(#"{"a":"#.utf8), maximumDepth: 5) }
        #expect(throws: ParseTreeError.self) { try ParseTreeReader.read(Array(#"{"a":1} x"#.utf8), maximumDepth: 5) }
        #expect(throws: ParseTreeError.self) { try ParseTreeReader.read(Array(#"{"a" 1}"#.utf8), maximumDepth: 5) }
        #expect(throws: ParseTreeError.self) { try ParseTreeReader.read(Array("[1,]".utf8), maximumDepth: 5) }
        #expect(throws: ParseTreeError.self) { try ParseTreeReader.read([], maximumDepth: 5) }
    }

    @Test("objects and arrays nested in each other keep their own members")
    func nesting() throws {
        let text = #"{"a":[{"b":[1,2],"c":{"d":[],"e":[[3],[4,{"f":5}]]}},6],"g":{"h":{"i":7}},"j":[]}"#
        let tree = try ParseTreeReader.read(Array(text.utf8), maximumDepth: 10)
        #expect(tree.description == text)
        #expect(tree["a"]?.elements.count == 2 && tree["a"]?.elementCount == 2 && tree["a"]?.lastElement?.intValue == 6)
        #expect(tree.elementCount == 0 && tree.lastElement == nil && tree["j"]?.lastElement == nil)
        #expect(tree["a"]?.firstElement?["b"]?.lastElement?.intValue == 2 && tree.firstElement == nil && tree["j"]?.firstElement == nil)
        #expect(tree["a"]?.elements.first?["c"]?["e"]?.elements.last?.elements.last?["f"]?.intValue == 5)
        #expect(tree["g"]?["h"]?["i"]?.intValue == 7)
        #expect(tree.children.map { $0.key ?? "" } == ["a", "g", "j"])
        #expect(tree.field("j")?.description == "[]" && tree.field("x") == nil)
        #expect(tree["a"]?.elements.first?.children.map { $0.hasKey("c") } == [false, true])
    }

    @Test("comparing trees: keys in order, locations and constants' values left out when asked")
    func comparing() throws {
        func read(_ text: String) throws -> ParseTree { try ParseTreeReader.read(Array(text.utf8), maximumDepth: 10) }
        let a = try read(#"{"A_Expr":{"lexpr":{"A_Const":{"ival":{"ival":1},"location":3}},"location":5}}"#)
        let b = try read(#"{"A_Expr":{"lexpr":{"A_Const":{"ival":{"ival":1},"location":9}},"location":7}}"#)
        let c = try read(#"{"A_Expr":{"lexpr":{"A_Const":{"ival":{"ival":2},"location":9}},"location":7}}"#)
        #expect(a != b && a.equals(b, ignoringLocations: true))
        #expect(!a.equals(c, ignoringLocations: true) && a.equals(c, ignoringLocations: true, ignoringConstantValues: true))
        let noConstant = try read(#"{"x":[1,{"y":"A_Const"}]}"#)
        #expect(a.containsConstant && !noConstant.containsConstant)
        var locations: Set<Int> = []
        a.constantLocations(into: &locations)
        #expect(locations == [3])
        let ab = try read(#"{"a":1,"b":2}"#), ba = try read(#"{"b":2,"a":1}"#)
        #expect(ab != ba)
        let escaped = try read(#"["x\u0041"]"#), plain = try read(#"["xA"]"#)
        #expect(escaped == plain)
        let one = try read("[1]"), two = try read("[1,2]"), decimal = try read("[1.0]"), null = try read("[null]")
        #expect(one != two && decimal != one && null == null && null != one)
    }

    /// Random documents written by Foundation's JSONSerialization (its escapes, its spacing): every
    /// value the reader gives back is the one written.
    @Test("random documents written by Foundation read back as written")
    func randomDocuments() throws {
        var generator = SplitMix64(state: 18)
        for _ in 0..<2_000 {
            let document = Self.randomValue(depth: 0, using: &generator)
            let data = try JSONSerialization.data(withJSONObject: ["root": document], options: [.fragmentsAllowed])
            let tree = try ParseTreeReader.read(Array(data), maximumDepth: 64)
            #expect(tree.holds(document, at: tree["root"]!), "\(String(decoding: data, as: UTF8.self))")
        }
    }

    static func randomValue(depth: Int, using generator: inout SplitMix64) -> Any {
        let choice = depth > 5 ? Int.random(in: 2...5, using: &generator) : Int.random(in: 0...5, using: &generator)
        switch choice {
        case 0:
            var object: [String: Any] = [:]
            for _ in 0..<Int.random(in: 0...4, using: &generator) { object[randomString(using: &generator)] = randomValue(depth: depth + 1, using: &generator) }
            return object
        case 1:
            return (0..<Int.random(in: 0...4, using: &generator)).map { _ in randomValue(depth: depth + 1, using: &generator) }
        case 2: return randomString(using: &generator)
        case 3: return Int.random(in: -1_000_000...1_000_000, using: &generator)
        case 4: return Bool.random(using: &generator)
        default: return NSNull()
        }
    }

    static func randomString(using generator: inout SplitMix64) -> String {
        let alphabet: [Character] = ["a", "Z", "_", "\"", "\\", "/", "\n", "\t", "\u{01}", "é", "😀", " ", "%", "0"]
        return String((0..<Int.random(in: 0...24, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! })
    }
}

extension ParseTree {
    /// Whether `node` holds the value `expected` (objects compared by key).
    func holds(_ expected: Any, at node: ParseTree) -> Bool {
        switch expected {
        case let object as [String: Any]:
            guard node.isObject, node.children.map({ _ in 1 }).count == object.count else { return false }
            return object.allSatisfy { key, value in node.field(key).map { holds(value, at: $0) } ?? false }
        case let array as [Any]:
            let elements = node.elements
            return node.isArray && elements.count == array.count && zip(array, elements).allSatisfy { holds($0, at: $1) }
        case let string as String:
            return node.stringValue == string
        case is NSNull:
            return node.isNull
        case let boolean as Bool:
            return node.boolValue == boolean
        case let integer as Int:
            return node.intValue == integer
        default:
            return false
        }
    }
}
