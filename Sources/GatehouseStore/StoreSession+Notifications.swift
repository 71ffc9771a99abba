import Foundation
import GatehouseCore
import SQLKit

/// One message to one webhook endpoint, as kept in the outbox until it is delivered or given up.
public struct WebhookDelivery: Sendable, Equatable {
    public var id: String
    public var endpoint: String
    public var event: String
    public var body: String
    public var createdAt: Date
    public var attempts: Int
    public var nextAttemptAt: Date
    public var lastStatus: String?
    public var deliveredAt: Date?
    public var failedAt: Date?

    public init(id: String, endpoint: String, event: String, body: String, createdAt: Date, attempts: Int = 0,
                nextAttemptAt: Date, lastStatus: String? = nil, deliveredAt: Date? = nil, failedAt: Date? = nil) {
        self.id = id
        self.endpoint = endpoint
        self.event = event
        self.body = body
        self.createdAt = createdAt
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
        self.lastStatus = lastStatus
        self.deliveredAt = deliveredAt
        self.failedAt = failedAt
    }
}

/// A signed-in browser: the cookie holds a random id, the store only its SHA-256.
public struct WebSession: Sendable, Equatable {
    public var idHash: String
    public var tokenId: String
    public var principal: String
    public var csrf: String
    public var createdAt: Date
    public var expiresAt: Date

    public init(idHash: String, tokenId: String, principal: String, csrf: String, createdAt: Date, expiresAt: Date) {
        self.idHash = idHash
        self.tokenId = tokenId
        self.principal = principal
        self.csrf = csrf
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}

extension StoreSession {
    // MARK: break-glass

    public func insertBreakGlass(_ use: BreakGlassUse) async throws {
        try await db.raw("""
            INSERT INTO break_glass (grant_id, request_id, principal, resource, role, reason, at, expires_at, review_required)
            VALUES (\(bind: use.grantId), \(bind: use.requestId), \(bind: use.principal), \(bind: use.resource), \(bind: use.role),
                    \(bind: use.reason), \(bind: use.at.unixMilliseconds), \(bind: use.expiresAt.unixMilliseconds), \(bind: use.reviewRequired ? 1 : 0))
            """).run()
    }

    public func breakGlassUse(grantId: String) async throws -> BreakGlassUse? {
        try await db.raw("SELECT * FROM break_glass WHERE grant_id = \(bind: grantId)").first().map(Self.breakGlassUse)
    }

    /// Uses, newest first; `awaitingReview` keeps those whose required review is not done.
    public func breakGlassUses(awaitingReview: Bool, limit: Int) async throws -> [BreakGlassUse] {
        let filter: SQLQueryString = awaitingReview ? "WHERE review_required = 1 AND reviewed_at IS NULL" : ""
        return try await db.raw("SELECT * FROM break_glass \(filter) ORDER BY at DESC, grant_id LIMIT \(bind: limit)").all().map(Self.breakGlassUse)
    }

    /// Records a review; false when someone reviewed it first.
    public func reviewBreakGlass(_ use: BreakGlassUse) async throws -> Bool {
        let rows = try await db.raw("""
            UPDATE break_glass SET reviewed_at = \(bind: use.reviewedAt?.unixMilliseconds), reviewed_by = \(bind: use.reviewedBy),
                   review_comment = \(bind: use.reviewComment)
            WHERE grant_id = \(bind: use.grantId) AND reviewed_at IS NULL RETURNING grant_id
            """).all()
        return !rows.isEmpty
    }

    static func breakGlassUse(_ row: any SQLRow) throws -> BreakGlassUse {
        BreakGlassUse(
            grantId: try row.decode(column: "grant_id", as: String.self),
            requestId: try row.decode(column: "request_id", as: String.self),
            principal: try row.decode(column: "principal", as: String.self),
            resource: try row.decode(column: "resource", as: String.self),
            role: try row.decode(column: "role", as: String.self),
            reason: try row.decode(column: "reason", as: String.self),
            at: Date(unixMilliseconds: try row.decode(column: "at", as: Int64.self)),
            expiresAt: Date(unixMilliseconds: try row.decode(column: "expires_at", as: Int64.self)),
            reviewRequired: try row.decode(column: "review_required", as: Int64.self) != 0,
            reviewedAt: try row.decode(column: "reviewed_at", as: Int64?.self).map(Date.init(unixMilliseconds:)),
            reviewedBy: try row.decode(column: "reviewed_by", as: String?.self),
            reviewComment: try row.decode(column: "review_comment", as: String?.self))
    }

    // MARK: cursors

    public func cursor(_ name: String) async throws -> Int64? {
        try await db.raw("SELECT seq FROM cursors WHERE name = \(bind: name)").first()?.decode(column: "seq", as: Int64.self)
    }

    public func setCursor(_ name: String, to seq: Int64) async throws {
        try await db.raw("""
            INSERT INTO cursors (name, seq) VALUES (\(bind: name), \(bind: seq))
            ON CONFLICT (name) DO UPDATE SET seq = excluded.seq
            """).run()
    }

    // MARK: webhook outbox

    /// Queues a message for an endpoint; a message already queued under the same id is left as it is.
    public func enqueueDelivery(_ d: WebhookDelivery) async throws {
        try await db.raw("""
            INSERT INTO webhook_deliveries (id, endpoint, event, body, created_at, attempts, next_attempt_at)
            VALUES (\(bind: d.id), \(bind: d.endpoint), \(bind: d.event), \(bind: d.body), \(bind: d.createdAt.unixMilliseconds),
                    0, \(bind: d.nextAttemptAt.unixMilliseconds))
            ON CONFLICT (id, endpoint) DO NOTHING
            """).run()
    }

    /// Claims up to `limit` deliveries that are due and not claimed by a running attempt, until
    /// `until`; a claim left by a stopped instance runs out and the delivery is tried again.
    public func claimDueDeliveries(now: Date, until: Date, limit: Int) async throws -> [WebhookDelivery] {
        let due = try await db.raw("""
            SELECT * FROM webhook_deliveries
            WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= \(bind: now.unixMilliseconds)
              AND (claimed_until IS NULL OR claimed_until <= \(bind: now.unixMilliseconds))
            ORDER BY next_attempt_at, created_at, id LIMIT \(bind: limit)
            """).all().map(Self.delivery)
        for delivery in due {
            try await db.raw("""
                UPDATE webhook_deliveries SET claimed_until = \(bind: until.unixMilliseconds)
                WHERE id = \(bind: delivery.id) AND endpoint = \(bind: delivery.endpoint)
                """).run()
        }
        return due
    }

    /// Whether any delivery is due (checked on a reader before taking the writer).
    public func deliveriesDue(now: Date) async throws -> Bool {
        try await db.raw("""
            SELECT id FROM webhook_deliveries
            WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= \(bind: now.unixMilliseconds)
              AND (claimed_until IS NULL OR claimed_until <= \(bind: now.unixMilliseconds))
            LIMIT 1
            """).first() != nil
    }

    /// Records the outcome of one attempt and releases the claim.
    public func recordAttempt(_ d: WebhookDelivery) async throws {
        try await db.raw("""
            UPDATE webhook_deliveries SET attempts = \(bind: d.attempts), next_attempt_at = \(bind: d.nextAttemptAt.unixMilliseconds),
                   last_status = \(bind: d.lastStatus), delivered_at = \(bind: d.deliveredAt?.unixMilliseconds),
                   failed_at = \(bind: d.failedAt?.unixMilliseconds), claimed_until = NULL
            WHERE id = \(bind: d.id) AND endpoint = \(bind: d.endpoint) AND delivered_at IS NULL
            """).run()
    }

    public func deliveries(limit: Int) async throws -> [WebhookDelivery] {
        try await db.raw("SELECT * FROM webhook_deliveries ORDER BY created_at DESC, id DESC LIMIT \(bind: limit)").all().map(Self.delivery)
    }

    /// Drops delivered and given-up messages older than `before`.
    public func pruneDeliveries(before: Date) async throws {
        try await db.raw("""
            DELETE FROM webhook_deliveries WHERE (delivered_at IS NOT NULL AND delivered_at < \(bind: before.unixMilliseconds))
              OR (failed_at IS NOT NULL AND failed_at < \(bind: before.unixMilliseconds))
            """).run()
    }

    static func delivery(_ row: any SQLRow) throws -> WebhookDelivery {
        WebhookDelivery(
            id: try row.decode(column: "id", as: String.self),
            endpoint: try row.decode(column: "endpoint", as: String.self),
            event: try row.decode(column: "event", as: String.self),
            body: try row.decode(column: "body", as: String.self),
            createdAt: Date(unixMilliseconds: try row.decode(column: "created_at", as: Int64.self)),
            attempts: Int(try row.decode(column: "attempts", as: Int64.self)),
            nextAttemptAt: Date(unixMilliseconds: try row.decode(column: "next_attempt_at", as: Int64.self)),
            lastStatus: try row.decode(column: "last_status", as: String?.self),
            deliveredAt: try row.decode(column: "delivered_at", as: Int64?.self).map(Date.init(unixMilliseconds:)),
            failedAt: try row.decode(column: "failed_at", as: Int64?.self).map(Date.init(unixMilliseconds:)))
    }

    // MARK: notifications

    /// Open digests created before `before`: due to be sent.
    public func digestsDue(createdBefore before: Date, limit: Int) async throws -> [OutboxNotification] {
        try await db.raw("""
            SELECT * FROM notifications WHERE kind = 'digest' AND sent_at IS NULL AND created_at <= \(bind: before.unixMilliseconds)
            ORDER BY created_at, id LIMIT \(bind: limit)
            """).all().map(Self.notification)
    }

    /// Marks notifications sent; returns the ids that were still unsent.
    public func markNotificationSent(id: String, at now: Date) async throws -> Bool {
        let rows = try await db.raw("""
            UPDATE notifications SET sent_at = \(bind: now.unixMilliseconds) WHERE id = \(bind: id) AND sent_at IS NULL RETURNING id
            """).all()
        return !rows.isEmpty
    }

    /// Immediate notifications about one request (approvers told within their budget).
    public func notifiedRecipients(requestId: String, kinds: [String]) async throws -> [String] {
        try await db.raw("""
            SELECT recipient FROM notifications WHERE request_id = \(bind: requestId) AND kind IN (\(SQLList(kinds.map { SQLBind($0) })))
            ORDER BY recipient
            """).all().map { try $0.decode(column: "recipient", as: String.self) }
    }

    // MARK: web sessions

    public func insertWebSession(_ s: WebSession) async throws {
        try await db.raw("""
            INSERT INTO web_sessions (id_hash, token_id, principal, csrf, created_at, expires_at)
            VALUES (\(bind: s.idHash), \(bind: s.tokenId), \(bind: s.principal), \(bind: s.csrf),
                    \(bind: s.createdAt.unixMilliseconds), \(bind: s.expiresAt.unixMilliseconds))
            """).run()
    }

    public func webSession(idHash: String) async throws -> WebSession? {
        guard let row = try await db.raw("SELECT * FROM web_sessions WHERE id_hash = \(bind: idHash)").first() else { return nil }
        return WebSession(
            idHash: try row.decode(column: "id_hash", as: String.self),
            tokenId: try row.decode(column: "token_id", as: String.self),
            principal: try row.decode(column: "principal", as: String.self),
            csrf: try row.decode(column: "csrf", as: String.self),
            createdAt: Date(unixMilliseconds: try row.decode(column: "created_at", as: Int64.self)),
            expiresAt: Date(unixMilliseconds: try row.decode(column: "expires_at", as: Int64.self)))
    }

    public func deleteWebSession(idHash: String) async throws {
        try await db.raw("DELETE FROM web_sessions WHERE id_hash = \(bind: idHash)").run()
    }

    public func pruneWebSessions(now: Date) async throws {
        try await db.raw("DELETE FROM web_sessions WHERE expires_at <= \(bind: now.unixMilliseconds)").run()
    }
}
