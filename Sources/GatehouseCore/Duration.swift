import Foundation

/// A length of time written the way people write it in the policy file and on the command line:
/// `90s`, `30m`, `1h30m`, `7d`. Stored as whole seconds.
public struct TimeSpan: Sendable, Hashable, Comparable, CustomStringConvertible, Codable {
    public let seconds: Int64

    public init(seconds: Int64) { self.seconds = seconds }

    public static func < (lhs: TimeSpan, rhs: TimeSpan) -> Bool { lhs.seconds < rhs.seconds }

    /// Ten years: longer than any access anyone should ask for, and far from overflow.
    public static let maximum = TimeSpan(seconds: 10 * 365 * 86_400)

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case empty
        case malformed(String)
        case zero(String)
        case tooLong(String)

        public var description: String {
            switch self {
            case .empty:
                return "a duration is required; write it like 90s, 30m, 1h30m or 7d"
            case .malformed(let text):
                return "'\(text)' is not a duration; write a whole number followed by a unit (d, h, m, s), for example 90s, 30m, 1h30m or 7d"
            case .zero(let text):
                return "'\(text)' is zero; a duration must be longer than 0s"
            case .tooLong(let text):
                return "'\(text)' is longer than the maximum of 3650d"
            }
        }
    }

    /// Parses `1h30m`-style text. Units must appear in descending order, each at most once.
    public static func parse(_ raw: String) throws(ParseError) -> TimeSpan {
        let text = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { throw .empty }
        let units: [(Character, Int64)] = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)]
        var total: Int64 = 0
        var digits = ""
        var nextUnitIndex = 0
        var sawUnit = false
        for ch in text {
            if ch.isASCII, ch.isNumber {
                if digits == "0" { digits = "" } // leading zeros do not count towards the limit
                digits.append(ch)
                guard digits.count <= 9 else { throw .tooLong(text) }
                continue
            }
            guard !digits.isEmpty,
                  let unitIndex = units.firstIndex(where: { $0.0 == ch }),
                  unitIndex >= nextUnitIndex,
                  let value = Int64(digits)
            else { throw .malformed(text) }
            total += value * units[unitIndex].1
            guard total <= maximum.seconds else { throw .tooLong(text) }
            digits = ""
            nextUnitIndex = unitIndex + 1
            sawUnit = true
        }
        guard digits.isEmpty, sawUnit else { throw .malformed(text) }
        guard total > 0 else { throw .zero(text) }
        return TimeSpan(seconds: total)
    }

    /// The shortest text that parses back to the same value: `1h30m`, `7d`, `90s` → `1m30s`.
    public var description: String {
        if seconds == 0 { return "0s" }
        var rest = seconds
        var out = ""
        for (unit, size) in [("d", Int64(86_400)), ("h", 3_600), ("m", 60), ("s", 1)] where rest >= size {
            out += "\(rest / size)\(unit)"
            rest %= size
        }
        return out
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { self = try TimeSpan.parse(text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
