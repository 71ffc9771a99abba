import Foundation
import GatehouseCore
import GatehouseGuard
import GatehouseStore
import Logging

/// Who is calling, as established from their token.
public struct Caller: Sendable, Equatable {
    public var principal: String
    public var isAdmin: Bool
    public var tokenId: String
    /// Where the caller acted from, when not the API or the web inbox (`via: slack`, the Slack user):
    /// added to the audit event of a decision.
    public var origin: [String: String]

    public init(principal: String, isAdmin: Bool, tokenId: String, origin: [String: String] = [:]) {
        self.principal = principal
        self.isAdmin = isAdmin
        self.tokenId = tokenId
        self.origin = origin
    }
}

/// A request together with the approvals recorded on it.
public struct RequestView: Sendable {
    public var request: AccessRequest
    public var approvals: [Approval]
    /// Approvers of a pending request whose approval no longer counts (blocked since, or their token revoked
    /// by someone else), where the view was built to show one request; empty otherwise.
    public var notCounted: Set<String>

    public init(request: AccessRequest, approvals: [Approval], notCounted: Set<String> = []) {
        self.request = request
        self.approvals = approvals
        self.notCounted = notCounted
    }

    /// Whether an approval of this view is one that counts towards the request (a denial never does).
    public func counts(_ approval: Approval) -> Bool {
        approval.decision == .approve && !notCounted.contains(approval.approver)
    }
}

/// What every use case shares: the store, the running policy, the clock, and the one way to run a
/// transaction. Each use case type holds one of these; none of them holds state of its own.
public final class AppContext: Sendable {
    public let store: GatehouseStore
    public let policies: PolicyHolder
    public let clock: any WallClock
    public let logger: Logger
    public let metrics: any AppMetrics
    let actionGuard = ActionGuard()
    /// Everyone's newest requests, for the spam score's shared-reason signal.
    let recentRequests = RecentRequests()
    let retentionSchedule = RetentionSchedule()

    public init(store: GatehouseStore, policies: PolicyHolder, clock: any WallClock, logger: Logger, metrics: any AppMetrics) {
        self.store = store
        self.policies = policies
        self.clock = clock
        self.logger = logger
        self.metrics = metrics
    }

    /// A write on behalf of a caller. The policy, the time and the caller's token are read *inside*
    /// the transaction, after the writer lock is held: a decision is judged against the state at
    /// the moment it commits, never against what was true while it waited for the lock.
    func write<T: Sendable>(as caller: Caller, _ body: @Sendable @escaping (StoreSession, Policy, Date) async throws -> T) async throws -> T {
        try await write { session in
            let policy = self.policies.policy
            let now = self.clock.now()
            guard let token = try await session.token(id: caller.tokenId), Tokens.caller(for: token, policy: policy, now: now) != nil else {
                throw GatehouseError(.unauthorized, ErrorCode.invalidToken, "the token was revoked, or its principal removed from the policy, while this request waited; nothing was changed")
            }
            return try await body(session, policy, now)
        }
    }

    @discardableResult
    func write<T: Sendable>(_ body: @Sendable @escaping (StoreSession) async throws -> T) async throws -> T {
        try await unavailableOnFailure { try await self.store.write(body) }
    }

    func read<T: Sendable>(_ body: @Sendable @escaping (StoreSession) async throws -> T) async throws -> T {
        try await unavailableOnFailure { try await self.store.read(body) }
    }

    /// Store failures other than our own errors become 503: fail closed, and say so.
    func unavailableOnFailure<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let error as GatehouseError { throw error } catch {
            logger.error("store failure", metadata: ["error": "\(error)"])
            throw GatehouseError(.unavailable, ErrorCode.storeUnavailable, "the store is unavailable; nothing was changed, try again shortly")
        }
    }

    /// Refuses a caller whose token was revoked, or whose principal left the policy, since it authenticated.
    func requireLive(_ caller: Caller) async throws {
        let policy = policies.policy
        let token = try await read { try await $0.token(id: caller.tokenId) }
        guard let token, Tokens.caller(for: token, policy: policy, now: clock.now()) != nil else {
            throw GatehouseError(.unauthorized, ErrorCode.invalidToken, "the token was revoked, or its principal removed from the policy, while this request waited")
        }
    }

    func requireAdmin(_ caller: Caller, _ what: String) throws(GatehouseError) {
        guard caller.isAdmin else {
            throw GatehouseError(.forbidden, ErrorCode.adminOnly, "only admins can \(what)")
        }
    }

    func withApprovals(_ requests: [AccessRequest]) async throws -> [RequestView] {
        try await read { try await Self.withApprovals(requests, session: $0) }
    }

    static func withApprovals(_ requests: [AccessRequest], session: StoreSession) async throws -> [RequestView] {
        let approvals = try await session.approvals(requestIds: requests.map(\.id))
        return requests.map { RequestView(request: $0, approvals: approvals[$0.id] ?? []) }
    }

    /// Blocked principals take no part in decisions: no approving, reporting or reviewing.
    static func refuseIfBlocked(_ principal: String, _ session: StoreSession) async throws {
        if try await session.principalFlags(principal)?.isBlocked == true { throw AppErrors.blocked(principal) }
    }
}

/// Errors more than one use case raises.
enum AppErrors {
    static func raced(_ id: String) -> GatehouseError {
        GatehouseError(.conflict, ErrorCode.concurrentChange, "\(id) was changed by someone else at the same moment; reload it and try again")
    }

    static func blocked(_ principal: String) -> GatehouseError {
        GatehouseError(.forbidden, ErrorCode.principalBlocked, "\(principal) is blocked by the anti-spam policy and cannot request, approve or use access; an admin can lift it with `gatehouse unblock \(principal)`")
    }

    static func onBehalfRefused() -> GatehouseError {
        GatehouseError(.forbidden, ErrorCode.adminOnly, "only admins can check on behalf of another principal; leave `principal` out to check yourself", field: "principal")
    }
}
