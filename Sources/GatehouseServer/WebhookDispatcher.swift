import AsyncHTTPClient
import Foundation
import GatehouseCore
import GatehouseStore
import Logging
import NIOCore
import ServiceLifecycle

/// The outbox around webhooks. The audit log is the source of events: every state change commits
/// with its audit event, and the outbox follows the log with a stored cursor, queueing one message
/// per event and endpoint under the id `msg_<audit seq>` (the same id on every retry, so receivers
/// drop repeats). Queueing, claiming and recording run in write transactions; sending runs
/// outside them. Nothing is lost on restart: a message stays queued until an endpoint answers 2xx,
/// and a claim left by a stopped instance runs out and the message is sent again, with its id.
extension AccessService {
    static let webhookCursor = "webhooks"

    /// Queues messages for audit events after the cursor; returns how many events were read.
    @discardableResult
    public func queueWebhookMessages(limit: Int = 200) async throws -> Int {
        let head = try await read { try await $0.auditHead()?.seq ?? 0 }
        let cursor = try await read { try await $0.cursor(Self.webhookCursor) }
        if let cursor, cursor >= head { return 0 }
        return try await write { session in
            let policy = self.policies.policy
            let now = self.clock.now()
            guard let cursor = try await session.cursor(Self.webhookCursor) else {
                // First start: announce what happens from now on, not the history before.
                try await session.setCursor(Self.webhookCursor, to: try await session.auditHead()?.seq ?? 0)
                return 0
            }
            let events = try await session.auditEvents(.init(afterSeq: cursor, limit: limit))
            for event in events {
                guard let kind = WebhookEvent(auditAction: event.action) else { continue }
                let endpoints = policy.notifications.endpoints(for: kind)
                guard !endpoints.isEmpty, let message = try await self.message(for: event, kind: kind, session: session, policy: policy) else { continue }
                for endpoint in endpoints {
                    let body = endpoint.format == .slack ? message.slackBody() : message.standardBody()
                    try await session.enqueueDelivery(WebhookDelivery(id: message.id, endpoint: endpoint.name, event: kind.rawValue,
                                                                      body: String(decoding: body, as: UTF8.self), createdAt: now, nextAttemptAt: now))
                }
            }
            if let last = events.last { try await session.setCursor(Self.webhookCursor, to: last.seq) }
            return events.count
        }
    }

    /// The message for one audit event, or nil when this event is not announced: a request is
    /// announced only to approvers told at once (within their budget); the rest wait for a digest.
    func message(for event: AuditEvent, kind: WebhookEvent, session: StoreSession, policy: Policy) async throws -> WebhookMessage? {
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

    /// Sends the digests that have collected requests for `notifications.digest_interval`, when an
    /// endpoint takes digests: each becomes a `notification.digest` audit event (and so a message).
    @discardableResult
    public func flushDigests() async throws -> Int {
        let policy = policies.policy
        guard !policy.notifications.endpoints(for: .digest).isEmpty else { return 0 }
        let cutoff = clock.now().addingTimeInterval(-TimeInterval(policy.notifications.digestInterval.seconds))
        guard try await read({ try await !$0.digestsDue(createdBefore: cutoff, limit: 1).isEmpty }) else { return 0 }
        return try await write { session in
            let now = self.clock.now()
            var entries: [AuditEntry] = []
            for digest in try await session.digestsDue(createdBefore: cutoff, limit: 100) {
                guard try await session.markNotificationSent(id: digest.id, at: now) else { continue }
                entries.append(AuditEntry(actor: "system", action: "notification.digest", subject: digest.id,
                                          details: ["recipient": digest.recipient, "count": "\(digest.requestIds.count)",
                                                    "request_ids": digest.requestIds.joined(separator: ","), "summary": digest.summary]))
            }
            try await session.appendAudit(entries, at: now)
            return entries.count
        }
    }

    /// Claims due messages for one round of sending.
    public func claimWebhookDeliveries(lease: TimeInterval, limit: Int = 32) async throws -> [WebhookDelivery] {
        guard try await read({ try await $0.deliveriesDue(now: self.clock.now()) }) else { return [] }
        return try await write { session in
            let now = self.clock.now()
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
    public func recordWebhookAttempts(_ attempts: [WebhookAttempt]) async throws {
        guard !attempts.isEmpty else { return }
        try await write { session in
            let policy = self.policies.policy
            let now = self.clock.now()
            var entries: [AuditEntry] = []
            for attempt in attempts {
                if let entry = try await self.record(attempt, session: session, policy: policy, now: now) { entries.append(entry) }
            }
            try await session.appendAudit(entries, at: now)
        }
    }

    func record(_ attempt: WebhookAttempt, session: StoreSession, policy: Policy, now: Date) async throws -> AuditEntry? {
        let delivery = attempt.delivery, status = attempt.status, error = attempt.error
        var updated = delivery
        updated.attempts += 1
        updated.lastStatus = status.map { "HTTP \($0)" } ?? error ?? "no answer"
        let gone = status == 410 || !policy.notifications.webhooks.contains { $0.name == delivery.endpoint }
        if let status, (200..<300).contains(status) {
            updated.deliveredAt = now
        } else if gone || updated.attempts >= policy.notifications.retry.attempts {
            updated.failedAt = now
            if gone, status != 410 { updated.lastStatus = "endpoint no longer in the policy" }
        } else {
            let delay = policy.notifications.retry.delay(afterAttempt: updated.attempts, jitter: Double.random(in: 0...1))
            updated.nextAttemptAt = now.addingTimeInterval(delay)
        }
        try await session.recordAttempt(updated)
        metrics.webhook(updated.deliveredAt != nil ? "delivered" : updated.failedAt != nil ? "failed" : "retry")
        guard updated.failedAt != nil else { return nil }
        return AuditEntry(actor: "system", action: "webhook.failed", subject: delivery.id,
                          details: ["endpoint": delivery.endpoint, "event": delivery.event,
                                    "attempts": "\(updated.attempts)", "last_status": updated.lastStatus ?? ""])
    }


    public func pruneWebhookDeliveries(olderThan seconds: TimeInterval) async throws {
        let before = clock.now().addingTimeInterval(-seconds)
        try await write { try await $0.pruneDeliveries(before: before) }
    }

    public func webhookDeliveries(caller: Caller, limit: Int) async throws -> [WebhookDelivery] {
        try requireAdmin(caller, "list webhook deliveries")
        return try await read { try await $0.deliveries(limit: limit) }
    }
}

/// Runs the webhook outbox: follows the audit log, sends due digests, delivers due messages.
public struct WebhookDispatcher: Service {
    /// Events read and messages sent per round.
    static let batch = 64
    let service: AccessService
    let interval: Duration
    let logger: Logger

    public init(service: AccessService, interval: Duration = .milliseconds(500), logger: Logger) {
        self.service = service
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        var configuration = HTTPClient.Configuration()
        // A redirect would carry the message (and its signature) somewhere the policy never named.
        configuration.redirectConfiguration = .disallow
        configuration.decompression = .disabled
        // No endpoint may hold a connection longer than the longest attempt allowed.
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(60))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        var rounds = 0
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                rounds += 1
                if rounds % 7200 == 1 {
                    // About hourly: delivered and given-up messages are kept a week.
                    try await service.pruneWebhookDeliveries(olderThan: 7 * 86_400)
                }
                // Small batches keep each write transaction (and the writer lock) short.
                let queued = try await service.queueWebhookMessages(limit: Self.batch)
                try await service.flushDigests()
                let webhooks = service.policies.policy.notifications.webhooks
                let longest = webhooks.map { Double($0.timeout.seconds) }.max() ?? 10
                let due = try await service.claimWebhookDeliveries(lease: longest + 5, limit: Self.batch)
                let attempts = await withTaskGroup(of: AccessService.WebhookAttempt.self) { group in
                    for delivery in due {
                        group.addTask { await self.deliver(delivery, client: client) }
                    }
                    return await group.reduce(into: []) { $0.append($1) }
                }
                do {
                    try await service.recordWebhookAttempts(attempts)
                } catch {
                    // The claims run out and the messages are tried again (same ids).
                    logger.warning("webhook attempts could not be recorded", metadata: ["count": "\(attempts.count)", "error": "\(error)"])
                }
                // A full batch means more is waiting: go on at once; otherwise poll again shortly.
                if queued == Self.batch || due.count == Self.batch { continue }
            } catch {
                logger.warning("webhook outbox round failed; will retry", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: interval)
        }
        try? await client.shutdown()
    }

    func deliver(_ delivery: WebhookDelivery, client: HTTPClient) async -> AccessService.WebhookAttempt {
        let policy = service.policies.policy
        var status: Int?
        var failure: String?
        if let endpoint = policy.notifications.webhooks.first(where: { $0.name == delivery.endpoint }) {
            // One deadline for the whole attempt, headers and body: a slow endpoint costs its own
            // timeout, never the outbox.
            let limit = Double(endpoint.timeout.seconds)
            (status, failure) = await withTaskGroup(of: (Int?, String?)?.self) { group in
                group.addTask { await self.attempt(delivery, endpoint: endpoint, client: client) }
                group.addTask {
                    try? await Task.sleep(for: .seconds(limit))
                    return nil
                }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first ?? (nil, "no complete answer within \(endpoint.timeout)")
            }
        }
        if let failure { logger.warning("webhook delivery failed", metadata: ["id": "\(delivery.id)", "endpoint": "\(delivery.endpoint)", "error": "\(failure)"]) }
        return AccessService.WebhookAttempt(delivery: delivery, status: status, error: failure)
    }

    func attempt(_ delivery: WebhookDelivery, endpoint: WebhookEndpoint, client: HTTPClient) async -> (Int?, String?) {
        var status: Int?
        var failure: String?
        do {
            var request = HTTPClientRequest(url: endpoint.url)
            request.method = .POST
            let body = Array(delivery.body.utf8)
            request.headers.add(name: "content-type", value: "application/json")
            request.headers.add(name: "user-agent", value: "gatehouse-webhooks")
            request.headers.add(name: "webhook-id", value: delivery.id)
            let timestamp = Int64(service.clock.now().timeIntervalSince1970)
            request.headers.add(name: "webhook-timestamp", value: "\(timestamp)")
            if let key = try endpoint.signingKey() {
                request.headers.add(name: "webhook-signature", value: StandardWebhooks.signature(id: delivery.id, timestamp: timestamp, body: body, key: key))
            }
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await client.execute(request, timeout: .seconds(endpoint.timeout.seconds))
            status = Int(response.status.code)
            _ = try? await response.body.collect(upTo: 64 * 1024)
        } catch let error as WebhookSecretError {
            failure = error.message
        } catch {
            failure = "\(error)"
        }
        return (status, failure)
    }
}
