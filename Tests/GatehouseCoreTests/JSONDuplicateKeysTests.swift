import Foundation
import Testing
import GatehouseCore

@Suite("Names given twice in one JSON object")
struct JSONDuplicateKeysTests {
    static func first(_ text: String) -> String? {
        Array(text.utf8).withUnsafeBytes { JSONDuplicateKeys.first(in: $0) }
    }

    @Test("a name twice in one object is found, however it is written; the same name in other objects is not a repetition")
    func found() {
        #expect(Self.first(#"{"a":1,"a":2}"#) == "a")
        #expect(Self.first(#"{"role":"read","r\u006fle":"write"}"#) == "role")
        #expect(Self.first(#" { "x" : { "k" : 1 , "k" : [ ] } } "#) == "k")
        #expect(Self.first(#"{"a":[{"b":1},{"b":2}],"c":{"b":3}}"#) == nil)
        #expect(Self.first(#"{"a":"b","b":"a","c":["a","a"]}"#) == nil, "values are not names")
        #expect(Self.first(#"{"a":"x\",\"a\":\"y","b":"{\"b\":1,\"b\":2}"}"#) == nil, "quotes, commas and braces inside strings")
        #expect(Self.first(#"{"a":{"x":1},"a":{"y":2}}"#) == "a")
        #expect(Self.first(#"[{"a":1},{"a":1,"b":2,"a":3}]"#) == "a")
        // One name to a decoder that keys by Swift's String (canonical equivalence), two to Python's: refused.
        #expect(Self.first(#"{"é":1,"e\u0301":2}"#) == "é")
    }

    @Test("text that is not JSON gives no answer (the body's parser refuses it); many names cost no more than once each")
    func notJSONAndLarge() {
        for broken in [#"{"a":1"#, #"{"a"#, "}", #"{"\ud800":1,"\ud800":2}"#, ""] { #expect(Self.first(broken) == nil, "\(broken)") }
        let many = "{" + (0..<20_000).map { "\"k\($0)\":\($0)" }.joined(separator: ",") + "}"
        #expect(Self.first(many) == nil)
        #expect(Self.first(String(many.dropLast()) + ",\"k19999\":0}") == "k19999")
    }
}
