import Foundation
import GatehouseCore
import GatehouseStore

/// How a request was filed: a new one, the identical one already waiting, or refused by a hard limit.
enum Filing: Sendable {
    case created(RequestView)
    case existing(RequestView)
    case refused(GatehouseError)
}

/// The anti-spam layers around filing a request, run inside the filing transaction so that every
/// instance sharing the store shares the limits: blocked principals, identical pending requests,
/// hard limits (denial cooldown, throttle, pending cap, GCRA rates), then the score.
extension AccessService {
    struct Gate {
        let session: StoreSession
        let policy: Policy
        let now: Date
        let requester: String
        let sourceIP: String?
        let metrics: GatehouseMetrics
        var spam: AntiSpamPolicy { policy.antiSpam }

        func refusalWindowStart() -> Date { now.addingTimeInterval(-TimeInterval(spam.windows.refusals.seconds)) }

        /// The principal's recent behaviour, with the longest window any signal needs.
        func history() async throws -> SpamHistory {
            let windows = spam.windows
            let longest = [windows.history, windows.repeatedReason, windows.recentDenial, windows.enumeration, windows.burst].max()!
            return SpamHistory(
                own: try await session.pastRequests(requester: requester, since: now.addingTimeInterval(-TimeInterval(longest.seconds))),
                others: try await session.othersRequests(excluding: requester, since: now.addingTimeInterval(-TimeInterval(windows.sharedReason.seconds))),
                refusals: try await session.refusals(principal: requester, since: refusalWindowStart()),
                earlierRequests: try await session.requestCount(requester: requester, cap: windows.newPrincipalRequests))
        }

        /// The first hard limit the request runs into, or nil when it may be filed. The GCRA
        /// buckets are consumed only when all of them allow it.
        /// `open` are the principal's pending and quarantined requests.
        func hardLimit(_ request: AccessRequest, open: [AccessRequest], history: SpamHistory) async throws -> (LimitRefusal, RecordedRefusal.Kind)? {
            if let cooldown = SpamScore.denialCooldown(history.own, resource: request.resource, rule: spam.denialCooldown), cooldown.until > now {
                let wait = LimitRefusal.seconds(cooldown.until.unixMilliseconds - now.unixMilliseconds)
                return (LimitRefusal(policy: "denial-cooldown",
                                     message: "your last \(cooldown.denials) request(s) for \(request.resource) were denied in a row; you can ask again in \(TimeSpan(seconds: wait)) (at \(cooldown.until.rfc3339)). Talk to the approvers first.",
                                     retryAfterSeconds: wait, quota: 1, windowSeconds: cooldown.length.seconds), .cooldown)
            }
            if let flags = try await session.principalFlags(requester), flags.isThrottled(at: now), let until = flags.throttledUntil {
                let wait = LimitRefusal.seconds(until.unixMilliseconds - now.unixMilliseconds)
                return (LimitRefusal(policy: "throttle", message: "your requests are throttled by the anti-spam policy until \(until.rfc3339); try again in \(TimeSpan(seconds: wait))",
                                     retryAfterSeconds: wait, quota: 1, windowSeconds: spam.throttleCooldown.seconds), .limit)
            }
            if let cap = spam.maxPendingPerPrincipal {
                if open.count >= cap {
                    let soonest = open.map(\.pendingExpiresAt).min() ?? now
                    let wait = LimitRefusal.seconds(soonest.unixMilliseconds - now.unixMilliseconds)
                    return (LimitRefusal(policy: "pending", message: "you already have \(open.count) requests waiting (the limit is \(cap)); cancel one (`gatehouse requests`, `gatehouse cancel ID`) or wait for a decision",
                                         retryAfterSeconds: wait, quota: cap), .limit)
                }
            }
            var buckets: [(String, String, RateLimit)] = []
            if let limit = spam.perPrincipal { buckets.append(("per-principal", "p:" + requester, limit)) }
            // Principal and resource names cannot contain `/` (policy names are [a-z0-9._-]).
            if let limit = spam.perResource { buckets.append(("per-resource", "r:" + requester + "/" + request.resource, limit)) }
            if let limit = spam.perSourceIP, let sourceIP { buckets.append(("per-source-ip", "ip:" + sourceIP, limit)) }
            var allowed: [(String, Int64)] = []
            for (name, key, limit) in buckets {
                let outcome = GCRA.attempt(tat: try await session.rateLimitTAT(key: key), now: now.unixMilliseconds, limit: limit)
                guard outcome.allowed else {
                    let wait = LimitRefusal.seconds(outcome.retryAfterMilliseconds)
                    let scope = switch name {
                    case "per-principal": "requests from you"
                    case "per-resource": "your requests for \(request.resource)"
                    default: "requests from your address"
                    }
                    return (LimitRefusal(policy: name, message: "too many \(scope): the limit is \(limit.count) per \(limit.period) with bursts of \(limit.burst); try again in \(TimeSpan(seconds: wait))",
                                             retryAfterSeconds: wait, quota: limit.count, windowSeconds: limit.period.seconds), .limit)
                }
                allowed.append((key, outcome.tat))
            }
            for (key, tat) in allowed { try await session.setRateLimitTAT(key: key, tat: tat) }
            return nil
        }

        /// Records a refused attempt, scores it (hammering on a limit can end in a block), audits
        /// the first refusal per limit and minute, and returns the 429 to send.
        func refuse(_ refusal: LimitRefusal, kind: RecordedRefusal.Kind, request: AccessRequest, history: SpamHistory,
                    ticket: Bool) async throws -> GatehouseError {
            try await session.insertRefusal(principal: requester, resource: request.resource, kind: kind, policy: refusal.policy, at: now)
            var history = history
            history.refusals.insert(RecordedRefusal(kind: kind, resource: request.resource, at: now), at: 0)
            let verdict = SpamScore.evaluate(SpamAttempt(principal: requester, resource: request.resource, reason: request.reason, hasTicket: ticket, refused: true),
                                             history: history, policy: spam, now: now)
            metrics.antiSpam("limited", reason: refusal.policy)
            var entries: [AuditEntry] = []
            if try await session.refusalCount(principal: requester, policy: refusal.policy, since: now.addingTimeInterval(-60)) == 1 {
                entries.append(AuditEntry(actor: "antispam", action: "request.limited", subject: requester, resource: request.resource,
                                          details: AccessService.spamDetails(verdict, ["principal": requester, "limit": refusal.policy,
                                                                                       "retry_after": "\(refusal.retryAfterSeconds)"])))
            }
            if verdict.action == .block {
                entries += try await blockPrincipal(by: "antispam", reason: "spam score \(verdict.score) while refused by \(refusal.policy): \(verdict.summary)",
                                                    details: AccessService.spamDetails(verdict, ["principal": requester, "trigger": refusal.policy]))
                metrics.antiSpam("blocked", reason: "score")
            }
            try await session.appendAudit(entries, at: now)
            if verdict.action >= .quarantine {
                // No detail for a principal the score marks as abusive: nothing to tune a flood against.
                return GatehouseError(.tooManyRequests, "too_many_requests", "too many requests; try again later")
            }
            var error = GatehouseError(.tooManyRequests, "rate_limited", refusal.message)
            error.refusal = refusal
            return error
        }

        /// Blocks the requester and holds their waiting requests for the reviewers.
        func blockPrincipal(by actor: String, reason: String, details: [String: String]) async throws -> [AuditEntry] {
            try await session.block(requester, by: actor, reason: reason, at: now)
            var entries = [AuditEntry(actor: actor, action: "principal.blocked", subject: requester, details: details)]
            for open in try await session.requests(.init(requester: requester, states: [.pending], limit: 1000)) {
                guard let held = RequestLifecycle.quarantine(open, why: RequestLifecycle.heldReason, policy: policy, now: now),
                      try await session.updateRequest(held, from: .pending) else { continue }
                entries.append(AuditEntry(actor: actor, action: "request.quarantined", subject: held.id, resource: held.resource,
                                          details: ["principal": requester, "reason": actor == "antispam" ? "blocked" : "reported"]))
                metrics.antiSpam("quarantined", reason: actor == "antispam" ? "blocked" : "report")
            }
            return entries
        }

        /// Puts notifications for a newly filed (or released) request in the outbox: each approver
        /// gets it at once within their budget, otherwise in their one open digest; throttled
        /// requests go to digests only; quarantined ones to the reviewers' digests.
        func notify(_ request: AccessRequest, throttled: Bool) async throws {
            let recipients: [String]
            if request.state == .quarantined {
                recipients = policy.members(of: policy.reviewerGroups).filter { policy.principals[$0]?.kind == .user }.sorted()
            } else if request.state == .pending, let role = policy.resources[request.resource]?.role(named: request.role) {
                recipients = policy.eligibleApprovers(for: role).subtracting([request.requester]).sorted()
            } else {
                return
            }
            let summary = AccessService.summary(request)
            for recipient in recipients where recipient != request.requester {
                var immediate = false
                if request.state == .pending, !throttled {
                    if let budget = spam.approverNotifications, spam.enabled {
                        let key = "n:" + recipient
                        let outcome = GCRA.attempt(tat: try await session.rateLimitTAT(key: key), now: now.unixMilliseconds, limit: budget)
                        if outcome.allowed {
                            try await session.setRateLimitTAT(key: key, tat: outcome.tat)
                            immediate = true
                        }
                    } else {
                        immediate = true
                    }
                }
                if immediate {
                    try await session.insertNotification(OutboxNotification(id: Identifier.make("ntf"), recipient: recipient, kind: .request,
                                                                            requestIds: [request.id], summary: summary, createdAt: now))
                    metrics.notification("request")
                } else if var digest = try await session.openDigest(recipient: recipient) {
                    // A digest names at most 100 requests (the newest); its summary keeps the count.
                    guard !digest.requestIds.contains(request.id), digest.requestIds.count < 100 else { continue }
                    digest.requestIds.append(request.id)
                    digest.summary = AccessService.digestSummary(digest.requestIds.count, latest: summary)
                    digest.updatedAt = now
                    try await session.updateDigest(digest)
                } else {
                    try await session.insertNotification(OutboxNotification(id: Identifier.make("ntf"), recipient: recipient, kind: .digest,
                                                                            requestIds: [request.id], summary: AccessService.digestSummary(1, latest: summary),
                                                                            createdAt: now))
                    metrics.notification("digest")
                }
            }
        }
    }

    /// Files a request through the anti-spam layers. Validation errors throw before anything is
    /// written; a refusal by a hard limit commits its record (so hammering counts) and then throws.
    func file(caller: Caller, input: NewRequestInput, sourceIP: String?) async throws -> (RequestView, created: Bool) {
        let metrics = self.metrics
        // A blocked principal is turned away on the (cached) read path, without taking the writer.
        let antiSpam = policies.policy.antiSpam
        if antiSpam.enabled, try await unavailableOnFailure({ try await self.store.isBlocked(principal: caller.principal) }) {
            await tarpit.hold(seconds: antiSpam.blockedDelay?.seconds ?? 0)
            throw Self.blocked(caller.principal)
        }
        let filing: Filing = try await write(as: caller) { session, policy, now in
            let outcome = try RequestLifecycle.open(input, requester: caller.principal, policy: policy, now: now,
                                                    requestId: Identifier.make("req"), grantId: Identifier.make("grt"))
            let gate = Gate(session: session, policy: policy, now: now, requester: caller.principal, sourceIP: sourceIP, metrics: metrics)
            let candidate = switch outcome { case .pending(let r): r; case .granted(let r, _): r }
            guard policy.antiSpam.enabled else {
                return .created(try await Self.persist(outcome, session: session, gate: gate, now: now))
            }
            if let flags = try await session.principalFlags(caller.principal), flags.isBlocked {
                throw Self.blocked(caller.principal)
            }
            let open = try await session.requests(.init(requester: caller.principal, states: [.pending, .quarantined], limit: 1000))
            if let same = open.first(where: { $0.resource == candidate.resource && $0.role == candidate.role && $0.action?.digest == candidate.action?.digest }) {
                metrics.antiSpam("deduplicated", reason: "identical_pending")
                return .existing(RequestView(request: same, approvals: try await session.approvals(requestId: same.id)))
            }
            let rule = policy.resources[candidate.resource]?.role(named: candidate.role)?.reason ?? ReasonRule()
            let ticket = SpamScore.hasTicket(reason: candidate.reason, ticket: candidate.ticket, rule: rule)
            let history = try await gate.history()
            if let (refusal, kind) = try await gate.hardLimit(candidate, open: open, history: history) {
                return .refused(try await gate.refuse(refusal, kind: kind, request: candidate, history: history, ticket: ticket))
            }
            let verdict = SpamScore.evaluate(SpamAttempt(principal: caller.principal, resource: candidate.resource, reason: candidate.reason, hasTicket: ticket),
                                             history: history, policy: policy.antiSpam, now: now)
            let judged = RequestLifecycle.applySpam(verdict, to: outcome, policy: policy)
            let view = try await Self.persist(judged, session: session, gate: gate, now: now)
            try await Self.actOnVerdict(view.request, verdict: verdict, history: history, gate: gate)
            return .created(view)
        }
        switch filing {
        case .created(let view): return (view, true)
        case .existing(let view): return (view, false)
        case .refused(let error): throw error
        }
    }

    /// Stores a filed request (and its grant, for `approvals: 0`) with its audit events and notifications.
    static func persist(_ outcome: RequestLifecycle.OpenOutcome, session: StoreSession, gate: Gate, now: Date) async throws -> RequestView {
        switch outcome {
        case .pending(let request):
            try await session.insertRequest(request)
            try await session.appendAudit([created(request)], at: now)
            try await gate.notify(request, throttled: request.spam?.action == .throttle)
            return RequestView(request: request, approvals: [])
        case .granted(let request, let grant):
            try await session.insertRequest(request)
            try await session.insertGrant(grant)
            try await session.appendAudit([
                created(request),
                AuditEntry(actor: "policy", action: "request.approved", subject: request.id, resource: request.resource,
                           details: ["principal": request.requester, "grant_id": grant.id, "approvals_required": "0"]),
                grantStarted(grant),
            ], at: now)
            return RequestView(request: request, approvals: [])
        }
    }

    /// What the score's action does beyond the request itself: a throttle cooldown, a block, and
    /// holding the other requests of a detected campaign (same reason from several principals).
    static func actOnVerdict(_ request: AccessRequest, verdict: SpamVerdict, history: SpamHistory, gate: Gate) async throws {
        let session = gate.session, now = gate.now, requester = request.requester
        var entries: [AuditEntry] = []
        switch verdict.action {
        case .allow:
            return
        case .throttle:
            let until = now.addingTimeInterval(TimeInterval(gate.spam.throttleCooldown.seconds))
            try await session.throttle(requester, until: until, reason: "spam score \(verdict.score): \(verdict.summary)")
            entries.append(AuditEntry(actor: "antispam", action: "principal.throttled", subject: requester, resource: request.resource,
                                      details: spamDetails(verdict, ["principal": requester, "request_id": request.id, "until": until.rfc3339])))
            gate.metrics.antiSpam("throttled", reason: topSignal(verdict))
        case .extraApproval:
            let action = request.state == .quarantined ? "request.quarantined" : "request.extra_approval"
            entries.append(AuditEntry(actor: "antispam", action: action, subject: request.id, resource: request.resource,
                                      details: spamDetails(verdict, ["principal": requester, "approvals_required": "\(request.approvalsRequired)"])))
            gate.metrics.antiSpam(request.state == .quarantined ? "quarantined" : "extra_approval", reason: topSignal(verdict))
        case .quarantine, .block:
            entries.append(AuditEntry(actor: "antispam", action: "request.quarantined", subject: request.id, resource: request.resource,
                                      details: spamDetails(verdict, ["principal": requester])))
            gate.metrics.antiSpam("quarantined", reason: topSignal(verdict))
            if verdict.action == .block {
                entries += try await gate.blockPrincipal(by: "antispam", reason: "spam score \(verdict.score): \(verdict.summary)",
                                                         details: spamDetails(verdict, ["principal": requester, "request_id": request.id]))
                gate.metrics.antiSpam("blocked", reason: "score")
            }
            if verdict.signals.contains(where: { $0.signal == .sharedReason }) {
                let same = SameReason(request.reason, threshold: gate.spam.windows.similarity)
                let window = TimeInterval(gate.spam.windows.sharedReason.seconds)
                for other in history.others where other.state == .pending && now.timeIntervalSince(other.createdAt) < window
                    && same.matches(other.reason) {
                    guard let full = try await session.request(id: other.id),
                          let held = RequestLifecycle.quarantine(full, why: RequestLifecycle.heldReason, policy: gate.policy, now: now),
                          try await session.updateRequest(held, from: .pending) else { continue }
                    entries.append(AuditEntry(actor: "antispam", action: "request.quarantined", subject: held.id, resource: held.resource,
                                              details: ["principal": held.requester, "campaign_of": request.id, "signals": "shared_reason"]))
                    gate.metrics.antiSpam("quarantined", reason: "shared_reason")
                }
            }
        }
        try await session.appendAudit(entries, at: now)
    }

    // MARK: report, review, block

    /// An approver reports a request as suspicious: the requester is blocked, their active grants
    /// are revoked, their waiting requests are held for review, and the reviewers are told.
    public func report(caller: Caller, id: String, comment: String?) async throws -> RequestView {
        let comment = comment.flatMap { $0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? nil : $0 }
        if let comment { try RequestLifecycle.checkComment(comment) }
        let metrics = self.metrics
        return try await write(as: caller) { session, policy, now in
            try await Self.refuseIfBlocked(caller.principal, session)
            guard let request = try await session.request(id: id),
                  caller.isAdmin || policy.isReviewer(caller.principal) || self.canDecide(caller.principal, request, policy: policy)
                    || request.requester == caller.principal else {
                throw GatehouseError(.notFound, "request_not_found", "no request \(id) that you can see; list them with `gatehouse requests --to-approve`")
            }
            guard request.requester != caller.principal else {
                throw GatehouseError(.forbidden, "self_report", "you cannot report your own request; cancel it with `gatehouse cancel \(id)`")
            }
            let requester = request.requester
            var entries = [AuditEntry(actor: caller.principal, action: "request.reported", subject: id, resource: request.resource,
                                      details: Self.compact(["principal": requester, "comment": comment]))]
            let gate = Gate(session: session, policy: policy, now: now, requester: requester, sourceIP: nil, metrics: metrics)
            entries += try await gate.blockPrincipal(by: caller.principal, reason: "reported as suspicious by \(caller.principal)",
                                                     details: Self.compact(["principal": requester, "request_id": id, "comment": comment]))
            // A fixed reason: the reporter's comment is in the audit log, and cannot push this past its length limit.
            let why = "requester reported as suspicious by \(caller.principal)"
            for grant in try await session.grants(.init(principal: requester, activeAt: now, limit: 1000)) {
                let revoked = try GrantLifecycle.revoke(grant, by: caller.principal, isAdmin: true, reason: why, now: now)
                guard try await session.endGrant(revoked) else { continue }
                entries.append(AuditEntry(actor: caller.principal, action: "grant.revoked", subject: grant.id, resource: grant.resource,
                                          details: ["principal": requester, "role": grant.role, "reason": why]))
            }
            try await session.appendAudit(entries, at: now)
            for reviewer in policy.members(of: policy.reviewerGroups).sorted() where reviewer != caller.principal && policy.principals[reviewer]?.kind == .user {
                try await session.insertNotification(OutboxNotification(id: Identifier.make("ntf"), recipient: reviewer, kind: .report, requestIds: [id],
                                                                        summary: "\(caller.principal) reported \(requester)'s request \(id) as suspicious; \(requester) is blocked", createdAt: now))
                metrics.notification("report")
            }
            metrics.antiSpam("blocked", reason: "report")
            guard let updated = try await session.request(id: id) else { throw Self.raced(id) }
            return RequestView(request: updated, approvals: try await session.approvals(requestId: id))
        }
    }

    /// A reviewer releases a quarantined request to its approvers, or rejects it (a denial).
    public func review(caller: Caller, id: String, release: Bool, comment: String?) async throws -> RequestView {
        let comment = comment.flatMap { $0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? nil : $0 }
        let metrics = self.metrics
        return try await write(as: caller) { session, policy, now in
            try await Self.refuseIfBlocked(caller.principal, session)
            guard let request = try await session.request(id: id), policy.isReviewer(caller.principal) || request.requester == caller.principal else {
                throw GatehouseError(.notFound, "request_not_found", "no request \(id) that you can see")
            }
            let updated = try RequestLifecycle.review(request, release: release, by: caller.principal, comment: comment, policy: policy, now: now)
            guard try await session.updateRequest(updated, from: .quarantined) else { throw Self.raced(id) }
            try await session.appendAudit([AuditEntry(actor: caller.principal, action: release ? "request.released" : "request.rejected",
                                                      subject: id, resource: request.resource,
                                                      details: Self.compact(["principal": request.requester, "comment": comment]))], at: now)
            if release {
                let gate = Gate(session: session, policy: policy, now: now, requester: request.requester, sourceIP: nil, metrics: metrics)
                try await gate.notify(updated, throttled: false)
            }
            return RequestView(request: updated, approvals: try await session.approvals(requestId: id))
        }
    }

    public func unblock(caller: Caller, principal: String) async throws -> PrincipalFlags {
        try requireAdmin(caller, "unblock principals")
        guard PolicyLoader.isValidName(principal) else {
            throw GatehouseError.invalid("name", "invalid_principal", "that is not a principal name: names are lowercase letters, digits, `.`, `_` and `-`, at most 63 characters")
        }
        return try await write(as: caller) { session, _, now in
            guard let flags = try await session.principalFlags(principal), flags.isBlocked else {
                throw GatehouseError(.notFound, "not_blocked", "\(principal) is not blocked; list blocked principals with `gatehouse principals --blocked`")
            }
            _ = try await session.unblock(principal)
            try await session.appendAudit([AuditEntry(actor: caller.principal, action: "principal.unblocked", subject: principal,
                                                      details: Self.compact(["principal": principal, "was_blocked_by": flags.blockedBy, "block_reason": flags.blockReason]))], at: now)
            return PrincipalFlags(principal: principal)
        }
    }

    public func flaggedPrincipals(caller: Caller, blocked: Bool, throttled: Bool) async throws -> [PrincipalFlags] {
        try requireAdmin(caller, "list blocked and throttled principals")
        let now = clock.now()
        return try await read { try await $0.flaggedPrincipals(blocked: blocked || !throttled, throttledAt: throttled || !blocked ? now : nil) }
    }

    public func notifications(caller: Caller, recipient: String?, limit: Int) async throws -> [OutboxNotification] {
        let recipient = recipient ?? caller.principal
        if recipient != caller.principal { try requireAdmin(caller, "read other principals' notifications") }
        return try await read { try await $0.notifications(recipient: recipient, limit: limit) }
    }

    // MARK: helpers

    /// Blocked principals take no part in decisions: no approving, reporting or reviewing.
    static func refuseIfBlocked(_ principal: String, _ session: StoreSession) async throws {
        if try await session.principalFlags(principal)?.isBlocked == true { throw blocked(principal) }
    }

    static func blocked(_ principal: String) -> GatehouseError {
        GatehouseError(.forbidden, "principal_blocked", "\(principal) is blocked by the anti-spam policy and cannot request, approve or use access; an admin can lift it with `gatehouse unblock \(principal)`")
    }

    static func spamDetails(_ verdict: SpamVerdict, _ extra: [String: String]) -> [String: String] {
        var details = extra
        details["score"] = "\(verdict.score)"
        details["action"] = verdict.action.rawValue
        details["signals"] = verdict.summary
        if !verdict.signals.isEmpty { details["signal_details"] = verdict.signals.map { "\($0.signal.rawValue): \($0.detail)" }.joined(separator: "; ") }
        return details
    }

    static func topSignal(_ verdict: SpamVerdict) -> String {
        verdict.signals.max { $0.points < $1.points }?.signal.rawValue ?? "score"
    }

    static func summary(_ r: AccessRequest) -> String {
        let what = r.action.map { "one \($0.kind.rawValue) action" } ?? "\(r.resource)/\(r.role)"
        let reason = r.reason.count > 200 ? String(r.reason.prefix(200)) + "…" : r.reason
        return "\(r.requester) asks for \(what) on \(r.resource) for \(r.duration): \(reason) (request \(r.id))"
    }

    static func digestSummary(_ count: Int, latest: String) -> String {
        "\(count) request(s) are waiting for you; latest: \(latest)"
    }
}
