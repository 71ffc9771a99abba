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
}

/// A request together with the approvals recorded on it.
public struct RequestView: Sendable {
    public var request: AccessRequest
    public var approvals: [Approval]
}

/// The application layer: one function per use case, each in one store transaction. The pure core
/// decides; this persists the result and its audit events together.
public final class AccessService: Sendable {
    public let store: GatehouseStore
    public let policies: PolicyHolder
    public let clock: any WallClock
    let logger: Logger
    let actionGuard = ActionGuard()
    public let metrics = GatehouseMetrics()
    public let tarpit = Tarpit()
    let watch = RequestWatch()

    public init(store: GatehouseStore, policies: PolicyHolder, clock: any WallClock, logger: Logger = Logger(label: "gatehouse")) {
        self.store = store
        self.policies = policies
        self.clock = clock
        self.logger = logger
    }

    // MARK: authentication and tokens

    public static let bootstrapAdminName = "admin"

    /// On first start, `GATEHOUSE_ADMIN_TOKEN` becomes the token of the built-in `admin` principal.
    /// Later starts leave the stored admin alone.
    public func bootstrapAdmin(token: String) async throws -> Bool {
        guard token.count >= 16 else {
            throw GatehouseError(.invalid, "admin_token_too_short", "GATEHOUSE_ADMIN_TOKEN must be at least 16 characters; generate one with `openssl rand -hex 24`", field: "GATEHOUSE_ADMIN_TOKEN")
        }
        return try await store.write { session in
            let now = self.clock.now()
            guard try await !session.hasBootstrapAdmin() else { return false }
            let record = TokenRecord(id: Identifier.make("tok"), principal: Self.bootstrapAdminName, description: "bootstrap admin (GATEHOUSE_ADMIN_TOKEN)",
                                     isBootstrapAdmin: true, createdAt: now, createdBy: "system", revokedAt: nil)
            try await session.insertToken(record, hash: TokenSecret.hash(token))
            try await session.appendAudit([AuditEntry(actor: "system", action: "token.created", subject: record.id,
                                                      details: ["principal": record.principal, "admin": "true"])], at: now)
            return true
        }
    }

    public func authenticate(bearer token: String?) async throws -> Caller {
        guard let token, !token.isEmpty else {
            throw GatehouseError(.unauthorized, "missing_token", "no token: send `Authorization: Bearer <token>` (set GATEHOUSE_TOKEN for the CLI)")
        }
        guard token.utf8.count <= 256, let record = try await unavailableOnFailure({ try await self.store.liveToken(hash: TokenSecret.hash(token)) }) else {
            throw GatehouseError(.unauthorized, "invalid_token", "the token is unknown or revoked; ask an admin for a new one (`gatehouse token create NAME`)")
        }
        let policy = policies.policy
        if record.isBootstrapAdmin {
            return Caller(principal: record.principal, isAdmin: true, tokenId: record.id)
        }
        guard policy.principals[record.principal] != nil else {
            throw GatehouseError(.unauthorized, "principal_removed", "the token belongs to \(record.principal), who is no longer in the policy")
        }
        return Caller(principal: record.principal, isAdmin: policy.isAdmin(record.principal), tokenId: record.id)
    }

    public func createToken(caller: Caller, principal: String, description: String?) async throws -> (TokenRecord, String) {
        try requireAdmin(caller, "create tokens")
        let policy = policies.policy
        guard policy.principals[principal] != nil else {
            let known = policy.principals.keys.sorted().joined(separator: ", ")
            throw GatehouseError.invalid("principal", "unknown_principal", "'\(principal)' is not a principal in the policy; known principals: \(known)")
        }
        if let description, description.utf8.count > 256 {
            throw GatehouseError.invalid("description", "description_too_long", "the description is longer than 256 bytes")
        }
        if let description { try TextRules.check(description, field: "description") }
        let secret = TokenSecret.generate()
        let record = try await write(as: caller) { session, _, now in
            let record = TokenRecord(id: Identifier.make("tok"), principal: principal, description: description, isBootstrapAdmin: false,
                                     createdAt: now, createdBy: caller.principal, revokedAt: nil)
            try await session.insertToken(record, hash: TokenSecret.hash(secret))
            try await session.appendAudit([AuditEntry(actor: caller.principal, action: "token.created", subject: record.id,
                                                      details: ["principal": principal])], at: now)
            return record
        }
        return (record, secret)
    }

    public func listTokens(caller: Caller, includeRevoked: Bool) async throws -> [TokenRecord] {
        try requireAdmin(caller, "list tokens")
        return try await read { try await $0.tokens(includeRevoked: includeRevoked) }
    }

    public func revokeToken(caller: Caller, id: String) async throws -> TokenRecord {
        try requireAdmin(caller, "revoke tokens")
        return try await write(as: caller) { session, _, now in
            guard var record = try await session.token(id: id) else {
                throw GatehouseError(.notFound, "token_not_found", "no token with id \(id); list them with `gatehouse token list`")
            }
            guard record.revokedAt == nil else {
                throw GatehouseError(.conflict, "token_revoked", "token \(id) is already revoked")
            }
            try await session.revokeToken(id: id, by: caller.principal, at: now)
            try await session.appendAudit([AuditEntry(actor: caller.principal, action: "token.revoked", subject: id,
                                                      details: ["principal": record.principal])], at: now)
            record.revokedAt = now
            return record
        }
    }

    // MARK: requests

    /// Files a request. `created` is false when the identical request was already waiting (it is
    /// returned instead, and nobody is notified again).
    public func createRequest(caller: Caller, input given: NewRequestInput, action: Action? = nil,
                              sourceIP: String? = nil) async throws -> (view: RequestView, created: Bool) {
        var prepared = given
        if let action {
            if let problem = action.problem { throw GatehouseError.invalid("action", "invalid_action", problem) }
            prepared.role = Role.actionRoleName
            prepared.action = (action, await classify(action, normalize: true))
            if prepared.duration.isEmpty {
                prepared.duration = policies.policy.resources[prepared.resource]?.actions?.maxDuration.description ?? "1h"
            }
        }
        return try await file(caller: caller, input: prepared, sourceIP: sourceIP)
    }

    public enum RequestScope: String, Sendable { case mine, toApprove = "to_approve", all }

    public func listRequests(caller: Caller, scope: RequestScope, state: RequestState?, limit: Int) async throws -> [RequestView] {
        let policy = policies.policy
        var filter = StoreSession.RequestFilter(states: state.map { [$0] }, limit: limit)
        switch scope {
        case .mine:
            filter.requester = caller.principal
        case .toApprove:
            filter.states = [state ?? .pending]
            filter.resources = approvableResources(caller.principal, policy: policy)
        case .all:
            // Reviewers find what the anti-spam policy holds with `--all --state quarantined`.
            if !caller.isAdmin, !(state == .quarantined && policy.isReviewer(caller.principal)) {
                throw GatehouseError(.forbidden, "admin_only", "only admins can list all requests (reviewers: those in state quarantined); use scope mine or to_approve", field: "scope")
            }
        }
        let query = filter
        let requests = try await read { try await $0.requests(query) }
        let visible = scope == .toApprove
            ? requests.filter { $0.requester != caller.principal && canDecide(caller.principal, $0, policy: policy) }
            : requests
        let views = try await withApprovals(visible)
        // Waiting for *my* approval: not the ones I already decided.
        return scope == .toApprove ? views.filter { !$0.approvals.contains { $0.approver == caller.principal } } : views
    }

    public func getRequest(caller: Caller, id: String) async throws -> RequestView {
        let view = try await read { session -> RequestView? in
            guard let request = try await session.request(id: id) else { return nil }
            return RequestView(request: request, approvals: try await session.approvals(requestId: id))
        }
        let policy = policies.policy
        guard let view, caller.isAdmin || view.request.requester == caller.principal
                || (view.request.state == .quarantined && policy.isReviewer(caller.principal))
                || canDecide(caller.principal, view.request, policy: policy) else {
            throw GatehouseError(.notFound, "request_not_found", "no request \(id) that you can see; list yours with `gatehouse requests`")
        }
        return view
    }

    public func decide(caller: Caller, id: String, decision: ApprovalDecision, comment: String?) async throws -> RequestView {
        let comment = comment.flatMap { $0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? nil : $0 }
        let result: Result<RequestView, GatehouseError> = try await write(as: caller) { session, policy, now in
            try await Self.refuseIfBlocked(caller.principal, session)
            guard let request = try await session.request(id: id) else {
                throw GatehouseError(.notFound, "request_not_found", "no request \(id); list pending ones with `gatehouse requests --to-approve`")
            }
            let approvals = try await session.approvals(requestId: id)
            if decision == .approve, try await session.principalFlags(request.requester)?.isBlocked == true {
                throw GatehouseError(.conflict, "requester_blocked", "\(request.requester) is blocked by the anti-spam policy; their requests cannot be approved until an admin unblocks them (deny it instead)")
            }
            let outcome = try RequestLifecycle.decide(request, existing: approvals, approver: caller.principal, decision: decision,
                                                      comment: comment, policy: policy, now: now, grantId: Identifier.make("grt"))
            switch outcome {
            case .recorded(let approval, let counted):
                try await session.insertApproval(approval)
                try await session.appendAudit([AuditEntry(actor: caller.principal, action: "approval.recorded", subject: id, resource: request.resource,
                                                          details: Self.compact(["principal": request.requester, "comment": comment,
                                                                                 "approvals": "\(counted)/\(max(request.approvalsRequired, 1))"]))], at: now)
                return .success(RequestView(request: request, approvals: approvals + [approval]))
            case .approved(let approval, let updated, let grant):
                try await session.insertApproval(approval)
                guard try await session.updateRequest(updated, from: .pending) else { throw Self.raced(id) }
                try await session.insertGrant(grant)
                try await session.appendAudit([
                    AuditEntry(actor: caller.principal, action: "request.approved", subject: id, resource: request.resource,
                               details: Self.compact(["principal": request.requester, "comment": comment, "grant_id": grant.id])),
                    Self.grantStarted(grant),
                ], at: now)
                return .success(RequestView(request: updated, approvals: approvals + [approval]))
            case .denied(let approval, let updated):
                try await session.insertApproval(approval)
                guard try await session.updateRequest(updated, from: .pending) else { throw Self.raced(id) }
                try await session.appendAudit([AuditEntry(actor: caller.principal, action: "request.denied", subject: id, resource: request.resource,
                                                          details: Self.compact(["principal": request.requester, "comment": comment]))], at: now)
                return .success(RequestView(request: updated, approvals: approvals + [approval]))
            case .expired(let updated):
                // Record the expiry the sweeper has not written yet, then refuse the decision.
                if try await session.updateRequest(updated, from: request.state) {
                    try await session.appendAudit([Self.requestExpired(updated)], at: now)
                }
                return .failure(GatehouseError(.conflict, "request_expired", "request \(id) expired at \(request.pendingExpiresAt.rfc3339) before it was decided; the requester must file a new one"))
            }
        }
        await watch.changed(id)
        return try result.get()
    }

    public func cancel(caller: Caller, id: String) async throws -> RequestView {
        return try await write(as: caller) { session, _, now in
            guard let request = try await session.request(id: id),
                  request.requester == caller.principal || caller.isAdmin else {
                throw GatehouseError(.notFound, "request_not_found", "no request \(id) of yours; list them with `gatehouse requests`")
            }
            let updated = try RequestLifecycle.cancel(request, by: caller.principal, isAdmin: caller.isAdmin, now: now)
            guard try await session.updateRequest(updated, from: request.state) else { throw Self.raced(id) }
            try await session.appendAudit([AuditEntry(actor: caller.principal, action: "request.canceled", subject: id, resource: request.resource,
                                                      details: ["principal": request.requester])], at: now)
            return RequestView(request: updated, approvals: try await session.approvals(requestId: id))
        }
    }

    // MARK: grants

    public func listGrants(caller: Caller, all: Bool, activeOnly: Bool, limit: Int) async throws -> [Grant] {
        if all { try requireAdmin(caller, "list everyone's grants") }
        let filter = StoreSession.GrantFilter(principal: all ? nil : caller.principal, activeAt: activeOnly ? clock.now() : nil, limit: limit)
        return try await read { try await $0.grants(filter) }
    }

    public func getGrant(caller: Caller, id: String) async throws -> Grant {
        let grant = try await read { try await $0.grant(id: id) }
        guard let grant, caller.isAdmin || grant.principal == caller.principal else {
            throw GatehouseError(.notFound, "grant_not_found", "no grant \(id) of yours; list them with `gatehouse grants`")
        }
        return grant
    }

    public func release(caller: Caller, id: String) async throws -> Grant {
        try await endGrant(caller: caller, id: id, action: "grant.released") { grant, now throws(GatehouseError) in
            try GrantLifecycle.release(grant, by: caller.principal, now: now)
        }
    }

    public func revoke(caller: Caller, id: String, reason: String) async throws -> Grant {
        try requireAdmin(caller, "revoke grants")
        return try await endGrant(caller: caller, id: id, action: "grant.revoked") { grant, now throws(GatehouseError) in
            try GrantLifecycle.revoke(grant, by: caller.principal, isAdmin: caller.isAdmin, reason: reason, now: now)
        }
    }

    private func endGrant(caller: Caller, id: String, action: String,
                          _ transition: @escaping @Sendable (Grant, Date) throws(GatehouseError) -> Grant) async throws -> Grant {
        return try await write(as: caller) { session, _, now in
            guard let grant = try await session.grant(id: id), caller.isAdmin || grant.principal == caller.principal else {
                throw GatehouseError(.notFound, "grant_not_found", "no grant \(id) of yours; list them with `gatehouse grants`")
            }
            if grant.endedAt == nil, !grant.isActive(at: now) {
                // Past expiry but not yet swept: record the expiry, then say so.
                let expired = GrantLifecycle.expire(grant)
                if try await session.endGrant(expired) { try await session.appendAudit([Self.grantExpired(expired)], at: now) }
            }
            let ended = try transition(grant, now)
            guard try await session.endGrant(ended) else { throw Self.raced(id) }
            try await session.appendAudit([AuditEntry(actor: caller.principal, action: action, subject: id, resource: grant.resource,
                                                      details: Self.compact(["principal": grant.principal, "role": grant.role, "reason": ended.endComment]))], at: now)
            return ended
        }
    }

    // MARK: check

    public func check(caller: Caller, resource: String, role: String, principal: String?) async throws -> (principal: String, decision: CheckDecision) {
        let subject = principal ?? caller.principal
        if subject != caller.principal, !caller.isAdmin {
            throw GatehouseError(.forbidden, "admin_only", "only admins can check on behalf of another principal; leave `principal` out to check yourself", field: "principal")
        }
        let grants = try await unavailableOnFailure { try await self.store.openGrants(principal: subject, resource: resource) }
        if try await unavailableOnFailure({ try await self.store.isBlocked(principal: subject) }) {
            return (subject, .deny(reason: Self.blocked(subject).message))
        }
        let now = clock.now() // after the lookup: expiry is judged at the latest possible moment
        return (subject, AccessCheck.decide(principal: subject, resource: resource, role: role, policy: policies.policy, grants: grants, now: now))
    }

    // MARK: actions

    /// Classifies an action with the policy's `guard:` settings, on the parser threads.
    public func classify(_ action: Action, normalize: Bool = false) async -> ActionClassification {
        await actionGuard.classify(action, settings: policies.policy.guardSettings, normalize: normalize)
    }

    /// May the principal run this exact action now? Read and write actions allowed by a role grant
    /// are answered from the read path; a decision that uses up a one-shot grant, and every decision
    /// on a dangerous or forbidden action, is taken inside the writer with its audit event.
    public func checkAction(caller: Caller, resource: String, action: Action, principal: String?,
                            audit scope: ActionAuditScope = .dangerous, context: [String: String] = [:]) async throws
        -> (principal: String, decision: ActionDecision, classification: ActionClassification) {
        let subject = principal ?? caller.principal
        if subject != caller.principal, !caller.isAdmin {
            throw GatehouseError(.forbidden, "admin_only", "only admins can check on behalf of another principal; leave `principal` out to check yourself", field: "principal")
        }
        if let problem = action.problem { throw GatehouseError.invalid("action", "invalid_action", problem) }
        let classification = await classify(action)
        if try await unavailableOnFailure({ try await self.store.isBlocked(principal: subject) }) {
            return (subject, .deny(reason: Self.blocked(subject).message), classification)
        }
        let grants = try await unavailableOnFailure { try await self.store.openGrants(principal: subject, resource: resource) }
        let decision = ActionCheck.decide(principal: subject, resource: resource, action: action, classification: classification,
                                          policy: policies.policy, grants: grants, now: clock.now())
        let usesOneShotGrant = if case .allowOnce = decision { true } else { false }
        if classification.risk < .dangerous, !usesOneShotGrant, !scope.audits(decision) { return (subject, decision, classification) }
        let final = try await write(as: caller) { session, policy, now in
            let grants = try await session.principalFlags(subject)?.isBlocked == true ? [] : try await session.openGrants(principal: subject, resource: resource)
            let decision = ActionCheck.decide(principal: subject, resource: resource, action: action, classification: classification,
                                              policy: policy, grants: grants, now: now)
            var entries: [AuditEntry] = []
            if case .allowOnce(let grant) = decision {
                let used = try GrantLifecycle.use(grant, now: now)
                guard try await session.endGrant(used) else { throw Self.raced(grant.id) }
                entries.append(AuditEntry(actor: subject, action: "grant.used", subject: grant.id, resource: resource,
                                          details: ["principal": subject, "request_id": grant.requestId, "sha256": action.digest]))
            }
            var checked = Self.actionChecked(subject: subject, resource: resource, action: action, classification: classification, decision: decision)
            checked.details.merge(context) { mine, _ in mine }
            entries.append(checked)
            try await session.appendAudit(entries, at: now)
            return decision
        }
        return (subject, final, classification)
    }

    static func actionChecked(subject: String, resource: String, action: Action, classification: ActionClassification,
                              decision: ActionDecision) -> AuditEntry {
        let outcome = switch decision {
        case .allowByRole, .allowOnce: "allow"
        case .approvalRequired: "approval_required"
        case .deny: "deny"
        }
        return AuditEntry(actor: subject, action: "action.checked", subject: action.digest, resource: resource,
                          details: compact(["principal": subject, "decision": outcome, "kind": action.kind.rawValue,
                                            "risk": classification.risk.rawValue, "categories": classification.categories.joined(separator: ","),
                                            "grant_id": decision.grant?.id, "text": Self.excerpt(action.text)]))
    }

    /// At most 1 KiB of an action's text for the audit log (the SHA-256 identifies the whole).
    static func excerpt(_ text: String) -> String {
        guard text.utf8.count > 1024 else { return text }
        var cut = String(decoding: text.utf8.prefix(1024), as: UTF8.self)
        if cut.last == "\u{FFFD}" { cut.removeLast() }
        return cut + "…"
    }

    // MARK: audit

    public func audit(caller: Caller, filter: StoreSession.AuditFilter) async throws -> [AuditEvent] {
        try requireAdmin(caller, "read the audit log")
        return try await read { try await $0.auditEvents(filter) }
    }

    public func verifyAudit(caller: Caller) async throws -> AuditChain.Verification {
        try requireAdmin(caller, "verify the audit log")
        return try await verifyAuditChain()
    }

    /// Walks the whole chain in pages, up to the head read first: events written while the walk
    /// runs come after that head and are left for the next verification.
    public func verifyAuditChain() async throws -> AuditChain.Verification {
        try await read { try await $0.verifyAuditChain() }
    }

    // MARK: sweeper

    /// This process, as a lease holder: unique per start.
    public static let instanceID = "\(ProcessInfo.processInfo.hostName)-\(getpid())-\(Identifier.make("i"))"

    /// Marks expired grants and pending requests and writes their audit events. Expiry is already
    /// enforced at decision time; this makes it visible and announces it. When several instances
    /// share the database, only the holder of the `sweeper` lease sweeps; the lease runs for `lease` and is renewed on each sweep, so another
    /// instance takes over within that time when the holder stops.
    @discardableResult
    public func sweep(holder: String = AccessService.instanceID, lease: TimeInterval = 10) async throws -> (grants: Int, requests: Int) {
        // Look first on a reader, so an idle sweeper never takes the write lock.
        let probe = clock.now()
        // Refused attempts are kept a day (longer than any signal window); passed rate-limit keys an hour.
        let pruneBefore = probe.addingTimeInterval(-86_400)
        let due = try await read { session in
            let grants = try await session.expiredOpenGrants(now: probe, limit: 1)
            let requests = try await session.expiredPendingRequests(now: probe, limit: 1)
            let prune = try await session.antiSpamPruneDue(before: pruneBefore)
            return !grants.isEmpty || !requests.isEmpty || prune
        }
        guard due else { return (0, 0) }
        return try await write { session in
            let now = self.clock.now()
            guard try await session.claimLease("sweeper", holder: holder, now: now, until: now.addingTimeInterval(lease)) else { return (0, 0) }
            try await session.pruneAntiSpam(refusalsBefore: pruneBefore, now: now.addingTimeInterval(-3600))
            var entries: [AuditEntry] = []
            let grants = try await session.expiredOpenGrants(now: now, limit: 500)
            for grant in grants {
                let expired = GrantLifecycle.expire(grant)
                if try await session.endGrant(expired) { entries.append(Self.grantExpired(expired)) }
            }
            let requests = try await session.expiredPendingRequests(now: now, limit: 500)
            for request in requests {
                let expired = RequestLifecycle.expire(request, now: now)
                if try await session.updateRequest(expired, from: request.state) { entries.append(Self.requestExpired(expired)) }
            }
            try await session.appendAudit(entries, at: now)
            return (grants.count, requests.count)
        }
    }

    public func policyReload(caller: Caller) async throws -> PolicyHolder.ReloadResult {
        try requireAdmin(caller, "reload the policy")
        return try await reloadPolicy(actor: caller.principal)
    }

    /// Re-reads the policy file and records the attempt, accepted or refused, in the audit log.
    public func reloadPolicy(actor: String) async throws -> PolicyHolder.ReloadResult {
        let result = policies.reload(logger: logger)
        try await write { session in
            try await session.appendAudit([AuditEntry(
                actor: actor, action: result.reloaded ? "policy.reloaded" : "policy.reload_refused", subject: self.policies.path ?? "policy",
                details: Self.compact(["sha256": result.sha256, "problems": result.problems.isEmpty ? nil : result.problems.joined(separator: "\n")]))],
                at: self.clock.now())
        }
        return result
    }

    // MARK: helpers

    func requireAdmin(_ caller: Caller, _ what: String) throws(GatehouseError) {
        guard caller.isAdmin else {
            throw GatehouseError(.forbidden, "admin_only", "only admins can \(what)")
        }
    }

    func canDecide(_ principal: String, _ request: AccessRequest, policy: Policy) -> Bool {
        guard let role = policy.resources[request.resource]?.role(named: request.role) else { return false }
        return policy.eligibleApprovers(for: role).contains(principal)
    }

    func approvableResources(_ principal: String, policy: Policy) -> [String] {
        policy.resources.values.filter { resource in
            resource.roles.values.contains { policy.eligibleApprovers(for: $0).contains(principal) }
        }.map(\.name)
    }

    func withApprovals(_ requests: [AccessRequest]) async throws -> [RequestView] {
        try await read { session in
            var views: [RequestView] = []
            for request in requests {
                views.append(RequestView(request: request, approvals: try await session.approvals(requestId: request.id)))
            }
            return views
        }
    }

    /// Store failures other than our own errors become 503: fail closed, and say so.
    func unavailableOnFailure<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let error as GatehouseError { throw error } catch {
            logger.error("store failure", metadata: ["error": "\(error)"])
            throw GatehouseError(.unavailable, "store_unavailable", "the store is unavailable; nothing was changed, try again shortly")
        }
    }

    /// A write on behalf of a caller. The policy, the time and the caller's token are read *inside*
    /// the transaction, after the writer lock is held: a decision is judged against the state at
    /// the moment it commits, never against what was true while it waited for the lock.
    func write<T: Sendable>(as caller: Caller, _ body: @Sendable @escaping (StoreSession, Policy, Date) async throws -> T) async throws -> T {
        try await write { session in
            let policy = self.policies.policy
            let now = self.clock.now()
            guard let token = try await session.token(id: caller.tokenId), token.revokedAt == nil,
                  token.isBootstrapAdmin || policy.principals[caller.principal] != nil else {
                throw GatehouseError(.unauthorized, "invalid_token", "the token was revoked, or its principal removed from the policy, while this request waited; nothing was changed")
            }
            return try await body(session, policy, now)
        }
    }

    func write<T: Sendable>(_ body: @Sendable @escaping (StoreSession) async throws -> T) async throws -> T {
        try await unavailableOnFailure { try await self.store.write(body) }
    }

    func read<T: Sendable>(_ body: @Sendable @escaping (StoreSession) async throws -> T) async throws -> T {
        try await unavailableOnFailure { try await self.store.read(body) }
    }

    static func raced(_ id: String) -> GatehouseError {
        GatehouseError(.conflict, "concurrent_change", "\(id) was changed by someone else at the same moment; reload it and try again")
    }

    static func compact(_ details: [String: String?]) -> [String: String] {
        details.compactMapValues { $0 }
    }

    static func created(_ r: AccessRequest) -> AuditEntry {
        AuditEntry(actor: r.requester, action: "request.created", subject: r.id, resource: r.resource,
                   details: compact(["principal": r.requester, "role": r.role, "duration": r.duration.description,
                                     "reason": r.reason, "ticket": r.ticket, "approvals_required": "\(r.approvalsRequired)",
                                     "action_kind": r.action?.kind.rawValue, "sha256": r.action?.digest, "risk": r.action?.risk.rawValue,
                                     "categories": r.action?.categories.joined(separator: ","), "text": r.action.map { excerpt($0.text) },
                                     "state": r.state == .pending ? nil : r.state.rawValue,
                                     "spam_score": r.spam.map { "\($0.score)" }, "spam_action": r.spam?.action.rawValue,
                                     "signals": r.spam.flatMap { $0.signals.isEmpty ? nil : $0.summary }]))
    }

    static func grantStarted(_ g: Grant) -> AuditEntry {
        AuditEntry(actor: "system", action: "grant.started", subject: g.id, resource: g.resource,
                   details: compact(["principal": g.principal, "role": g.role, "request_id": g.requestId, "expires_at": g.expiresAt.rfc3339,
                                     "sha256": g.actionDigest]))
    }

    static func grantExpired(_ g: Grant) -> AuditEntry {
        AuditEntry(actor: "system", action: "grant.expired", subject: g.id, resource: g.resource,
                   details: ["principal": g.principal, "role": g.role, "expired_at": g.expiresAt.rfc3339])
    }

    static func requestExpired(_ r: AccessRequest) -> AuditEntry {
        AuditEntry(actor: "system", action: "request.expired", subject: r.id, resource: r.resource, details: ["principal": r.requester])
    }
}
