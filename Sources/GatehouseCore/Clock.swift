import Foundation
import Synchronization

/// Where the current time comes from. The core never reads the system clock itself, so every
/// time-dependent rule (expiry, pending TTL) can be tested by moving an injected clock.
public protocol WallClock: Sendable {
    func now() -> Date
}

public struct SystemClock: WallClock {
    public init() {}
    public func now() -> Date { Date() }
}

/// A clock that only moves when told to; for tests and for replaying events. `followingRealTime`:
/// it runs with the real clock from where it was put (tests that meet a real identity provider,
/// whose tokens carry real times, yet still jump ahead).
public final class ManualClock: WallClock {
    /// The time shown, minus the real time when `following`.
    private let current: Mutex<Date>
    private let following: Bool

    public init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000), followingRealTime: Bool = false) {
        following = followingRealTime
        current = Mutex(followingRealTime ? Date(timeIntervalSince1970: start.timeIntervalSince(Date())) : start)
    }

    public func now() -> Date {
        let value = current.withLock { $0 }
        return following ? Date().addingTimeInterval(value.timeIntervalSince1970) : value
    }

    public func advance(by seconds: TimeInterval) {
        current.withLock { $0 = $0.addingTimeInterval(seconds) }
    }

    public func set(_ date: Date) {
        current.withLock { $0 = following ? Date(timeIntervalSince1970: date.timeIntervalSince(Date())) : date }
    }
}

extension Date {
    /// Milliseconds since 1970, the precision the store keeps and the audit chain hashes.
    /// Rounded to the nearest millisecond, so `Date(unixMilliseconds: n).unixMilliseconds == n`
    /// even where the binary fraction of n/1000 lands just below the whole millisecond.
    public var unixMilliseconds: Int64 { Int64((timeIntervalSince1970 * 1000).rounded()) }

    public init(unixMilliseconds: Int64) {
        self.init(timeIntervalSince1970: TimeInterval(unixMilliseconds) / 1000)
    }

    /// RFC 3339 with milliseconds, in UTC; the milliseconds are the stored ones, not a re-rounding
    /// of the floating-point time.
    /// Computed directly (days-to-civil), since it is on the hot path of every `check` answer.
    public var rfc3339: String {
        let ms = unixMilliseconds
        let seconds = ms >= 0 ? ms / 1000 : (ms - 999) / 1000
        let fraction = ms - seconds * 1000
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func pad(_ value: Int64, _ width: Int) -> String {
            let digits = String(value)
            return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay % 3600 / 60, 2)):\(pad(secondOfDay % 60, 2)).\(pad(fraction, 3))Z"
    }
}
