import Foundation
import GatehouseCore
import GatehouseStore

/// The outbox around webhooks. The audit log is the source of events: every state change commits
/// with its audit event, and the outbox follows the log with a stored cursor, queueing one message
/// per event and endpoint under the id `msg_<audit seq>` (the same id on every retry, so receivers
/// drop repeats). Queueing, claiming and recording run in write transactions; sending runs
/// outside them. Nothing is lost on restart: a message stays queued until an endpoint answers 2xx,
/// and a claim left by a stopped instance runs out and the message is sent again, with its id.
public struct Outbox: Sendable {
    let context: AppContext

    init(_ context: AppContext) { self.context = context }

    static let webhookCursor = "webhooks"

    /// Queues messages for audit events after the cursor; returns how many events were read. The events
    /// are read and their messages built on a reader; the write transaction (the one writer every request
    /// and decision waits for) only stores them and moves the cursor, and stores nothing when another
    /// instance moved it first.
    @discardableResult
    public func queueMessages(limit: Int = 200) async throws -> Int {
        try await queueMessages(limit: limit, claimFor: nil).events
    }

    /// Queues messages as `queueMessages(limit:)` does and, with a lease, claims up to `claimAtMost` messages
    /// for this instance in the same transaction: first those already due (retries, and messages a full
    /// round left unclaimed) when `claimDue`, then the new ones as they are queued. One write per round, the
    /// last before sending, so a claim cannot run out while the round waits for the writer; a new message
    /// costs one write on its way to the endpoint, not two. What is not claimed stays due for a later round.
    /// Returns the events read and the messages claimed.
    public func queueMessages(limit: Int, claimFor lease: TimeInterval?, claimAtMost: Int = .max, claimDue: Bool = false) async throws
        -> (events: Int, claimed: [WebhookDelivery]) {
        let context = self.context
        let (cursor, head, due) = try await context.read { session in
            (try await session.cursor(Self.webhookCursor), try await session.auditHead()?.seq ?? 0,
             lease != nil && claimDue ? try await session.deliveriesDue(now: context.clock.now()) : false)
        }
        guard let cursor else {
            // First start: announce what happens from now on, not the history before.
            try await context.write { session in
                if try await session.cursor(Self.webhookCursor) == nil {
                    try await session.setCursor(Self.webhookCursor, to: try await session.auditHead()?.seq ?? 0)
                }
            }
            return (0, [])
        }
        if cursor >= head && !due { return (0, []) }
        let policy = context.policies.policy
        let now = context.clock.now()
        typealias Prepared = (deliveries: [WebhookDelivery], last: Int64?, count: Int)
        let prepared: Prepared = cursor >= head ? ([], nil, 0) : try await context.read { session -> Prepared in
            let events = try await session.auditEvents(.init(afterSeq: cursor, limit: limit))
            var deliveries: [WebhookDelivery] = []
            for event in events {
                if let slack = policy.notifications.slack {
                    deliveries += try await Self.slackDeliveries(for: event, slack: slack, session: session, policy: policy, now: now)
                }
                guard let kind = WebhookEvent(auditAction: event.action) else { continue }
                let endpoints = policy.notifications.endpoints(for: kind)
                guard !endpoints.isEmpty, let message = try await Self.message(for: event, kind: kind, session: session, policy: policy) else { continue }
                for endpoint in endpoints {
                    let body = endpoint.format == .slack ? message.slackBody() : message.standardBody()
                    deliveries.append(WebhookDelivery(id: message.id, endpoint: endpoint.name, event: kind.rawValue,
                                                      body: String(decoding: body, as: UTF8.self), createdAt: now, nextAttemptAt: now))
                }
            }
            return (deliveries, events.last?.seq, events.count)
        }
        return try await context.write { session in
            let now = context.clock.now()
            let until = lease.map { now.addingTimeInterval($0) }
            var claimed: [WebhookDelivery] = []
            if due, let until, claimAtMost > 0 {
                claimed = try await session.claimDueDeliveries(now: now, until: until, limit: claimAtMost)
            }
            guard prepared.count > 0, try await session.cursor(Self.webhookCursor) == cursor else { return (0, claimed) }
            let room = until == nil ? 0 : max(0, claimAtMost - claimed.count)
            let items = prepared.deliveries.enumerated().map { ($0.element, $0.offset < room ? until : nil) }
            let queued = try await session.enqueueDeliveries(items)
            let claimable = Set(prepared.deliveries.prefix(room).map(\.key))
            claimed += queued.filter { claimable.contains($0.key) }
            if let last = prepared.last { try await session.setCursor(Self.webhookCursor, to: last) }
            return (prepared.count, claimed)
        }
    }

    /// The message for one audit event, or nil when this event is not announced: a request is
    /// announced only to approvers told at once (within their budget); the rest wait for a digest.
    static func message(for event: AuditEvent, kind: WebhookEvent, session: StoreSession, policy: Policy) async throws -> WebhookMessage? {
        let base = policy.notifications.baseURL
        var request: AccessRequest?
        var recipients: [String] = []
        var link: String?
        switch kind {
        case .requestCreated, .requestApproved, .requestDenied, .requestExpired, .requestQuarantined, .requestReported:
            request = try await session.request(id: event.subject)
            link = base.map { "\($0)/requests/\(event.subject)" }
            if kind == .requestReported {
                recipients = try await session.notifiedRecipients(requestId: event.subject, kinds: ["report"])
            }
            if kind == .requestCreated {
                guard event.details["state"] == nil else { return nil }
                recipients = try await session.notifiedRecipients(requestId: event.subject, kinds: ["request"])
                guard !recipients.isEmpty else { return nil }
            }
        case .grantStarted, .grantEnded:
            if let requestId = event.details["request_id"] { request = try await session.request(id: requestId) }
            link = base.map { "\($0)/grants" }
        case .breakGlassUsed, .breakGlassReviewed:
            if let requestId = event.details["request_id"] { request = try await session.request(id: requestId) }
            recipients = (event.details["notified"] ?? "").split(separator: ",").map(String.init)
            link = base.map { "\($0)/break-glass" }
        case .digest:
            recipients = event.details["recipient"].map { [$0] } ?? []
            link = base.map { "\($0)/inbox" }
        }
        return WebhookMessage(id: WebhookMessage.id(for: event), event: kind, at: event.at, audit: event,
                              request: request, recipients: recipients, link: link)
    }

    /// The Slack work one audit event causes: a request told to approvers is posted (to its channels,
    /// and to each approver told at once when direct messages are on); every later change of the
    /// request updates its copies; a digest goes to its recipient; break-glass is announced.
    /// The message is rendered when it is sent, from the request as it is then.
    static func slackDeliveries(for event: AuditEvent, slack: SlackSettings, session: StoreSession, policy: Policy, now: Date) async throws -> [WebhookDelivery] {
        guard let action = AuditAction(rawValue: event.action) else { return [] }
        let id = WebhookMessage.id(for: event)
        func delivery(_ target: String, _ op: SlackOperation) -> WebhookDelivery {
            WebhookDelivery(id: id, endpoint: SlackOperation.endpointPrefix + target, event: "slack.\(op.kind)", body: op.encoded,
                            createdAt: now, nextAttemptAt: now)
        }
        switch action {
        case .requestCreated, .requestReleased:
            guard event.details["state"] == nil, let request = try await session.request(id: event.subject) else { return [] }
            let told = try await session.notifiedRecipients(requestId: event.subject, kinds: ["request"])
            guard !told.isEmpty else { return [] }
            var out = slack.channels(for: request, policy: policy).map { delivery($0, .post(requestId: request.id)) }
            if slack.directMessages { out += told.map { delivery("@" + $0, .post(requestId: request.id)) } }
            return out
        case .requestApproved, .requestDenied, .requestExpired, .requestCanceled, .requestReported, .requestQuarantined, .approvalRecorded,
             .requestRejected, .requestExtraApproval:
            return [delivery("update", .update(requestId: event.subject))]
        case .notificationDigest:
            guard let recipient = event.details["recipient"] else { return [] }
            let ids = (event.details["request_ids"] ?? "").split(separator: ",").map(String.init)
            return [delivery("@" + recipient, .digest(recipient: recipient, requestIds: ids))]
        case .breakGlassUsed:
            guard let channel = slack.channel,
                  let message = try await message(for: event, kind: .breakGlassUsed, session: session, policy: policy) else { return [] }
            return [delivery(channel, .notice(message: String(decoding: message.slackBody(), as: UTF8.self)))]
        default:
            return []
        }
    }

    /// Sends the digests that have collected requests for `notifications.digest_interval`, when an
    /// endpoint takes digests: each becomes a `notification.digest` audit event (and so a message).
    @discardableResult
    public func flushDigests() async throws -> Int {
        let context = self.context
        let policy = context.policies.policy
        guard !policy.notifications.endpoints(for: .digest).isEmpty || policy.notifications.slack != nil else { return 0 }
        let cutoff = context.clock.now().addingTimeInterval(-TimeInterval(policy.notifications.digestInterval.seconds))
        guard try await context.read({ try await !$0.digestsDue(createdBefore: cutoff, limit: 1).isEmpty }) else { return 0 }
        return try await context.write { session in
            let now = context.clock.now()
            var entries: [AuditEntry] = []
            for digest in try await session.digestsDue(createdBefore: cutoff, limit: 100) {
                guard try await session.markNotificationSent(id: digest.id, at: now) else { continue }
                entries.append(AuditEntry(actor: "system", action: .notificationDigest, subject: digest.id,
                                          details: ["recipient": digest.recipient, "count": "\(digest.requestIds.count)",
                                                    "request_ids": digest.requestIds.joined(separator: ","), "summary": digest.summary]))
            }
            try await session.appendAudit(entries, at: now)
            return entries.count
        }
    }

    /// Claims due messages for one round of sending.
    public func claimDeliveries(lease: TimeInterval, limit: Int = 32) async throws -> [WebhookDelivery] {
        let context = self.context
        guard try await context.read({ try await $0.deliveriesDue(now: context.clock.now()) }) else { return [] }
        return try await context.write { session in
            let now = context.clock.now()
            return try await session.claimDueDeliveries(now: now, until: now.addingTimeInterval(lease), limit: limit)
        }
    }

    /// The outcome of one delivery attempt.
    public struct WebhookAttempt: Sendable {
        public var delivery: WebhookDelivery
        public var status: Int?
        public var error: String?

        public init(delivery: WebhookDelivery, status: Int?, error: String?) {
            self.delivery = delivery
            self.status = status
            self.error = error
        }
    }

    /// Records a round of attempts in one transaction: delivered on 2xx; otherwise retried with
    /// backoff, and given up (and audited) after `notifications.retry.attempts` tries, or at once
    /// when the endpoint is gone.
    public func recordAttempts(_ attempts: [WebhookAttempt]) async throws {
        guard !attempts.isEmpty else { return }
        let context = self.context
        try await context.write { session in
            let policy = context.policies.policy
            let now = context.clock.now()
            let outcomes = attempts.map { Self.outcome(of: $0, policy: policy, now: now) }
            try await session.recordAttempts(outcomes.map(\.delivery))
            for outcome in outcomes {
                let delivery = outcome.delivery
                context.metrics.webhook(delivery.deliveredAt != nil ? "delivered" : delivery.failedAt != nil ? "failed" : "retry")
            }
            try await session.appendAudit(outcomes.compactMap(\.failure), at: now)
        }
    }

    /// What one attempt makes of its message: delivered on 2xx; otherwise due again after a backoff, or given up
    /// (with the audit entry that says so).
    static func outcome(of attempt: WebhookAttempt, policy: Policy, now: Date) -> (delivery: WebhookDelivery, failure: AuditEntry?) {
        let delivery = attempt.delivery, status = attempt.status, error = attempt.error
        var updated = delivery
        updated.attempts += 1
        updated.lastStatus = status.map { "HTTP \($0)" } ?? error ?? "no answer"
        let known = delivery.endpoint.hasPrefix(SlackOperation.endpointPrefix) ? policy.notifications.slack != nil
            : policy.notifications.webhooks.contains { $0.name == delivery.endpoint }
        let gone = status == 410 || !known
        if let status, (200..<300).contains(status) {
            updated.deliveredAt = now
        } else if gone || updated.attempts >= policy.notifications.retry.attempts {
            updated.failedAt = now
            if gone, status != 410 { updated.lastStatus = "endpoint no longer in the policy" }
        } else {
            let delay = policy.notifications.retry.delay(afterAttempt: updated.attempts, jitter: Double.random(in: 0...1))
            updated.nextAttemptAt = now.addingTimeInterval(delay)
        }
        guard updated.failedAt != nil else { return (updated, nil) }
        return (updated, AuditEntry(actor: "system", action: .webhookFailed, subject: delivery.id,
                                    details: ["endpoint": delivery.endpoint, "event": delivery.event,
                                              "attempts": "\(updated.attempts)", "last_status": updated.lastStatus ?? ""]))
    }

    public func pruneDeliveries(olderThan seconds: TimeInterval) async throws {
        let before = context.clock.now().addingTimeInterval(-seconds)
        try await context.write { try await $0.pruneDeliveries(before: before) }
    }

    public func deliveries(caller: Caller, limit: Int) async throws -> [WebhookDelivery] {
        try context.requireAdmin(caller, "list webhook deliveries")
        return try await context.read { try await $0.deliveries(limit: limit) }
    }
}
