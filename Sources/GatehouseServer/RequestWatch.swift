import Foundation
import GatehouseCore

/// Wakes long polls (`GET /v1/requests/{id}?wait=30s`) when this instance changes a request.
/// Changes made by another instance on the same database are seen by the poll's own re-read,
/// at most one `recheck` later.
actor RequestWatch {
    private var waiters: [String: [UUID: CheckedContinuation<Void, Never>]] = [:]
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
        for waiter in (waiters.removeValue(forKey: id) ?? [:]).values { waiter.resume() }
    }

    /// Returns when `id` changes here, or after `seconds`.
    func wait(for id: String, atMost seconds: Double) async {
        let key = UUID()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            waiters[id, default: [:]][key] = continuation
            Task { [weak self] in
                try? await Task.sleep(for: .seconds(seconds))
                await self?.timeOut(id, key)
            }
        }
    }

    private func timeOut(_ id: String, _ key: UUID) {
        guard let waiter = waiters[id]?.removeValue(forKey: key) else { return }
        if waiters[id]?.isEmpty == true { waiters[id] = nil }
        waiter.resume()
    }
}

extension AccessService {
    public static let longestWait = TimeSpan(seconds: 60)

    /// The request once it is no longer waiting for a decision, or as it is after `wait`.
    public func waitForDecision(caller: Caller, id: String, wait: String) async throws -> RequestView {
        let span: TimeSpan
        do { span = try TimeSpan.parse(wait) } catch {
            throw GatehouseError.invalid("wait", "invalid_wait", "wait: \(error.description)")
        }
        guard span <= Self.longestWait else {
            throw GatehouseError.invalid("wait", "wait_too_long", "wait is \(span); at most \(Self.longestWait): poll again after it")
        }
        guard await watch.enter(token: caller.tokenId) else {
            throw GatehouseError(.tooManyRequests, "too_many_waits", "this token already holds \(RequestWatch.pollsPerToken) waiting requests open; wait for one to answer")
        }
        let deadline = Date().addingTimeInterval(TimeInterval(span.seconds))
        do {
            while true {
                let view = try await getRequest(caller: caller, id: id)
                let left = deadline.timeIntervalSinceNow
                guard view.request.state == .pending || view.request.state == .quarantined, left > 0, !Task.isCancelled else {
                    await watch.leave(token: caller.tokenId)
                    return view
                }
                // Woken at once by a decision here; another instance's decision is seen on the re-read.
                await watch.wait(for: id, atMost: min(left, 2))
            }
        } catch {
            await watch.leave(token: caller.tokenId)
            throw error
        }
    }
}
