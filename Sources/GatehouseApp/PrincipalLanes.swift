import GatehouseCore
import Synchronization

/// One filing at a time per principal on this instance. A principal's concurrent attempts wait here,
/// in memory, instead of in front of the single writer that every honest request needs: a hundred
/// connections of ten flooding principals put at most ten transactions before the writer, and each
/// waiting attempt sees the block its predecessor caused (and is answered from the cached read path).
/// Beyond `depth` waiting attempts a principal is answered 429 at once, without touching the store.
public final class PrincipalLanes: Sendable {
    public let depth: Int
    private let lanes = Mutex<[String: [CheckedContinuation<Void, Never>]]>([:])

    public init(depth: Int = 32) {
        self.depth = depth
    }

    func run<T: Sendable>(_ principal: String, _ body: () async throws -> T) async throws -> T {
        guard await enter(principal) else {
            throw GatehouseError(.tooManyRequests, "too_many_at_once",
                                 "\(principal) already has \(depth) requests waiting to be filed on this server; wait for their answers and try again")
        }
        defer { leave(principal) }
        return try await body()
    }

    /// Waits for the principal's turn; false (at once) when too many already wait.
    private func enter(_ principal: String) async -> Bool {
        enum Turn { case now, queued, full }
        var decision = Turn.now
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            decision = lanes.withLock { lanes in
                guard var waiting = lanes[principal] else {
                    lanes[principal] = []
                    return .now
                }
                guard waiting.count < depth else { return .full }
                waiting.append(continuation)
                lanes[principal] = waiting
                return .queued
            }
            if decision != .queued { continuation.resume() }
        }
        return decision != .full
    }

    private func leave(_ principal: String) {
        let next = lanes.withLock { lanes -> CheckedContinuation<Void, Never>? in
            guard var waiting = lanes[principal] else { return nil }
            guard !waiting.isEmpty else {
                lanes[principal] = nil
                return nil
            }
            let first = waiting.removeFirst()
            lanes[principal] = waiting
            return first
        }
        next?.resume()
    }
}
