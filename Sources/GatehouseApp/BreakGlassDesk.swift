import Foundation
import GatehouseCore
import GatehouseStore

/// Break-glass: emergency access now, without approval, within a rate, announced to the people
/// who must know, and reviewed afterwards.
public struct BreakGlassDesk: Sendable {
    let context: AppContext

    init(_ context: AppContext) { self.context = context }

    /// Break-glass: grants a role at once, for at most `break_glass.max_duration`, to a principal
    /// the policy allows, within `break_glass.rate`. Everyone in `break_glass.notify` is told in the
    /// same transaction (outside every notification budget), and the use waits for its review.
    /// A refusal by the rate is audited and committed before the error is returned.
    public func use(caller: Caller, input: NewRequestInput) async throws -> (view: RequestView, grant: Grant, use: BreakGlassUse) {
        let metrics = context.metrics
        let result: Result<(RequestView, Grant, BreakGlassUse), GatehouseError> = try await context.write(as: caller) { session, policy, now in
            try await AppContext.refuseIfBlocked(caller.principal, session)
            let (request, grant) = try BreakGlass.open(input, requester: caller.principal, policy: policy, now: now,
                                                       requestId: Identifier.make("req"), grantId: Identifier.make("grt"))
            if let limit = policy.breakGlass.rate {
                let key = "bg:" + caller.principal
                let outcome = GCRA.attempt(tat: try await session.rateLimitTAT(key: key), now: now.unixMilliseconds, limit: limit)
                guard outcome.allowed else {
                    let wait = LimitRefusal.seconds(outcome.retryAfterMilliseconds)
                    try await session.appendAudit([AuditEntry(actor: caller.principal, action: .breakGlassRefused, subject: caller.principal,
                                                              resource: request.resource,
                                                              details: ["principal": caller.principal, "role": request.role, "limit": limit.description,
                                                                        "reason": request.reason])], at: now)
                    metrics.antiSpam("refused", reason: "break_glass_rate")
                    var error = GatehouseError(.tooManyRequests, "break_glass_rate",
                                               "break-glass is limited to \(limit.count) use(s) per \(limit.period) per person; you can use it again in \(TimeSpan(seconds: wait)). Ask an approver or another on-call engineer")
                    error.refusal = LimitRefusal(policy: "break-glass", message: error.message, retryAfterSeconds: wait,
                                                 quota: limit.count, windowSeconds: limit.period.seconds)
                    return .failure(error)
                }
                try await session.setRateLimitTAT(key: key, tat: outcome.tat)
            }
            let use = BreakGlassUse(grantId: grant.id, requestId: request.id, principal: caller.principal, resource: request.resource,
                                    role: request.role, reason: request.reason, at: now, expiresAt: grant.expiresAt,
                                    reviewRequired: policy.breakGlass.reviewRequired)
            try await session.insertRequest(request)
            try await session.insertGrant(grant)
            try await session.insertBreakGlass(use)
            let recipients = policy.breakGlassRecipients.filter { $0 != caller.principal }
            let summary = "BREAK-GLASS: \(caller.principal) took \(request.resource)/\(request.role) until \(grant.expiresAt.rfc3339): \(request.reason)"
            for recipient in recipients {
                try await session.insertNotification(OutboxNotification(id: Identifier.make("ntf"), recipient: recipient, kind: .breakGlass,
                                                                        requestIds: [request.id], summary: summary, createdAt: now))
                metrics.notification("break_glass")
            }
            try await session.appendAudit([
                AuditEntry.requestCreated(request),
                AuditEntry(actor: caller.principal, action: .breakGlassUsed, subject: grant.id, resource: request.resource,
                           details: AuditEntry.compact(["principal": caller.principal, "role": request.role, "request_id": request.id,
                                                  "reason": request.reason, "ticket": request.ticket, "expires_at": grant.expiresAt.rfc3339,
                                                  "notified": recipients.joined(separator: ","),
                                                  "review": use.reviewRequired ? "required" : "not required"])),
                AuditEntry.grantStarted(grant),
            ], at: now)
            return .success((RequestView(request: request, approvals: []), grant, use))
        }
        let (view, grant, use) = try result.get()
        return (view, grant, use)
    }

    /// Break-glass uses: every one for admins and reviewers, one's own otherwise.
    public func uses(caller: Caller, awaitingReview: Bool, limit: Int) async throws -> [BreakGlassUse] {
        let policy = context.policies.policy
        let uses = try await context.read { try await $0.breakGlassUses(awaitingReview: awaitingReview, limit: limit) }
        return uses.filter { $0.principal == caller.principal || caller.isAdmin || policy.isBreakGlassReviewer(caller.principal, resource: $0.resource) }
    }

    /// The post-incident review of one break-glass use.
    public func review(caller: Caller, grantId: String, comment: String) async throws -> BreakGlassUse {
        try await context.write(as: caller) { session, policy, now in
            guard let use = try await session.breakGlassUse(grantId: grantId) else {
                throw GatehouseError(.notFound, "break_glass_not_found", "no break-glass use with grant \(grantId); list them with `gatehouse break-glass list`")
            }
            let callerPolicy = caller.isAdmin && policy.principals[caller.principal] == nil ? Self.withAdmin(policy, caller.principal) : policy
            let reviewed = try BreakGlass.review(use, reviewer: caller.principal, comment: comment, policy: callerPolicy, now: now)
            guard try await session.reviewBreakGlass(reviewed) else { throw AppErrors.raced(grantId) }
            try await session.appendAudit([AuditEntry(actor: caller.principal, action: .breakGlassReviewed, subject: grantId, resource: use.resource,
                                                      details: ["principal": use.principal, "role": use.role, "request_id": use.requestId,
                                                                "comment": reviewed.reviewComment ?? ""])], at: now)
            return reviewed
        }
    }

    /// The bootstrap admin is not in the policy's principals; let the pure check see it as an admin.
    static func withAdmin(_ policy: Policy, _ name: String) -> Policy {
        var copy = policy
        let group = "gatehouse-bootstrap-admin"
        copy.principals[name] = PrincipalEntry(groups: [group])
        copy.adminGroups.append(group)
        return copy
    }
}
