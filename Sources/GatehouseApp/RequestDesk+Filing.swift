import Foundation
import GatehouseCore
import GatehouseStore

/// How a request was filed: a new one, the identical one already waiting, or refused by a hard limit.
enum Filing: Sendable {
    case created(RequestView)
    case existing(RequestView)
    case refused(GatehouseError)
}

extension RequestDesk {
    /// Files a request through the anti-spam layers, inside one transaction so that every instance
    /// sharing the store shares the limits: blocked principals, identical pending requests, the hard
    /// limits (`FilingGate`), then the score. Validation errors throw before anything is written; a
    /// refusal by a hard limit commits its record (so hammering counts) and then throws.
    func file(caller: Caller, input: NewRequestInput, classification: ActionClassification?, sourceIP: String?) async throws -> (RequestView, created: Bool) {
        let context = self.context
        // A blocked principal is turned away on the (cached) read path, without taking the writer or a
        // place in its lane. A block holds whatever the anti-spam setting: an approver's report blocks
        // even with anti-spam off.
        let antiSpam = context.policies.policy.antiSpam
        if try await context.unavailableOnFailure({ try await context.store.isBlocked(principal: caller.principal) }) {
            await tarpit.hold(seconds: antiSpam.blockedDelay?.seconds ?? 0)
            throw AppErrors.blocked(caller.principal)
        }
        return try await lanes.run(caller.principal) {
            // Blocked while this attempt waited for its turn: answered at once (the tarpit is outside the lane).
            if try await context.unavailableOnFailure({ try await context.store.isBlocked(principal: caller.principal) }) {
                throw AppErrors.blocked(caller.principal)
            }
            return try await fileInLane(caller: caller, input: input, classification: classification, sourceIP: sourceIP)
        }
    }

    private func fileInLane(caller: Caller, input: NewRequestInput, classification: ActionClassification?, sourceIP: String?) async throws -> (RequestView, created: Bool) {
        let context = self.context
        // Other principals' recent requests feed only the score's shared-reason signal (and the campaign
        // hold, which re-reads each request it holds): read before the write, on a reader, so the writer
        // that every filing and decision waits for does not decode hundreds of rows; inside, only those
        // filed since are read. What the hard limits read (the principal's own history, open requests,
        // refusals, buckets) is read in the transaction.
        let others = try await AntiSpamTransaction.others(of: caller.principal, context: context)
        let filing: Filing = try await context.write(as: caller) { session, policy, now in
            let outcome = try RequestLifecycle.open(input, classification: classification, requester: caller.principal, policy: policy, now: now,
                                                    requestId: Identifier.make("req"), grantId: Identifier.make("grt"))
            let tx = AntiSpamTransaction(session: session, policy: policy, now: now, requester: caller.principal, metrics: context.metrics)
            let candidate = switch outcome { case .pending(let r): r; case .granted(let r, _): r }
            let flags = try await session.principalFlags(caller.principal)
            if flags?.isBlocked == true { throw AppErrors.blocked(caller.principal) }
            guard policy.antiSpam.enabled else {
                return .created(try await tx.persist(outcome))
            }
            let open = try await session.requests(requester: caller.principal, states: [.pending, .quarantined])
            if let same = open.first(where: { $0.resource == candidate.resource && $0.role == candidate.role && $0.action?.digest == candidate.action?.digest }) {
                context.metrics.antiSpam("deduplicated", reason: "identical_pending")
                return .existing(RequestView(request: same, approvals: try await session.approvals(requestId: same.id)))
            }
            let role = policy.resources[candidate.resource]?.role(named: candidate.role)
            let rule = role?.reason ?? ReasonRule()
            let reachesApprovers = (role?.approvals ?? 1) > 0
            let ticket = SpamScore.hasTicket(reason: candidate.reason, ticket: candidate.ticket, rule: rule)
            var history = try await tx.history(others: others)
            history.unblockedAt = flags?.unblockedAt
            switch try await tx.hardLimit(candidate, open: open, history: history, throttledUntil: flags?.throttledUntil, sourceIP: sourceIP) {
            case .refused(let refusal, let kind):
                return .refused(try await tx.refuse(refusal, kind: kind, request: candidate, history: history, ticket: ticket,
                                                    reachesApprovers: reachesApprovers))
            case .pass(let consume):
                try await session.setRateLimitTATs(Dictionary(consume.map { ($0.key, $0.tat) }, uniquingKeysWith: { _, last in last }))
            }
            let verdict = SpamScore.evaluate(SpamAttempt(principal: caller.principal, resource: candidate.resource, reason: candidate.reason, hasTicket: ticket,
                                                         reachesApprovers: reachesApprovers, role: candidate.role),
                                             history: history, policy: policy.antiSpam, now: now)
            let judged = RequestLifecycle.applySpam(verdict, to: outcome, policy: policy)
            let view = try await tx.persist(judged)
            try await tx.actOnVerdict(view.request, verdict: verdict, history: history)
            return .created(view)
        }
        switch filing {
        case .created(let view): return (view, true)
        case .existing(let view): return (view, false)
        case .refused(let error): throw error
        }
    }
}

/// The anti-spam steps inside one write transaction on behalf of one requester: reading what the
/// pure rules look at, and writing what they decide (refusals, blocks, holds, notifications).
struct AntiSpamTransaction {
    let session: StoreSession
    let policy: Policy
    let now: Date
    let requester: String
    let metrics: any AppMetrics
    var spam: AntiSpamPolicy { policy.antiSpam }

    /// How many of other principals' newest requests the shared-reason signal compares.
    static let othersCompared = 200

    /// Other principals' requests as a reader saw them before the filing's transaction, and the audit
    /// seq it had seen (read first: anything filed after that seq is audited after it).
    struct OthersSnapshot: Sendable {
        var requests: [PastRequest]
        var auditSeq: Int64
        /// The hash of the audit event at `auditSeq` (checked only for snapshots from memory).
        var auditHash: String? = nil
        var window: TimeSpan
        /// The memory it came from (and which of its fillings), to be handed what the transaction reads.
        var recent: (memory: RecentRequests, generation: Int)?
    }

    /// The snapshot: from the memory of recent requests (filled on a reader at the first filing and when
    /// the policy changes the window), or read on a reader when the requester's own requests fill that
    /// memory; nil when anti-spam is off.
    static func others(of requester: String, context: AppContext) async throws -> OthersSnapshot? {
        let spam = context.policies.policy.antiSpam
        guard spam.enabled else { return nil }
        let window = spam.windows.sharedReason
        let now = context.clock.now()
        let since = now.wholeMilliseconds(before: window)
        let memory = context.recentRequests
        @Sendable func kept() -> OthersSnapshot? {
            memory.snapshot(excluding: requester, window: window, since: since, limit: othersCompared, at: now).map {
                OthersSnapshot(requests: $0.requests, auditSeq: $0.seq, auditHash: $0.hash, window: window, recent: (memory, $0.generation))
            }
        }
        if let snapshot = kept() { return snapshot }
        let fill = !memory.follows(window: window, at: now)
        return try await context.read { session in
            let head = try await session.auditHead()
            let seq = head?.seq ?? 0
            if fill {
                let everyone = try await session.othersRequests(excluding: nil, since: since, limit: memory.capacity + 1)
                memory.reset(window: window, requests: everyone, seq: seq, hash: head?.hash, since: since, at: now)
                if let snapshot = kept() { return snapshot }
            }
            let requests = try await session.othersRequests(excluding: requester, since: since, limit: othersCompared)
            return OthersSnapshot(requests: requests, auditSeq: seq, window: window)
        }
    }

    /// Where a filing's transaction left the memory of recent requests: brought up to the audit head `seq` it
    /// read, in the memory's filling `generation`.
    struct Followed {
        var memory: RecentRequests
        var generation: Int
        var seq: Int64
    }

    /// Other principals' newest requests as of this transaction: the snapshot and those filed since (a
    /// campaign filed all at once is seen whole: each filing sees every one committed before it), or all
    /// read here when there is no snapshot or the policy's window changed in between; and the memory brought
    /// up to date, when the snapshot came from it.
    func others(_ snapshot: OthersSnapshot?, ownSince: Date) async throws -> (requests: [PastRequest], followed: Followed?) {
        let window = spam.windows.sharedReason
        let since = now.wholeMilliseconds(before: window)
        guard let snapshot, snapshot.window == window else {
            return (try await session.othersRequests(excluding: requester, since: since, limit: Self.othersCompared), nil)
        }
        guard let recent = snapshot.recent else {
            let late = try await session.othersRequests(excluding: requester, since: since, auditedAfter: snapshot.auditSeq)
            return (Self.merge(snapshot.requests, late, limit: Self.othersCompared), nil)
        }
        // The log must still hold the event the memory is complete up to (a database restored or failed over
        // to a replica that lost commits would not): otherwise the memory starts over and the store is read.
        guard let found = try await session.auditHead(withHashAt: snapshot.auditSeq), found.hashAt == snapshot.auditHash else {
            recent.memory.forget(generation: recent.generation)
            return (try await session.othersRequests(excluding: requester, since: since, limit: Self.othersCompared), nil)
        }
        // Everyone's, the requester's too, so that the memory is complete up to the head read first; requests
        // changed since (decided, held, expired) as well, for the own histories it keeps.
        let followSince = min(since, ownSince)
        let late = try await session.requestChanges(auditedAfter: snapshot.auditSeq, createdSince: followSince)
        recent.memory.add(late.requests, filed: late.filed, completeTo: found.head.seq, hash: found.head.hash, generation: recent.generation,
                          since: since, followSince: followSince, at: now)
        let filed = late.requests.filter { late.filed.contains($0.id) && $0.requester != requester && $0.createdAt >= since }
        return (Self.merge(snapshot.requests, filed, limit: Self.othersCompared),
                Followed(memory: recent.memory, generation: recent.generation, seq: found.head.seq))
    }

    /// The newest `limit` of both lists, each request once (the later read wins).
    static func merge(_ earlier: [PastRequest], _ later: [PastRequest], limit: Int) -> [PastRequest] {
        var byId = Dictionary(earlier.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        for request in later { byId[request.id] = request }
        return Array(byId.values.sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }.prefix(limit))
    }

    /// The principal's recent behaviour, with the longest window any signal needs.
    func history(others snapshot: OthersSnapshot?) async throws -> SpamHistory {
        let windows = spam.windows
        let longest = [windows.history, windows.repeatedReason, windows.recentDenial, windows.enumeration, windows.burst].max()!
        let ownSince = now.wholeMilliseconds(before: longest)
        let others = try await others(snapshot, ownSince: ownSince)
        let own = try await ownHistory(since: ownSince, followed: others.followed)
        // Requests within the window are earlier requests too: with enough of them, no count is needed.
        let cap = windows.newPrincipalRequests
        return SpamHistory(
            own: own,
            others: others.requests,
            refusals: try await session.refusals(principal: requester, since: now.addingTimeInterval(-TimeInterval(spam.windows.refusals.seconds))),
            earlierRequests: own.count >= cap ? cap : try await session.requestCount(requester: requester, cap: cap))
    }

    /// The requester's newest requests since `since`: kept in the memory the transaction brought up to date,
    /// or read from the store (and kept from then on).
    func ownHistory(since: Date, followed: Followed?) async throws -> [PastRequest] {
        let limit = Self.ownCompared
        if let followed, let kept = followed.memory.own(requester, since: since, limit: limit, seq: followed.seq, generation: followed.generation, at: now) {
            return kept
        }
        let own = try await session.pastRequests(requester: requester, since: since, limit: limit)
        if let followed {
            followed.memory.remember(own, of: requester, since: since, limit: limit, seq: followed.seq, generation: followed.generation, at: now)
        }
        return own
    }

    /// How many of the principal's own newest requests the score looks at: plenty to judge behaviour, and
    /// a bound on what a long history costs.
    static let ownCompared = 100

    /// Reads what the filing gate looks at and asks it. `open` are the principal's pending and
    /// quarantined requests.
    func hardLimit(_ request: AccessRequest, open: [AccessRequest], history: SpamHistory, throttledUntil: Date?,
                   sourceIP: String?) async throws -> FilingGate.Verdict {
        let buckets = FilingGate.rateBuckets(requester: requester, resource: request.resource, sourceIP: sourceIP, policy: spam)
        let tats = try await session.rateLimitTATs(keys: buckets.map(\.key))
        let situation = FilingGate.Situation(history: history, throttledUntil: throttledUntil, open: open, tats: tats)
        return FilingGate.judge(resource: request.resource, buckets: buckets, situation: situation, policy: spam, now: now)
    }

    /// Records a refused attempt, scores it (hammering on a limit can end in a block), audits
    /// the first refusal per limit and minute, and returns the 429 to send.
    func refuse(_ refusal: LimitRefusal, kind: RecordedRefusal.Kind, request: AccessRequest, history: SpamHistory,
                ticket: Bool, reachesApprovers: Bool) async throws -> GatehouseError {
        try await session.insertRefusal(principal: requester, resource: request.resource, kind: kind, policy: refusal.policy, at: now)
        var history = history
        history.refusals.insert(RecordedRefusal(kind: kind, resource: request.resource, at: now), at: 0)
        let verdict = SpamScore.evaluate(SpamAttempt(principal: requester, resource: request.resource, reason: request.reason, hasTicket: ticket, refused: true,
                                                     reachesApprovers: reachesApprovers, role: request.role),
                                         history: history, policy: spam, now: now)
        metrics.antiSpam("limited", reason: refusal.policy)
        var entries: [AuditEntry] = []
        if try await session.refusalCount(principal: requester, policy: refusal.policy, since: now.addingTimeInterval(-60)) == 1 {
            entries.append(AuditEntry(actor: "antispam", action: .requestLimited, subject: requester, resource: request.resource,
                                      details: AuditEntry.spamDetails(verdict, ["principal": requester, "limit": refusal.policy,
                                                                                "retry_after": "\(refusal.retryAfterSeconds)"])))
        }
        if verdict.action == .block {
            entries += try await blockPrincipal(by: "antispam", reason: "spam score \(verdict.score) while refused by \(refusal.policy): \(verdict.summary)",
                                                details: AuditEntry.spamDetails(verdict, ["principal": requester, "trigger": refusal.policy]))
            metrics.antiSpam("blocked", reason: "score")
        }
        try await session.appendAudit(entries, at: now)
        if verdict.action >= .quarantine {
            // No detail for a principal the score marks as abusive: nothing to tune a flood against.
            return GatehouseError(.tooManyRequests, ErrorCode.tooManyRequests, "too many requests; try again later")
        }
        var error = GatehouseError(.tooManyRequests, ErrorCode.rateLimited, refusal.message)
        error.refusal = refusal
        return error
    }

    /// Blocks the requester and holds their waiting requests for the reviewers.
    func blockPrincipal(by actor: String, reason: String, details: [String: String]) async throws -> [AuditEntry] {
        try await session.block(requester, by: actor, reason: reason, at: now)
        var entries = [AuditEntry(actor: actor, action: .principalBlocked, subject: requester, details: details)]
        // All of them, however many: each round holds what the last one read, until none is left pending.
        var seen = Set<String>()
        while true {
            let open = try await session.requests(requester: requester, states: [.pending]).filter { !seen.contains($0.id) }
            if open.isEmpty { break }
            for request in open {
                seen.insert(request.id)
                guard let held = RequestLifecycle.quarantine(request, why: RequestLifecycle.heldReason, policy: policy, now: now),
                      try await session.updateRequest(held, from: .pending) else { continue }
                entries.append(AuditEntry(actor: actor, action: .requestQuarantined, subject: held.id, resource: held.resource,
                                          details: ["principal": requester, "reason": actor == "antispam" ? "blocked" : "reported"]))
                metrics.antiSpam("quarantined", reason: actor == "antispam" ? "blocked" : "report")
            }
        }
        return entries
    }

    /// Puts the notifications `NotificationPlan` routes for a newly filed (or released) request in the outbox.
    func notify(_ request: AccessRequest, throttled: Bool) async throws {
        // Budgets decide only for a pending request told at once; the others go to digests whatever they hold.
        var tats: [String: Int64] = [:]
        if request.state == .pending, !throttled, spam.enabled, spam.approverNotifications != nil {
            tats = try await session.rateLimitTATs(keys: NotificationPlan.recipients(of: request, policy: policy).map(NotificationPlan.budgetKey))
        }
        let summary = NotificationPlan.summary(request)
        var spent: [String: Int64] = [:]
        for delivery in NotificationPlan.plan(request, throttled: throttled, policy: policy, budgetTATs: tats, now: now) {
            let recipient = delivery.recipient
            switch delivery.route {
            case .immediate(let budgetTAT):
                if let budgetTAT { spent[NotificationPlan.budgetKey(recipient)] = budgetTAT }
                try await session.insertNotification(OutboxNotification(id: Identifier.make("ntf"), recipient: recipient, kind: .request,
                                                                        requestIds: [request.id], summary: summary, createdAt: now))
                metrics.notification("request")
            case .digest:
                if var digest = try await session.openDigest(recipient: recipient) {
                    // A digest names at most 100 requests (the newest); its summary keeps the count.
                    guard !digest.requestIds.contains(request.id), digest.requestIds.count < 100 else { continue }
                    digest.requestIds.append(request.id)
                    digest.summary = NotificationPlan.digestSummary(digest.requestIds.count, latest: summary)
                    digest.updatedAt = now
                    try await session.updateDigest(digest)
                } else {
                    try await session.insertNotification(OutboxNotification(id: Identifier.make("ntf"), recipient: recipient, kind: .digest,
                                                                            requestIds: [request.id], summary: NotificationPlan.digestSummary(1, latest: summary),
                                                                            createdAt: now))
                    metrics.notification("digest")
                }
            }
        }
        try await session.setRateLimitTATs(spent)
    }

    /// Stores a filed request (and its grant, for `approvals: 0`) with its audit events and notifications.
    func persist(_ outcome: RequestLifecycle.OpenOutcome) async throws -> RequestView {
        switch outcome {
        case .pending(let request):
            try await session.insertRequest(request)
            try await session.appendAudit([AuditEntry.requestCreated(request)], at: now)
            // A request the score slows or doubts (throttle, extra approval) reaches approvers only in
            // their digest: a stronger action never notifies sooner than a milder one.
            try await notify(request, throttled: request.spam.map { $0.action >= .throttle } ?? false)
            return RequestView(request: request, approvals: [])
        case .granted(let request, let grant):
            try await session.insertRequest(request)
            try await session.insertGrant(grant)
            try await session.appendAudit([
                AuditEntry.requestCreated(request),
                AuditEntry(actor: "policy", action: .requestApproved, subject: request.id, resource: request.resource,
                           details: ["principal": request.requester, "grant_id": grant.id, "approvals_required": "0"]),
                AuditEntry.grantStarted(grant),
            ], at: now)
            return RequestView(request: request, approvals: [])
        }
    }

    /// What the score's action does beyond the request itself: a throttle cooldown, a block, and
    /// holding the other requests of a detected campaign (same reason from several principals).
    func actOnVerdict(_ request: AccessRequest, verdict: SpamVerdict, history: SpamHistory) async throws {
        var entries: [AuditEntry] = []
        switch verdict.action {
        case .allow:
            return
        case .throttle:
            let until = now.addingTimeInterval(TimeInterval(spam.throttleCooldown.seconds))
            try await session.throttle(requester, until: until, reason: "spam score \(verdict.score): \(verdict.summary)")
            entries.append(AuditEntry(actor: "antispam", action: .principalThrottled, subject: requester, resource: request.resource,
                                      details: AuditEntry.spamDetails(verdict, ["principal": requester, "request_id": request.id, "until": until.rfc3339])))
            metrics.antiSpam("throttled", reason: Self.topSignal(verdict))
        case .extraApproval:
            let held = request.state == .quarantined
            entries.append(AuditEntry(actor: "antispam", action: held ? .requestQuarantined : .requestExtraApproval, subject: request.id, resource: request.resource,
                                      details: AuditEntry.spamDetails(verdict, ["principal": requester, "approvals_required": "\(request.approvalsRequired)"])))
            metrics.antiSpam(held ? "quarantined" : "extra_approval", reason: Self.topSignal(verdict))
        case .quarantine, .block:
            entries.append(AuditEntry(actor: "antispam", action: .requestQuarantined, subject: request.id, resource: request.resource,
                                      details: AuditEntry.spamDetails(verdict, ["principal": requester])))
            metrics.antiSpam("quarantined", reason: Self.topSignal(verdict))
            if verdict.action == .block {
                entries += try await blockPrincipal(by: "antispam", reason: "spam score \(verdict.score): \(verdict.summary)",
                                                    details: AuditEntry.spamDetails(verdict, ["principal": requester, "request_id": request.id]))
                metrics.antiSpam("blocked", reason: "score")
            }
            if verdict.signals.contains(where: { $0.signal == .sharedReason }) {
                let same = SameReason(request.reason, threshold: spam.windows.similarity)
                let window = TimeInterval(spam.windows.sharedReason.seconds)
                // Each one's state is read again here: what the score compared may be older than its last decision.
                for other in history.others where now.timeIntervalSince(other.createdAt) < window && same.matches(other.reason) {
                    guard let full = try await session.request(id: other.id), full.state == .pending,
                          let held = RequestLifecycle.quarantine(full, why: RequestLifecycle.heldReason, policy: policy, now: now),
                          try await session.updateRequest(held, from: .pending) else { continue }
                    entries.append(AuditEntry(actor: "antispam", action: .requestQuarantined, subject: held.id, resource: held.resource,
                                              details: ["principal": held.requester, "campaign_of": request.id, "signals": "shared_reason"]))
                    metrics.antiSpam("quarantined", reason: "shared_reason")
                }
            }
        }
        try await session.appendAudit(entries, at: now)
    }

    static func topSignal(_ verdict: SpamVerdict) -> String {
        verdict.signals.max { $0.points < $1.points }?.signal.rawValue ?? "score"
    }
}

extension Date {
    /// The start of a window ending now, in whole milliseconds as the store compares times, so that the
    /// memory of recent requests draws the same line as a query would.
    func wholeMilliseconds(before span: TimeSpan) -> Date {
        Date(unixMilliseconds: addingTimeInterval(-TimeInterval(span.seconds)).unixMilliseconds)
    }
}
