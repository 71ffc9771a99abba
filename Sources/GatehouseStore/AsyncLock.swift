import Synchronization

/// A fair async mutex: one holder at a time, waiters served in arrival order, and a waiter gives up
/// after a deadline instead of queueing forever. Used to give the SQLite store exactly one writer; an
/// actor would not do, since it lets other calls in at every await.
final class AsyncLock: Sendable {
    private struct Waiter {
        var id: UInt64
        var continuation: CheckedContinuation<Bool, Never>
        /// Tells the waiter no when `wait` runs out; cancelled when the lock is handed to it first.
        var deadline: Deadline
    }

    private struct State {
        var locked = false
        var nextID: UInt64 = 0
        var waiters: [Waiter] = []
    }

    private let state = Mutex(State())

    struct Timeout: Error {}

    /// Runs `body` holding the lock; throws `Timeout` when the lock was not free within `wait`.
    func withLock<T: Sendable>(wait: Duration, _ body: () async throws -> T) async throws -> T {
        guard await acquire(wait: wait) else { throw Timeout() }
        defer { release() }
        return try await body()
    }

    private func acquire(wait: Duration) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let deadline = Deadline()
            let queued = state.withLock { state -> UInt64? in
                guard state.locked else {
                    state.locked = true
                    return nil
                }
                state.nextID &+= 1
                state.waiters.append(Waiter(id: state.nextID, continuation: continuation, deadline: deadline))
                return state.nextID
            }
            guard let id = queued else {
                continuation.resume(returning: true)
                return
            }
            deadline.arm(after: wait) {
                // Either the lock was handed over already, or we take this waiter out and tell it no.
                let expired = self.state.withLock { state -> CheckedContinuation<Bool, Never>? in
                    guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                    return state.waiters.remove(at: index).continuation
                }
                expired?.resume(returning: false)
            }
        }
    }

    private func release() {
        let next = state.withLock { state -> Waiter? in
            if state.waiters.isEmpty {
                state.locked = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.deadline.cancel()
        next?.continuation.resume(returning: true)
    }
}
