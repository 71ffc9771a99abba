import Foundation
import GatehouseCore
import GatehouseStore

extension RequestDesk {
    /// An approver reports a request as suspicious: the requester is blocked, their active grants
    /// are revoked, their waiting requests are held for review, and the reviewers are told.
    public func report(caller: Caller, id: String, comment given: String?) async throws -> RequestView {
        let comment = try RequestLifecycle.requiredComment(given, for: .report)
        let metrics = context.metrics
        let view = try await context.write(as: caller) { session, policy, now in
            try await AppContext.refuseIfBlocked(caller.principal, session)
            guard let request = try await session.request(id: id),
                  RequestPermissions.canReachForReport(caller.principal, isAdmin: caller.isAdmin, request, policy: policy) else {
                throw GatehouseError(.notFound, ErrorCode.requestNotFound, "no request \(id) that you can see; list them with `gatehouse requests --to-approve`")
            }
            guard request.requester != caller.principal else {
                throw GatehouseError(.forbidden, "self_report", "you cannot report your own request; cancel it with `gatehouse cancel \(id)`")
            }
            guard ReportScope.isReportable(request, isAdmin: caller.isAdmin, now: now) else {
                throw GatehouseError(.conflict, "not_reportable", "request \(id) was \(request.state.rawValue) more than a day ago; report a request that is waiting or was just decided, or ask a reviewer (`antispam.reviewers`) to look at \(request.requester)")
            }
            let requester = request.requester
            // This request reported again since a person blocked its requester (a second click, a retry): nothing is
            // left to do, and the reviewers and webhooks would hear of it once more per click. Another of their
            // requests reported is news (recorded, told, its grants revoked), under the block already in force; a
            // block by the score alone is taken further by a report.
            var blockedByPerson = false
            if let flags = try await session.principalFlags(requester), flags.isBlocked, let by = flags.blockedBy, by != "antispam" {
                blockedByPerson = true
                let earlier = try await session.auditEvents(StoreSession.AuditFilter(since: flags.blockedAt, actorOrSubject: id, action: AuditAction.requestReported.rawValue, limit: 1))
                if let earlier = earlier.first {
                    throw GatehouseError(.conflict, "already_reported",
                                         "request \(id) was already reported by \(earlier.actor) at \(earlier.at.rfc3339); \(requester) is blocked and the reviewers were told, so nothing more is done. An admin lifts the block with `gatehouse unblock \(requester)`")
                }
            }
            var entries = [AuditEntry(actor: caller.principal, action: .requestReported, subject: id, resource: request.resource,
                                      details: ["principal": requester, "comment": comment])]
            let tx = AntiSpamTransaction(session: session, policy: policy, now: now, requester: requester, metrics: metrics)
            if !blockedByPerson {
                entries += try await tx.blockPrincipal(by: caller.principal, reason: "reported as suspicious by \(caller.principal)",
                                                       details: ["principal": requester, "request_id": id, "comment": comment])
            }
            // A fixed reason: the reporter's comment is in the audit log, and cannot push this past its length limit.
            let why = "requester reported as suspicious by \(caller.principal)"
            let (revoked, held) = try await GrantDesk.revokeInForce(of: requester, by: caller.principal, reason: why, session: session, now: now) {
                ReportScope.revokes($0, reporter: caller.principal, isAdmin: caller.isAdmin, policy: policy)
            }
            entries += revoked
            if !held.isEmpty { entries[0].details["held_grants"] = held.joined(separator: ",") }
            try await session.appendAudit(entries, at: now)
            let heldNote = held.isEmpty ? "" : "; grants on other resources are held (unusable while blocked) for you to revoke or keep: \(held.joined(separator: ", "))"
            for reviewer in policy.members(of: policy.reviewerGroups).sorted() where reviewer != caller.principal && policy.principals[reviewer]?.kind == .user {
                try await session.insertNotification(OutboxNotification(id: Identifier.make("ntf"), recipient: reviewer, kind: .report, requestIds: [id],
                                                                        summary: "\(caller.principal) reported \(requester)'s request \(id) as suspicious; \(requester) is blocked\(heldNote)", createdAt: now))
                metrics.notification("report")
            }
            metrics.antiSpam("blocked", reason: "report")
            guard let updated = try await session.request(id: id) else { throw AppErrors.raced(id) }
            return RequestView(request: updated, approvals: try await session.approvals(requestId: id))
        }
        await watch.changed(id)
        return view
    }

    /// A reviewer releases a quarantined request to its approvers, or rejects it (a denial).
    public func review(caller: Caller, id: String, release: Bool, comment given: String?) async throws -> RequestView {
        let comment = RequestLifecycle.trimmedComment(given)
        let metrics = context.metrics
        let view = try await context.write(as: caller) { session, policy, now in
            try await AppContext.refuseIfBlocked(caller.principal, session)
            guard let request = try await session.request(id: id),
                  RequestPermissions.canReachForReview(caller.principal, isAdmin: caller.isAdmin, request, policy: policy) else {
                throw GatehouseError(.notFound, ErrorCode.requestNotFound, "no request \(id) that you can see")
            }
            // The bootstrap admin is not in the policy's principals; the pure rule sees it as an admin.
            let reviewerPolicy = caller.isAdmin && policy.principals[caller.principal] == nil ? BreakGlassDesk.withAdmin(policy, caller.principal) : policy
            let updated = try RequestLifecycle.review(request, release: release, by: caller.principal, comment: comment, policy: reviewerPolicy, now: now)
            guard try await session.updateRequest(updated, from: .quarantined) else { throw AppErrors.raced(id) }
            try await session.appendAudit([AuditEntry(actor: caller.principal, action: release ? .requestReleased : .requestRejected,
                                                      subject: id, resource: request.resource,
                                                      details: AuditEntry.compact(["principal": request.requester, "comment": comment]))], at: now)
            if release {
                let tx = AntiSpamTransaction(session: session, policy: policy, now: now, requester: request.requester, metrics: metrics)
                try await tx.notify(updated, throttled: false)
            }
            return RequestView(request: updated, approvals: try await session.approvals(requestId: id))
        }
        await watch.changed(id)
        return view
    }
}
