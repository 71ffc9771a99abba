import Foundation
import GatehouseCore
import SQLKit

/// What the store keeps only for a while, so that tables that grow with use stay bounded: who was told
/// about a request (`notifications`), where a request's Slack messages are (`slack_messages`), and tokens
/// that expired (web and CLI sign-in sessions). The audit log keeps every event for good; these rows are
/// what the outbox and the sign-in path need while a request is open or a token is live.
///
/// Nothing is pruned that a request still open (pending or quarantined) may need: the approvers told about
/// it, the Slack messages to update when it is decided, a digest not sent yet. Each call deletes at most
/// `limit` rows per table, oldest first, so a sweep's write stays short and a backlog goes in a few sweeps.
extension StoreSession {
    public struct Pruned: Sendable, Equatable {
        public var notifications = 0
        public var slackMessages = 0
        public var tokens = 0

        public init(notifications: Int = 0, slackMessages: Int = 0, tokens: Int = 0) {
            self.notifications = notifications
            self.slackMessages = slackMessages
            self.tokens = tokens
        }

        public var total: Int { notifications + slackMessages + tokens }
    }

    /// Whether anything older than `before` may be pruned (read on a reader: an idle sweeper writes nothing).
    public func retentionDue(before: Date) async throws -> Bool {
        for query in Self.retentionDueQueries(before: before) where try await db.raw(query).first() != nil { return true }
        return false
    }

    /// Deletes notifications and Slack message references of requests no longer open, made before `before`,
    /// and tokens that expired before `before`.
    public func pruneRetained(before: Date, limit: Int) async throws -> Pruned {
        let queries = Self.pruneRetainedQueries(before: before, limit: limit)
        return Pruned(notifications: try await db.raw(queries.notifications).all().count,
                      slackMessages: try await db.raw(queries.slackMessages).all().count,
                      tokens: try await db.raw(queries.tokens).all().count)
    }

    /// A request some row belongs to is still open: its row is kept.
    private static func openRequest(_ column: String) -> SQLQueryString {
        "EXISTS (SELECT 1 FROM requests r WHERE r.id = \(unsafeRaw: column) AND r.state IN ('pending', 'quarantined'))"
    }

    private static func notificationsDue(before: Date) -> SQLQueryString {
        """
        notifications.created_at < \(bind: before.unixMilliseconds) AND (notifications.kind <> 'digest' OR notifications.sent_at IS NOT NULL)
          AND NOT \(openRequest("notifications.request_id"))
        """
    }

    private static func slackMessagesDue(before: Date) -> SQLQueryString {
        "slack_messages.created_at < \(bind: before.unixMilliseconds) AND NOT \(openRequest("slack_messages.request_id"))"
    }

    static func retentionDueQueries(before: Date) -> [SQLQueryString] {
        ["SELECT id FROM notifications WHERE \(notificationsDue(before: before)) ORDER BY created_at LIMIT 1",
         "SELECT request_id FROM slack_messages WHERE \(slackMessagesDue(before: before)) ORDER BY created_at LIMIT 1",
         "SELECT id FROM tokens WHERE expires_at < \(bind: before.unixMilliseconds) ORDER BY expires_at LIMIT 1"]
    }

    static func pruneRetainedQueries(before: Date, limit: Int) -> (notifications: SQLQueryString, slackMessages: SQLQueryString, tokens: SQLQueryString) {
        (notifications: """
            DELETE FROM notifications WHERE id IN (
              SELECT id FROM notifications WHERE \(notificationsDue(before: before)) ORDER BY created_at LIMIT \(bind: limit))
            RETURNING id
            """,
         slackMessages: """
            DELETE FROM slack_messages WHERE created_at < \(bind: before.unixMilliseconds) AND request_id IN (
              SELECT request_id FROM slack_messages WHERE \(slackMessagesDue(before: before)) ORDER BY created_at LIMIT \(bind: limit))
            RETURNING request_id
            """,
         tokens: """
            DELETE FROM tokens WHERE id IN (
              SELECT id FROM tokens WHERE expires_at < \(bind: before.unixMilliseconds) ORDER BY expires_at LIMIT \(bind: limit))
            RETURNING id
            """)
    }
}

extension StoreSession {
    /// For the rest of this transaction only: no statement time limit (on PostgreSQL every connection has
    /// 15 s). Migrations need it: building an index on a table of millions of rows can take longer, and a
    /// migration cut off at start would keep the server from starting. SQLite has no such limit.
    func allowLongStatements() async throws {
        guard db.dialect.name == "postgresql" else { return }
        try await db.raw("SET LOCAL statement_timeout = 0").run()
    }
}

