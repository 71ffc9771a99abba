import Foundation

/// The first member name that one object of a JSON text gives twice. JSON parsers disagree on such a
/// body (Foundation keeps the first value, most others the last), so a proxy or filter in front of
/// Gatehouse could read another request than Gatehouse does: such bodies are refused, not guessed at.
public enum JSONDuplicateKeys {
    /// The first repeated name (compared as decoded: `"role"` and `"r\u006fle"` are one name), or nil.
    /// Text that is not JSON gives nil: the parser that reads the body refuses it with its own error.
    /// Nesting deeper than this gives nil too: Foundation's parser refuses it (its limit is 512).
    public static let maximumDepth = 512

    public static func first(in bytes: UnsafeRawBufferPointer) -> String? {
        // One entry per open object or array: the names an object has given so far (nil for an array).
        var open: [Set<String>?] = []
        var decoder: JSONDecoder?
        var expectingName = false
        var index = 0
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "{"):
                guard open.count < maximumDepth else { return nil }
                open.append([])
                expectingName = true
            case UInt8(ascii: "["):
                guard open.count < maximumDepth else { return nil }
                open.append(nil)
                expectingName = false
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                guard !open.isEmpty else { return nil }
                open.removeLast()
                expectingName = false
            case UInt8(ascii: ","):
                expectingName = open.last.map { $0 != nil } ?? false
            case UInt8(ascii: "\""):
                let start = index
                var escaped = false
                index += 1
                while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                    if bytes[index] == UInt8(ascii: "\\") { escaped = true; index += 1 }
                    index += 1
                }
                guard index < bytes.count else { return nil }
                if expectingName, let last = open.indices.last, open[last] != nil {
                    let raw = UnsafeRawBufferPointer(rebasing: bytes[start...index])
                    if escaped, decoder == nil { decoder = JSONDecoder() }
                    guard let name = escaped ? try? decoder?.decode(String.self, from: Data(raw))
                                             : String(validating: UnsafeRawBufferPointer(rebasing: raw.dropFirst().dropLast()), as: UTF8.self) else { return nil }
                    // Inserted in place: a copy per name would make a body of many names cost their square.
                    guard open[last]!.insert(name).inserted else { return name }
                    expectingName = false
                }
            default:
                break
            }
            index += 1
        }
        return nil
    }
}
