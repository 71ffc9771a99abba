import Foundation
import Synchronization
import GatehouseCore
import GatehouseStore

/// What runs beside the use cases: the sweeper that records expiry, and policy reloads.
public struct Housekeeping: Sendable {
    let context: AppContext
    let signIns: SignIns

    init(_ context: AppContext, signIns: SignIns) {
        self.context = context
        self.signIns = signIns
    }

    /// This process, as a lease holder: unique per start.
    public static let instanceID = "\(ProcessInfo.processInfo.hostName)-\(getpid())-\(Identifier.make("i"))"

    /// How much waits, how much access is open now, and how far behind the outbox is (for `/metrics`).
    public func operationalCounts() async throws -> (counts: OperationalCounts, at: Date) {
        let now = context.clock.now()
        return (try await context.read { try await $0.operationalCounts(now: now) }, now)
    }

    /// How long notifications and Slack message references outlive their request's decision, and tokens their
    /// expiry (`StoreSession.pruneRetained`), unless `serve` is told otherwise (`retention`): 30 days.
    public static let retention: TimeInterval = 30 * 86_400
    /// Rows pruned per table per sweep.
    static let retentionBatch = 1_000

    /// Marks expired grants and pending requests and writes their audit events. Expiry is already
    /// enforced at decision time; this makes it visible and announces it. When several instances
    /// share the database, only the holder of the `sweeper` lease sweeps; the lease runs for `lease`
    /// and is renewed on each sweep, so another instance takes over within that time when the holder stops.
    @discardableResult
    public func sweep(holder: String = Housekeeping.instanceID, lease: TimeInterval = 10,
                      retention: TimeInterval = Housekeeping.retention) async throws -> (grants: Int, requests: Int) {
        let context = self.context
        // People signed in on other instances, or whose sessions ended, as the store has them.
        try await signIns.refreshPeople()
        // Look first on a reader, so an idle sweeper never takes the write lock.
        let probe = context.clock.now()
        // Refused attempts are kept a day (longer than any signal window); passed rate-limit keys an hour.
        let pruneBefore = probe.addingTimeInterval(-86_400)
        let due = try await context.read { session in
            let grants = try await session.expiredOpenGrants(now: probe, limit: 1)
            let requests = try await session.expiredPendingRequests(now: probe, limit: 1)
            let prune = try await session.antiSpamPruneDue(before: pruneBefore)
            return !grants.isEmpty || !requests.isEmpty || prune
        }
        let swept = due ? try await expire(holder: holder, lease: lease, pruneBefore: pruneBefore) : (0, 0)
        try await pruneRetained(holder: holder, lease: lease, retention: retention)
        return swept
    }

    private func expire(holder: String, lease: TimeInterval, pruneBefore: Date) async throws -> (grants: Int, requests: Int) {
        let context = self.context
        return try await context.write { session in
            let now = context.clock.now()
            guard try await session.claimLease("sweeper", holder: holder, now: now, until: now.addingTimeInterval(lease)) else { return (0, 0) }
            try await session.pruneAntiSpam(refusalsBefore: pruneBefore, now: now.addingTimeInterval(-3600))
            var entries: [AuditEntry] = []
            let grants = try await session.expiredOpenGrants(now: now, limit: 500)
            for grant in grants {
                let expired = GrantLifecycle.expire(grant)
                if try await session.endGrant(expired) { entries.append(AuditEntry.grantExpired(expired)) }
            }
            let requests = try await session.expiredPendingRequests(now: now, limit: 500)
            for request in requests {
                let expired = RequestLifecycle.expire(request, now: now)
                if try await session.updateRequest(expired, from: request.state) { entries.append(AuditEntry.requestExpired(expired)) }
            }
            try await session.appendAudit(entries, at: now)
            return (grants.count, requests.count)
        }
    }

    /// Prunes what is kept only for a while (`StoreSession.pruneRetained`), in a write of its own (a failure
    /// here never holds up expiry). Looked at about hourly (the probe walks past rows that open requests
    /// keep), and again at the next sweep while a round pruned a full batch.
    func pruneRetained(holder: String, lease: TimeInterval, retention: TimeInterval) async throws {
        let context = self.context
        let schedule = context.retentionSchedule
        let start = context.clock.now()
        guard schedule.isDue(at: start) else { return }
        let before = start.addingTimeInterval(-retention)
        guard try await context.read({ try await $0.retentionDue(before: before) }) else {
            schedule.ran(at: start, full: false)
            return
        }
        let pruned = try await context.write { session -> StoreSession.Pruned? in
            let now = context.clock.now()
            guard try await session.claimLease("sweeper", holder: holder, now: now, until: now.addingTimeInterval(lease)) else { return nil }
            return try await session.pruneRetained(before: before, limit: Self.retentionBatch)
        }
        let full = pruned.map { max($0.notifications, $0.slackMessages, $0.tokens) >= Self.retentionBatch } ?? false
        schedule.ran(at: start, full: full)
        if let pruned, pruned.total > 0 {
            context.logger.info("pruned rows kept only for a while", metadata: [
                "notifications": "\(pruned.notifications)", "slack_messages": "\(pruned.slackMessages)", "tokens": "\(pruned.tokens)"])
        }
    }

    public func reloadPolicy(caller: Caller) async throws -> PolicyHolder.ReloadResult {
        try context.requireAdmin(caller, "reload the policy")
        return try await reloadPolicy(actor: caller.principal)
    }

    /// Re-reads the policy file and records the attempt, accepted or refused, in the audit log.
    public func reloadPolicy(actor: String) async throws -> PolicyHolder.ReloadResult {
        let context = self.context
        let result = context.policies.reload(logger: context.logger)
        if result.reloaded {
            let ended = try await signIns.endRemovedPrincipals(actor: "policy")
            if !ended.isEmpty { context.logger.notice("principals removed from the policy lost their tokens and grants", metadata: ["principals": "\(ended)"]) }
        }
        try await context.write { session in
            try await session.appendAudit([AuditEntry(
                actor: actor, action: result.reloaded ? .policyReloaded : .policyReloadRefused, subject: context.policies.path ?? "policy",
                details: AuditEntry.compact(["sha256": result.sha256, "problems": result.problems.isEmpty ? nil : result.problems.joined(separator: "\n")]))],
                at: context.clock.now())
        }
        return result
    }
}

/// When this instance last looked for rows to prune (`Housekeeping.pruneRetained`).
final class RetentionSchedule: Sendable {
    static let interval: TimeInterval = 3600
    private let state = Mutex<(last: Date?, full: Bool)>((nil, false))

    func isDue(at now: Date) -> Bool {
        state.withLock { state in
            guard let last = state.last, !state.full else { return true }
            return now.timeIntervalSince(last) >= Self.interval || now < last
        }
    }

    func ran(at now: Date, full: Bool) {
        state.withLock { $0 = (now, full) }
    }
}
