import Foundation
import GatehouseCore
import GatehouseTestSupport
import Testing
@testable import GatehouseGuard

@Suite("Parse tree reader")
struct ParseTreeReaderTests {
    @Test("escapes, numbers and nesting limits")
    func reader() throws {
        Self.withTrees([#"{"a":"x\u003e\"y\n","b":[1,-2,3.5,true,false,null],"c":{}}"#, #"{"location":12,"name":"x","n":1.5}"#]) { trees in
        let tree = trees[0], located = trees[1]
        #expect(tree["a"]?.stringValue == "x>\"y\n")
        #expect(tree["b"]?.elements.map(\.description) == ["1", "-2", "3.5", "true", "false", "null"])
        #expect(tree["b"]?.elements.map(\.intValue) == [1, -2, nil, nil, nil, nil])
        #expect(located.intValue(of: "location") == 12 && located.intValue(of: "name") == nil && located.intValue(of: "n") == nil
            && located.intValue(of: "missing") == nil && located["location"]?.intValue(of: "location") == nil)
        #expect(tree["b"]?.elements[2].numberText == "3.5")
        #expect(tree["b"]?.elements.map(\.boolValue) == [nil, nil, nil, true, false, nil])
        #expect(tree["c"]?.description == "{}")
        #expect(tree["c"]?.isObject == true && tree["c"]?.children.first(where: { _ in true }) == nil)
        #expect(tree["d"] == nil && tree["a"]?["a"] == nil)
        }
        func read(_ text: String) throws -> [String] { try ParseTreeReader.read(Array(text.utf8), maximumDepth: 5) { tree in tree.elements.map(\.description) }.get() }
        // An integer too large for Int stays a number, as written.
        #expect(try read("[99999999999999999999,-9223372036854775808]") == ["99999999999999999999", "-9223372036854775808"])
        // Surrogate pairs, and a high surrogate followed by something that is not its low half.
        #expect(try read(#"["\ud83d\ude00"]"#) == ["\"😀\""])
        #expect(try read(#"["\ud83d\u0041"]"#) == ["\"\u{FFFD}A\""])
        #expect(throws: ParseTreeError.self) { try read("[[[[[[[1]]]]]]]") }
        #expect(throws: ParseTreeError.self) { try read(#"{"a":"#) }
        #expect(throws: ParseTreeError.self) { try read(#"{"a":1} x"#) }
        #expect(throws: ParseTreeError.self) { try read(#"{"a" 1}"#) }
        #expect(throws: ParseTreeError.self) { try read("[1,]") }
        #expect(throws: ParseTreeError.self) { try read("") }
    }

    @Test("objects and arrays nested in each other keep their own members")
    func nesting() throws {
        let text = #"{"a":[{"b":[1,2],"c":{"d":[],"e":[[3],[4,{"f":5}]]}},6],"g":{"h":{"i":7}},"j":[]}"#
        Self.withTrees([text]) { trees in
        let tree = trees[0]
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
    }

    @Test("comparing trees: keys in order, locations and constants' values left out when asked")
    func comparing() throws {
        let texts = [#"{"A_Expr":{"lexpr":{"A_Const":{"ival":{"ival":1},"location":3}},"location":5}}"#,
                     #"{"A_Expr":{"lexpr":{"A_Const":{"ival":{"ival":1},"location":9}},"location":7}}"#,
                     #"{"A_Expr":{"lexpr":{"A_Const":{"ival":{"ival":2},"location":9}},"location":7}}"#,
                     #"{"x":[1,{"y":"A_Const"}]}"#, #"{"a":1,"b":2}"#, #"{"b":2,"a":1}"#, #"["x\u0041"]"#, #"["xA"]"#,
                     "[1]", "[1,2]", "[1.0]", "[null]"]
        Self.withTrees(texts) { trees in
        let (a, b, c, noConstant, ab, ba, escaped, plain) = (trees[0], trees[1], trees[2], trees[3], trees[4], trees[5], trees[6], trees[7])
        let (one, two, decimal, null) = (trees[8], trees[9], trees[10], trees[11])
        #expect(a != b && a.equals(b, ignoringLocations: true))
        #expect(!a.equals(c, ignoringLocations: true) && a.equals(c, ignoringLocations: true, ignoringConstantValues: true))
        #expect(a.containsConstant && !noConstant.containsConstant)
        var locations: Set<Int> = []
        a.constantLocations(into: &locations)
        #expect(locations == [3])
        #expect(ab != ba)
        #expect(escaped == plain)
        #expect(one != two && decimal != one && null == null && null != one)
        }
    }

    /// Random documents written by Foundation's JSONSerialization (its escapes, its spacing): every
    /// value the reader gives back is the one written.
    @Test("random documents written by Foundation read back as written")
    func randomDocuments() throws {
        var generator = SplitMix64(state: 18)
        for _ in 0..<2_000 {
            let document = Self.randomValue(depth: 0, using: &generator)
            let data = try JSONSerialization.data(withJSONObject: ["root": document], options: [.fragmentsAllowed])
            let held = try ParseTreeReader.read(Array(data), maximumDepth: 64) { tree in tree.holds(document, at: tree["root"]!) }.get()
            #expect(held, "\(String(decoding: data, as: UTF8.self))")
        }
    }

    #if DEBUG
    /// A tree lives only inside the body it was handed to: debug builds stop on one kept past it rather
    /// than read freed memory.
    /// The child dies on the trap's own signal: the test command sets SWIFT_BACKTRACE, which the child
    /// inherits, and the backtracer symbolicating the whole debug test binary took minutes (once, for ever).
    @Test("a tree kept past its body stops the process (debug builds)")
    func keptPastItsBody() async {
        await #expect(processExitsWith: .failure) {
            for fault in [SIGILL, SIGTRAP, SIGABRT, SIGSEGV, SIGBUS] { signal(fault, SIG_DFL) }
            let kept = ParseTreeReader.read(Array(#"{"a":1}"#.utf8), maximumDepth: 5) { $0 }
            _ = try? kept.get()["a"]
        }
    }
    #endif

    /// Reads each text and hands all their trees to `body` at once (each valid only inside it).
    static func withTrees(_ texts: [String], read: [ParseTree] = [], _ body: ([ParseTree]) -> Void) {
        guard let text = texts.first else { return body(read) }
        let result = ParseTreeReader.read(Array(text.utf8), maximumDepth: 10) { tree in withTrees(Array(texts.dropFirst()), read: read + [tree], body) }
        if case let .failure(error) = result { Issue.record("\(text): \(error.message)") }
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
