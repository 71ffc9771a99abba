import Synchronization

/// Runs an action once a duration has passed, unless `cancel()` comes first. Cancelling ends the
/// sleeping task at once, so a deadline on work that finished early costs nothing afterwards (on
/// the PostgreSQL path that is one timer per transaction). `cancel()` may come before `arm` (the
/// work finished before its timer was set): it is remembered, and the timer never starts.
public final class Deadline: Sendable {
    private enum State {
        case idle
        case armed(Task<Void, Never>)
        case cancelled
    }

    private let state = Mutex(State.idle)

    public init() {}

    public func arm(after duration: Duration, _ action: @escaping @Sendable () async -> Void) {
        let alreadyCancelled = state.withLock { state in
            if case .cancelled = state { return true }
            return false
        }
        guard !alreadyCancelled else { return }
        let task = Task {
            do { try await Task.sleep(for: duration) } catch { return }
            await action()
        }
        let keep = state.withLock { state -> Bool in
            if case .cancelled = state { return false }
            state = .armed(task)
            return true
        }
        if !keep { task.cancel() }
    }

    public func cancel() {
        let task = state.withLock { state -> Task<Void, Never>? in
            defer { state = .cancelled }
            if case .armed(let task) = state { return task }
            return nil
        }
        task?.cancel()
    }
}
