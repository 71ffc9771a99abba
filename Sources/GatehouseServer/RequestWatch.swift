import Foundation
import GatehouseCore

/// Wakes long polls (`GET /v1/requests/{id}?wait=30s`) when this instance changes a request.
/// Changes made by another instance on the same database are seen by the poll's own re-read,
/// at most one `recheck` later.
actor RequestWatch {
    private var waiters: [String: [UUID: CheckedContinuation<Void, Never>]] = [:]

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
        let deadline = Date().addingTimeInterval(TimeInterval(span.seconds))
        while true {
            let view = try await getRequest(caller: caller, id: id)
            let left = deadline.timeIntervalSinceNow
            guard view.request.state == .pending || view.request.state == .quarantined, left > 0, !Task.isCancelled else { return view }
            await watch.wait(for: id, atMost: min(left, 1))
        }
    }
}
