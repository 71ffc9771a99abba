import Foundation
import GatehouseCore
import Logging
import Synchronization

/// One JSON object per line on standard error, for log shippers (`--log-format json`): `time`
/// (RFC 3339 with milliseconds), `level`, `label`, `message`, and the metadata as fields
/// (`request_id` on lines about an HTTP request).
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String

    public init(label: String) {
        self.label = label
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// One write per line, so lines from several threads never interleave.
    private static let output = Mutex(FileHandle.standardError)

    public func log(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String,
                    file: String, function: String, line: UInt) {
        Self.output.withLock { $0.write(Self.line(level: level, label: label, message: "\(message)", metadata: metadata.merging(explicit ?? [:]) { $1 }, at: Date())) }
    }

    /// The JSON line for one entry (metadata cannot overwrite the four fixed fields).
    static func line(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata, at time: Date) -> Data {
        var object: [String: Any] = [:]
        for (key, value) in metadata { object[key] = json(value) }
        object["time"] = time.rfc3339
        object["level"] = level.rawValue
        object["label"] = label
        object["message"] = message
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return data + Data("\n".utf8)
    }

    static func json(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let text): text
        case .stringConvertible(let convertible): convertible.description
        case .dictionary(let dictionary): dictionary.mapValues(json)
        case .array(let array): array.map(json)
        }
    }
}
