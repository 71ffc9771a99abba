import Foundation
import Yams

/// How `gatehouse serve` is set up: from its flags, the environment and a configuration file, in that
/// order of precedence (a flag wins over `GATEHOUSE_*`, which wins over the file, which wins over the
/// defaults). Secrets (the admin token, database passwords) stay in the environment or in files the
/// policy names; the file holds only where things are and how the server runs.
public struct ServeConfiguration: Sendable, Equatable {
    public var policy = "gatehouse.yaml"
    public var database = "sqlite:gatehouse.db"
    public var host = "127.0.0.1"
    public var port = 8080
    public var sweepEvery = "1s"
    /// How long notifications, Slack message references and expired session tokens are kept (`Housekeeping`).
    public var retention = "30d"
    public var logLevel = "info"
    public var logFormat = LogFormat.text
    public var proxy = false
    /// Reverse proxies whose `X-Forwarded-For` names the client (`TrustedProxies`).
    public var trustedProxies = TrustedProxies.none

    public enum LogFormat: String, Sendable, CaseIterable {
        case text, json
    }

    /// Each setting: its key in the file (and its flag, `--` with dashes), and its environment variable.
    public static let settings: [(key: String, variable: String)] = [
        ("policy", "GATEHOUSE_POLICY"), ("database", "GATEHOUSE_DATABASE"), ("host", "GATEHOUSE_HOST"), ("port", "GATEHOUSE_PORT"),
        ("sweep_every", "GATEHOUSE_SWEEP_EVERY"), ("log_level", "GATEHOUSE_LOG_LEVEL"), ("log_format", "GATEHOUSE_LOG_FORMAT"),
        ("proxy", "GATEHOUSE_PROXY"), ("retention", "GATEHOUSE_RETENTION"), ("trusted_proxies", "GATEHOUSE_TRUSTED_PROXIES"),
    ]

    /// Settings that take several values: written comma-separated, or as a YAML list in the file.
    static let listSettings: Set<String> = ["trusted_proxies"]

    /// The shortest and longest `retention`: a day (the anti-spam signals and notification budgets look back
    /// at most that far) and ten years.
    public static let retentionRange: ClosedRange<Int64> = 86_400...(3_650 * 86_400)

    public init() {}

    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// The settings from `flags` (by file key; nil or absent: not given), `environment`, and the text
    /// of the configuration file at `file` (nil: none). Every mistake is reported with where it is.
    public static func resolve(flags: [String: String], environment: [String: String], file: (path: String, text: String)?) throws -> ServeConfiguration {
        var values: [String: (value: String, origin: String)] = [:]
        if let file {
            // Every line of the file must hold, also one a variable or a flag overrides this time.
            var checked = ServeConfiguration()
            for (key, entry) in try fileValues(file.text, path: file.path).sorted(by: { $0.key < $1.key }) {
                try checked.set(key, entry.value, origin: entry.origin)
                values[key] = entry
            }
        }
        for (key, variable) in settings {
            if let value = environment[variable], !value.isEmpty { values[key] = (value, variable) }
            if let value = flags[key] { values[key] = (value, "--" + key.replacingOccurrences(of: "_", with: "-")) }
        }
        var configuration = ServeConfiguration()
        for (key, (value, origin)) in values {
            try configuration.set(key, value, origin: origin)
        }
        return configuration
    }

    private mutating func set(_ key: String, _ value: String, origin: String) throws {
        func problem(_ what: String) -> Problem { Problem(message: "\(origin): \(what)") }
        switch key {
        case "policy": policy = value
        case "database": database = value
        case "host": host = value
        case "port":
            guard let number = Int(value), (1...65535).contains(number) else { throw problem("the port must be a number from 1 to 65535, not `\(value)`") }
            port = number
        case "sweep_every":
            do { _ = try TimeSpan.parse(value) } catch { throw problem("\(error)") }
            sweepEvery = value
        case "retention":
            let span: TimeSpan
            do { span = try TimeSpan.parse(value) } catch .tooLong, .zero { throw problem("the retention must be from 1d to 3650d, not `\(value)`") } catch {
                throw problem("`\(value)` is not a duration like 30d or 90d")
            }
            guard Self.retentionRange.contains(span.seconds) else {
                throw problem("the retention must be from 1d to 3650d, not `\(value)`: rows are kept at least a day, which the anti-spam signals look back over")
            }
            retention = value
        case "log_level":
            let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
            guard levels.contains(value) else { throw problem("unknown log level `\(value)`; use one of \(levels.joined(separator: ", "))") }
            logLevel = value
        case "log_format":
            guard let format = LogFormat(rawValue: value) else { throw problem("unknown log format `\(value)`; use text or json") }
            logFormat = format
        case "proxy":
            switch value.lowercased() {
            case "true", "yes", "on", "1": proxy = true
            case "false", "no", "off", "0": proxy = false
            default: throw problem("`\(value)` is not true or false")
            }
        case "trusted_proxies":
            do { trustedProxies = try TrustedProxies.parse(value) } catch { throw problem("\(error)") }
        default:
            throw problem("unknown setting `\(key)`")
        }
    }

    /// The file's settings: a YAML mapping of the keys in `settings` to scalars.
    static func fileValues(_ text: String, path: String) throws -> [String: (value: String, origin: String)] {
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw Problem(message: "\(path): not valid YAML: \(error)")
        }
        guard let root else { return [:] }
        guard let mapping = root.mapping else {
            throw Problem(message: "\(path): the configuration must be a YAML mapping of settings (\(settings.map(\.key).joined(separator: ", ")))")
        }
        var values: [String: (value: String, origin: String)] = [:]
        for (keyNode, valueNode) in mapping {
            let line = (keyNode.mark?.line ?? 0)
            let key = keyNode.scalar?.string ?? ""
            guard settings.contains(where: { $0.key == key }) else {
                let hint = PolicyLoader.closest(to: key, in: settings.map(\.key)).map { " (did you mean `\($0)`?)" } ?? ""
                throw Problem(message: "\(path):\(line): unknown setting `\(key)`\(hint); the settings are \(settings.map(\.key).joined(separator: ", "))")
            }
            // A list setting may also be written as a YAML list of scalars.
            let items = listSettings.contains(key) ? valueNode.sequence.flatMap { list in list.map { $0.scalar?.string } } : nil
            guard let scalar = valueNode.scalar?.string ?? items.flatMap({ $0.contains(nil) ? nil : $0.compactMap { $0 }.joined(separator: ",") }) else {
                throw Problem(message: "\(path):\(line): `\(key)` must be a single value" + (listSettings.contains(key) ? " or a list of them" : ""))
            }
            values[key] = (scalar, "\(path):\(line)")
        }
        return values
    }
}
