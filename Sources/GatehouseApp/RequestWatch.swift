import Foundation
import GatehouseStore

/// Wakes long polls (`GET /v1/requests/{id}?wait=30s`) when this instance changes a request.
/// Changes made by another instance on the same database are seen by the poll's own re-read,
/// at most one `recheck` later.
actor RequestWatch {
    private struct Waiter {
        var continuation: CheckedContinuation<Void, Never>
        /// Resumes the waiter when its time is up; cancelled when a change wakes it first.
        var deadline: Deadline
    }

    private var waiters: [String: [UUID: Waiter]] = [:]
    private var pollsByToken: [String: Int] = [:]
    /// Long polls one token may hold open at once; more are refused (429) rather than queued.
    static let pollsPerToken = 8

    func enter(token: String) -> Bool {
        guard pollsByToken[token, default: 0] < Self.pollsPerToken else { return false }
        pollsByToken[token, default: 0] += 1
        return true
    }

    func leave(token: String) {
        pollsByToken[token, default: 1] -= 1
        if pollsByToken[token] == 0 { pollsByToken[token] = nil }
    }

    func changed(_ id: String) {
        for waiter in (waiters.removeValue(forKey: id) ?? [:]).values {
            waiter.deadline.cancel()
            waiter.continuation.resume()
        }
    }

    /// Returns when `id` changes here, or after `duration`.
    func wait(for id: String, atMost duration: Duration) async {
        let key = UUID()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let deadline = Deadline()
            waiters[id, default: [:]][key] = Waiter(continuation: continuation, deadline: deadline)
            deadline.arm(after: duration) { [weak self] in await self?.timeOut(id, key) }
        }
    }

    private func timeOut(_ id: String, _ key: UUID) {
        guard let waiter = waiters[id]?.removeValue(forKey: key) else { return }
        if waiters[id]?.isEmpty == true { waiters[id] = nil }
        waiter.continuation.resume()
    }
}
