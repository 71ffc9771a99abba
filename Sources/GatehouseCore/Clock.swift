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

/// A clock that only moves when told to; for tests and for replaying events.
public final class ManualClock: WallClock {
    private let current: Mutex<Date>

    public init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        current = Mutex(start)
    }

    public func now() -> Date { current.withLock { $0 } }

    public func advance(by seconds: TimeInterval) {
        current.withLock { $0 = $0.addingTimeInterval(seconds) }
    }

    public func set(_ date: Date) {
        current.withLock { $0 = date }
    }
}

extension Date {
    /// Milliseconds since 1970, the precision the store keeps and the audit chain hashes.
    public var unixMilliseconds: Int64 { Int64((timeIntervalSince1970 * 1000).rounded(.down)) }

    public init(unixMilliseconds: Int64) {
        self.init(timeIntervalSince1970: TimeInterval(unixMilliseconds) / 1000)
    }

    /// RFC 3339 with milliseconds, in UTC.
    public var rfc3339: String {
        let formatter = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
        return formatter.format(self)
    }
}
