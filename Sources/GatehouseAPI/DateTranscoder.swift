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
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return date }
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle()) { return date }
        throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "'\(text)' is not an RFC 3339 time like 2026-11-23T10:00:00Z"))
    }
}
