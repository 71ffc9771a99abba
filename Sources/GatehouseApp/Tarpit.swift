import Synchronization

/// Holds back answers to principals the anti-spam policy has blocked. A flooding client that keeps
/// a few connections busy then spends its time waiting instead of the server's CPU. At most
/// `capacity` answers are held at once; beyond that they go out at once, so a client with many
/// connections cannot make the server hold an unbounded number of them.
public final class Tarpit: Sendable {
    public let capacity: Int
    private let held = Mutex(0)

    public init(capacity: Int = 512) {
        self.capacity = capacity
    }

    /// Waits for `seconds` unless the tarpit is full; returns whether it held the caller.
    @discardableResult
    public func hold(seconds: Int64) async -> Bool {
        guard seconds > 0 else { return false }
        let admitted = held.withLock { count in
            guard count < capacity else { return false }
            count += 1
            return true
        }
        guard admitted else { return false }
        defer { held.withLock { $0 -= 1 } }
        // Cancellation (the client went away) ends the hold early; the answer is the same.
        try? await Task.sleep(for: .seconds(seconds))
        return true
    }

    /// Answers being held right now.
    public var occupancy: Int { held.withLock { $0 } }
}
