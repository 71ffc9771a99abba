import Foundation
import GatehouseCore
import SQLKit

/// A message waiting in the outbox for whatever delivers notifications (webhooks, chat).
public struct OutboxNotification: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// One request for an approver to decide.
        case request
        /// Requests beyond the approver's budget (or throttled), merged into one message.
        case digest
        /// A request was reported as suspicious (to the reviewers).
        case report
        /// Someone broke the glass (to `break_glass.notify`), outside every budget.
        case breakGlass = "break_glass"
    }
    public var id: String
    public var recipient: String
    public var kind: Kind
    public var requestIds: [String]
    public var summary: String
    public var createdAt: Date
    public var updatedAt: Date
    public var sentAt: Date?

    public init(id: String, recipient: String, kind: Kind, requestIds: [String], summary: String, createdAt: Date,
                updatedAt: Date? = nil, sentAt: Date? = nil) {
        self.id = id
        self.recipient = recipient
        self.kind = kind
        self.requestIds = requestIds
        self.summary = summary
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
        self.sentAt = sentAt
    }
}

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

    /// A message is one event's for one endpoint: the two name it.
    public struct Key: Hashable, Sendable {
        public var id: String
        public var endpoint: String
    }

    public var key: Key { Key(id: id, endpoint: endpoint) }

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

/// The outbox: notifications for people (requests, digests, reports, break-glass) and the webhook
/// messages that follow the audit log, with the cursor that says how far they have followed it.
extension StoreSession {
    // MARK: notification outbox

    public func insertNotification(_ n: OutboxNotification) async throws {
        try await db.raw("""
            INSERT INTO notifications (id, recipient, kind, request_id, request_ids, request_count, summary, created_at, updated_at, sent_at)
            VALUES (\(bind: n.id), \(bind: n.recipient), \(bind: n.kind.rawValue), \(bind: n.requestIds.first),
                    \(bind: n.requestIds.joined(separator: ",")), \(bind: n.requestIds.count), \(bind: n.summary),
                    \(bind: n.createdAt.unixMilliseconds), \(bind: n.updatedAt.unixMilliseconds), \(bind: n.sentAt?.unixMilliseconds))
            """).run()
    }

    /// The recipient's digest that has not been sent yet: at most one at a time.
    public func openDigest(recipient: String) async throws -> OutboxNotification? {
        try await db.raw("""
            SELECT * FROM notifications WHERE recipient = \(bind: recipient) AND kind = 'digest' AND sent_at IS NULL LIMIT 1
            """).first().map(Self.notification)
    }

    public func updateDigest(_ n: OutboxNotification) async throws {
        try await db.raw("""
            UPDATE notifications SET request_ids = \(bind: n.requestIds.joined(separator: ",")), request_count = \(bind: n.requestIds.count),
                   summary = \(bind: n.summary), updated_at = \(bind: n.updatedAt.unixMilliseconds)
            WHERE id = \(bind: n.id) AND sent_at IS NULL
            """).run()
    }

    public func notifications(recipient: String?, limit: Int) async throws -> [OutboxNotification] {
        let filter: SQLQueryString = recipient.map { "WHERE recipient = \(bind: $0)" } ?? ""
        return try await db.raw("SELECT * FROM notifications \(filter) ORDER BY created_at, id LIMIT \(bind: limit)").all().map(Self.notification)
    }

    static func notification(_ row: any SQLRow) throws -> OutboxNotification {
        let ids = try row.decodeOptional(column: "request_ids", as: String.self) ?? ""
        return OutboxNotification(
            id: try row.decode(column: "id", as: String.self),
            recipient: try row.decode(column: "recipient", as: String.self),
            kind: try row.decodeValue(column: "kind", as: OutboxNotification.Kind.self),
            requestIds: ids.split(separator: ",").map(String.init),
            summary: try row.decode(column: "summary", as: String.self),
            createdAt: Date(unixMilliseconds: try row.decode(column: "created_at", as: Int64.self)),
            updatedAt: Date(unixMilliseconds: try row.decode(column: "updated_at", as: Int64.self)),
            sentAt: try row.decodeOptional(column: "sent_at", as: Int64.self).map(Date.init(unixMilliseconds:)))
    }

    // MARK: notifications

    /// Open digests created before `before`: due to be sent.
    public func digestsDue(createdBefore before: Date, limit: Int) async throws -> [OutboxNotification] {
        try await db.raw(Self.digestsDueQuery(createdBefore: before, limit: limit)).all().map(Self.notification)
    }

    /// Through `notifications_digests_open`: its condition is written here as in the index, word for word.
    static func digestsDueQuery(createdBefore before: Date, limit: Int) -> SQLQueryString {
        """
        SELECT * FROM notifications WHERE kind = 'digest' AND sent_at IS NULL AND created_at <= \(bind: before.unixMilliseconds)
        ORDER BY created_at, id LIMIT \(bind: limit)
        """
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
        try await db.raw(Self.notifiedRecipientsQuery(requestId: requestId, kinds: kinds)).all()
            .map { try $0.decode(column: "recipient", as: String.self) }
    }

    static func notifiedRecipientsQuery(requestId: String, kinds: [String]) -> SQLQueryString {
        """
        SELECT recipient FROM notifications WHERE request_id = \(bind: requestId) AND kind IN (\(SQLList(kinds.map { SQLBind($0) })))
        ORDER BY recipient
        """
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

    /// Queues a message for an endpoint, claimed until `claimedUntil` when given; a message already queued
    /// under the same id is left as it is (and not claimed). Returns whether this call queued it.
    @discardableResult
    public func enqueueDelivery(_ d: WebhookDelivery, claimedUntil: Date? = nil) async throws -> Bool {
        try await !enqueueDeliveries([(d, claimedUntil)]).isEmpty
    }

    /// Queues messages as `enqueueDelivery` does, a statement per `rowsPerStatement` of them (a round's
    /// messages wait for the one writer once, not once each); a message listed twice is queued once, as first
    /// listed. Returns those this call queued, in order.
    @discardableResult
    public func enqueueDeliveries(_ items: [(delivery: WebhookDelivery, claimedUntil: Date?)]) async throws -> [WebhookDelivery] {
        var listed: Set<WebhookDelivery.Key> = []
        let items = items.filter { listed.insert($0.delivery.key).inserted }
        var queued: [WebhookDelivery] = []
        for start in stride(from: 0, to: items.count, by: Self.rowsPerStatement) {
            let chunk = items[start..<min(start + Self.rowsPerStatement, items.count)]
            let inserted = try await db.raw(Self.enqueueQuery(chunk)).all()
                .map { WebhookDelivery.Key(id: try $0.decode(column: "id", as: String.self), endpoint: try $0.decode(column: "endpoint", as: String.self)) }
            let fresh = Set(inserted)
            queued += chunk.map(\.delivery).filter { fresh.contains($0.key) }
        }
        return queued
    }

    static func enqueueQuery(_ chunk: ArraySlice<(delivery: WebhookDelivery, claimedUntil: Date?)>) -> SQLQueryString {
        let rows = SQLList(chunk.map { item -> SQLQueryString in
            let d = item.delivery
            return """
                (\(bind: d.id), \(bind: d.endpoint), \(bind: d.event), \(bind: d.body), \(bind: d.createdAt.unixMilliseconds), 0,
                 \(bind: d.nextAttemptAt.unixMilliseconds), CAST(\(bind: item.claimedUntil?.unixMilliseconds) AS BIGINT))
                """
        })
        return """
            INSERT INTO webhook_deliveries (id, endpoint, event, body, created_at, attempts, next_attempt_at, claimed_until)
            VALUES \(rows)
            ON CONFLICT (id, endpoint) DO NOTHING RETURNING id, endpoint
            """
    }

    /// How many messages one INSERT or UPDATE carries (8 values each: far below either database's limit).
    static let rowsPerStatement = 100

    /// Claims up to `limit` deliveries that are due and not claimed by a running attempt, until
    /// `until`; a claim left by a stopped instance runs out and the delivery is tried again.
    public func claimDueDeliveries(now: Date, until: Date, limit: Int) async throws -> [WebhookDelivery] {
        let due = try await db.raw("""
            SELECT * FROM webhook_deliveries
            WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= \(bind: now.unixMilliseconds)
              AND (claimed_until IS NULL OR claimed_until <= \(bind: now.unixMilliseconds))
            ORDER BY next_attempt_at, created_at, id LIMIT \(bind: limit)
            """).all().map(Self.delivery)
        for start in stride(from: 0, to: due.count, by: Self.rowsPerStatement) {
            try await db.raw(Self.claimQuery(due[start..<min(start + Self.rowsPerStatement, due.count)], until: until)).run()
        }
        return due
    }

    static func claimQuery(_ deliveries: ArraySlice<WebhookDelivery>, until: Date) -> SQLQueryString {
        let keys = SQLList(deliveries.map { d -> SQLQueryString in "(\(bind: d.id), \(bind: d.endpoint))" })
        return """
            UPDATE webhook_deliveries SET claimed_until = \(bind: until.unixMilliseconds)
            WHERE (id, endpoint) IN (VALUES \(keys))
            """
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

    /// Records the outcome of attempts and releases their claims, a statement per `rowsPerStatement` of them;
    /// a message already recorded delivered stays as it is, and of two outcomes for one message in the list a
    /// delivery counts.
    public func recordAttempts(_ attempts: [WebhookDelivery]) async throws {
        var chosen: [WebhookDelivery.Key: Int] = [:]
        var outcomes: [WebhookDelivery] = []
        for attempt in attempts {
            if let index = chosen[attempt.key] {
                if outcomes[index].deliveredAt == nil, attempt.deliveredAt != nil { outcomes[index] = attempt }
            } else {
                chosen[attempt.key] = outcomes.count
                outcomes.append(attempt)
            }
        }
        for start in stride(from: 0, to: outcomes.count, by: Self.rowsPerStatement) {
            try await db.raw(Self.recordAttemptsQuery(outcomes[start..<min(start + Self.rowsPerStatement, outcomes.count)])).run()
        }
    }

    static func recordAttemptsQuery(_ outcomes: ArraySlice<WebhookDelivery>) -> SQLQueryString {
        // Typed in every row: a column of NULLs alone would be text to PostgreSQL.
        let rows = SQLList(outcomes.map { d -> SQLQueryString in
            """
            (\(bind: d.id), \(bind: d.endpoint), CAST(\(bind: d.attempts) AS BIGINT), CAST(\(bind: d.nextAttemptAt.unixMilliseconds) AS BIGINT),
             CAST(\(bind: d.lastStatus) AS TEXT), CAST(\(bind: d.deliveredAt?.unixMilliseconds) AS BIGINT),
             CAST(\(bind: d.failedAt?.unixMilliseconds) AS BIGINT))
            """
        })
        // VALUES names its columns column1, column2, ... in both databases.
        return """
            UPDATE webhook_deliveries SET attempts = v.column3, next_attempt_at = v.column4, last_status = v.column5,
                   delivered_at = v.column6, failed_at = v.column7, claimed_until = NULL
            FROM (VALUES \(rows)) AS v
            WHERE webhook_deliveries.id = v.column1 AND webhook_deliveries.endpoint = v.column2 AND webhook_deliveries.delivered_at IS NULL
            """
    }

    public func deliveries(limit: Int) async throws -> [WebhookDelivery] {
        try await db.raw("SELECT * FROM webhook_deliveries ORDER BY created_at DESC, id DESC LIMIT \(bind: limit)").all().map(Self.delivery)
    }

    /// Drops delivered and given-up messages older than `before`.
    /// Two deletes, each through `webhook_deliveries_due` (a given-up message was never delivered), so the writer
    /// is not held while a week of messages is read.
    public func pruneDeliveries(before: Date) async throws {
        for query in Self.pruneDeliveriesQueries(before: before) { try await db.raw(query).run() }
    }

    static func pruneDeliveriesQueries(before: Date) -> [SQLQueryString] {
        ["DELETE FROM webhook_deliveries WHERE delivered_at < \(bind: before.unixMilliseconds)",
         "DELETE FROM webhook_deliveries WHERE delivered_at IS NULL AND failed_at < \(bind: before.unixMilliseconds)"]
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
            lastStatus: try row.decodeOptional(column: "last_status", as: String.self),
            deliveredAt: try row.decodeOptional(column: "delivered_at", as: Int64.self).map(Date.init(unixMilliseconds:)),
            failedAt: try row.decodeOptional(column: "failed_at", as: Int64.self).map(Date.init(unixMilliseconds:)))
    }
}
