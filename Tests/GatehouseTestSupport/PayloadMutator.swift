import Foundation

/// Hostile variations of a JSON payload and of the bytes that carry it, from a seed: values swapped for
/// other types, keys dropped, strings grown, nested JSON rewritten; bytes flipped, inserted, cut and
/// repeated. For tests that feed an endpoint or parser what a peer holding a valid signature could send.
public struct PayloadMutator {
    public var generator: SplitMix64

    public init(seed: UInt64) { generator = SplitMix64(state: seed) }

    /// Values that stand in for whatever a payload held (made once per mutator).
    private let strange: [Any] = PayloadMutator.strangeValues

    static var strangeValues: [Any] { [
        NSNull(), 0, -1, 1.5, true, "", "req_", "req_abc123", "U0PERSON01", String(repeating: "A", count: 40_000),
        "T0TEAM0001\u{0}", "req_abc123 ", "<script>", [Any](), [String: Any](), ["id": ["id": "U0PERSON01"]],
        [["action_id": "gatehouse_approve"]], "{\"request_id\":\"req_zzz\"}", "{\"request_id\":1}", "\u{202E}req_abc123", "%00", "&payload=",
    ] }

    /// Bytes that mean something to a form body or to JSON, and broken UTF-8.
    static let specials = Array("%&=+{}[]\"\\\u{0}".utf8) + [0xFF, 0xC3, 0x80]

    /// `value` with one to three changes somewhere inside it.
    public mutating func mutate(_ value: Any) -> Any {
        var value = value
        for _ in 0...Int.random(in: 0..<3, using: &generator) { value = change(value) }
        return value
    }

    private mutating func change(_ value: Any) -> Any {
        if var array = value as? [Any], !array.isEmpty {
            let index = Int.random(in: 0..<array.count, using: &generator)
            array[index] = change(array[index])
            return array
        }
        guard var object = value as? [String: Any] else { return strange.randomElement(using: &generator)! }
        guard let key = object.keys.sorted().randomElement(using: &generator) else { return object }
        switch Int.random(in: 0..<4, using: &generator) {
        case 0: object[key] = nil
        case 1: object[key] = strange.randomElement(using: &generator)!
        default: object[key] = change(object[key]!)
        }
        return object
    }

    /// `bytes` with one to four bytes flipped or inserted, a run cut out, or a prefix repeated after `&`.
    public mutating func mutate(bytes: [UInt8]) -> [UInt8] {
        var body = bytes
        for _ in 0...Int.random(in: 0..<4, using: &generator) where !body.isEmpty {
            let at = Int.random(in: 0..<body.count, using: &generator)
            switch Int.random(in: 0..<4, using: &generator) {
            case 0: body[at] = Self.specials.randomElement(using: &generator)!
            case 1: body.insert(Self.specials.randomElement(using: &generator)!, at: at)
            case 2: body.removeSubrange(at..<min(body.count, at + Int.random(in: 1...30, using: &generator)))
            default: body += Array("&".utf8) + body[..<at]
            }
        }
        return body
    }

    public mutating func pick<T>(_ values: [T]) -> T { values.randomElement(using: &generator)! }

    public mutating func chance(_ oneIn: Int) -> Bool { Int.random(in: 0..<oneIn, using: &generator) == 0 }
}
