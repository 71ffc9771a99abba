import Foundation
import GatehouseCore
import OpenAPIRuntime

/// RFC 3339 timestamps with milliseconds out (expiry is enforced to the millisecond, so say so),
/// with or without fractional seconds in.
public struct PreciseDateTranscoder: DateTranscoder {
    public init() {}

    public func encode(_ date: Date) throws -> String {
        date.rfc3339
    }

    public func decode(_ text: String) throws -> Date {
        // The parser rolls an impossible date over (February 30th is March 2nd, 25:61 the next day): refused first.
        guard Self.fieldsInRange(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "'\(text)' is not a real time: a month has 28 to 31 days, an hour 0 to 23, minutes and seconds 0 to 59"))
        }
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return date }
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle()) { return date }
        throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "'\(text)' is not an RFC 3339 time like 2026-11-23T10:00:00Z"))
    }

    /// Whether the date and time fields of `YYYY-MM-DDTHH:MM:SS...` name a real day and time (a text not in that
    /// shape is left to the parser to refuse). A leap second (`:60`) is refused too.
    static func fieldsInRange(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count >= 19 else { return true }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for byte in bytes[range] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
              let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19) else { return true }
        guard (1...12).contains(month), hour <= 23, minute <= 59, second <= 59 else { return false }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        return (1...days).contains(day)
    }
}
