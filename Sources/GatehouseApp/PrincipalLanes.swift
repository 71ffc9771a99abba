import GatehouseCore
import Synchronization

/// One filing at a time per principal on this instance. A principal's concurrent attempts wait here,
/// in memory, instead of in front of the single writer that every honest request needs: a hundred
/// connections of ten flooding principals put at most ten transactions before the writer, and each
/// waiting attempt sees the block its predecessor caused (and is answered from the cached read path).
/// Beyond `depth` waiting attempts a principal is answered 429 at once, without touching the store.
public final class PrincipalLanes: Sendable {
    public let depth: Int
    private struct Waiter {
        var id: UInt64
        var continuation: CheckedContinuation<Bool, Never>
    }
    private struct State {
        var lanes: [String: [Waiter]] = [:]
        var nextID: UInt64 = 0
    }
    private let state = Mutex(State())

    public init(depth: Int = 32) {
        self.depth = depth
    }

    func run<T: Sendable>(_ principal: String, _ body: () async throws -> T) async throws -> T {
        switch await enter(principal) {
        case .full:
            throw GatehouseError(.tooManyRequests, "too_many_at_once",
                                 "\(principal) already has \(depth) requests waiting to be filed on this server; wait for their answers and try again")
        case .cancelled:
            throw CancellationError()
        case .entered:
            defer { leave(principal) }
            return try await body()
        }
    }

    private enum Turn { case entered, full, cancelled }

    /// Waits for the principal's turn. A waiter whose task is cancelled leaves the queue at once.
    private func enter(_ principal: String) async -> Turn {
        let id = state.withLock { state -> UInt64 in
            state.nextID &+= 1
            return state.nextID
        }
        var full = false
        let entered = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let now = state.withLock { state -> Turn? in
                    guard var waiting = state.lanes[principal] else {
                        state.lanes[principal] = []
                        return .entered
                    }
                    guard waiting.count < depth else { return .full }
                    // Cancelled before it came here: the handler ran first and found nothing to remove.
                    guard !Task.isCancelled else { return .cancelled }
                    waiting.append(Waiter(id: id, continuation: continuation))
                    state.lanes[principal] = waiting
                    return nil
                }
                if let now {
                    full = now == .full
                    continuation.resume(returning: now == .entered)
                }
            }
        } onCancel: {
            let removed = state.withLock { state -> CheckedContinuation<Bool, Never>? in
                guard var waiting = state.lanes[principal], let index = waiting.firstIndex(where: { $0.id == id }) else { return nil }
                let waiter = waiting.remove(at: index)
                state.lanes[principal] = waiting
                return waiter.continuation
            }
            removed?.resume(returning: false)
        }
        if entered { return .entered }
        return full ? .full : .cancelled
    }

    /// How many attempts of the principal wait for their turn (nil: none is running).
    func waiting(_ principal: String) -> Int? {
        state.withLock { $0.lanes[principal]?.count }
    }

    /// Hands the lane to the next waiter, or frees it.
    private func leave(_ principal: String) {
        let next = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            guard var waiting = state.lanes[principal] else { return nil }
            guard !waiting.isEmpty else {
                state.lanes[principal] = nil
                return nil
            }
            let first = waiting.removeFirst()
            state.lanes[principal] = waiting
            return first.continuation
        }
        next?.resume(returning: true)
    }
}
