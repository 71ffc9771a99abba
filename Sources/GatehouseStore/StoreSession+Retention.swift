import Foundation
import GatehouseCore
import SQLKit

/// What the store keeps only for a while, so that tables that grow with use stay bounded: who was told
/// about a request (`notifications`), where a request's Slack messages are (`slack_messages`), and tokens
/// that expired (web and CLI sign-in sessions). The audit log keeps every event for good; these rows are
/// what the outbox and the sign-in path need while a request is open or a token is live.
///
/// Nothing is pruned that a request still open (pending or quarantined) may need, nor until `before` is
/// past its decision: the approvers told about it, the Slack messages to update when it is decided (or
/// reported later), a digest not sent yet, a token an approval of an open request was made with. Each
/// call deletes at most `limit` rows per table, oldest first, so the write stays short and a backlog goes
/// in a few calls.
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

    /// The request a row belongs to is open, or was decided at `before` or later: the row is kept. (A row
    /// of no request, such as a break-glass notice, goes by its own age.)
    private static func requestKeeps(_ column: String, before: Date) -> SQLQueryString {
        """
        EXISTS (SELECT 1 FROM requests r WHERE r.id = \(unsafeRaw: column)
                AND (r.state IN ('pending', 'quarantined') OR r.decided_at IS NULL OR r.decided_at >= \(bind: before.unixMilliseconds)))
        """
    }

    private static func notificationsDue(before: Date) -> SQLQueryString {
        """
        notifications.created_at < \(bind: before.unixMilliseconds) AND (notifications.kind <> 'digest' OR notifications.sent_at IS NOT NULL)
          AND NOT \(requestKeeps("notifications.request_id", before: before))
        """
    }

    private static func slackMessagesDue(before: Date) -> SQLQueryString {
        "slack_messages.created_at < \(bind: before.unixMilliseconds) AND NOT \(requestKeeps("slack_messages.request_id", before: before))"
    }

    /// Expired before `before`, and not the token of an approval of a request still open (whose standing
    /// is judged by its token: `RequestDesk.lostStanding`).
    private static func tokensDue(before: Date) -> SQLQueryString {
        """
        expires_at < \(bind: before.unixMilliseconds) AND id NOT IN (
          SELECT a.token_id FROM requests r JOIN approvals a ON a.request_id = r.id
          WHERE r.state IN ('pending', 'quarantined') AND a.token_id IS NOT NULL)
        """
    }

    static func retentionDueQueries(before: Date) -> [SQLQueryString] {
        ["SELECT id FROM notifications WHERE \(notificationsDue(before: before)) ORDER BY created_at LIMIT 1",
         "SELECT request_id FROM slack_messages WHERE \(slackMessagesDue(before: before)) ORDER BY created_at LIMIT 1",
         "SELECT id FROM tokens WHERE \(tokensDue(before: before)) ORDER BY expires_at LIMIT 1"]
    }

    static func pruneRetainedQueries(before: Date, limit: Int) -> (notifications: SQLQueryString, slackMessages: SQLQueryString, tokens: SQLQueryString) {
        (notifications: """
            DELETE FROM notifications WHERE id IN (
              SELECT id FROM notifications WHERE \(notificationsDue(before: before)) ORDER BY created_at LIMIT \(bind: limit))
            RETURNING id
            """,
         slackMessages: """
            DELETE FROM slack_messages WHERE (request_id, channel, ts) IN (
              SELECT request_id, channel, ts FROM slack_messages WHERE \(slackMessagesDue(before: before)) ORDER BY created_at LIMIT \(bind: limit))
            RETURNING request_id
            """,
         tokens: """
            DELETE FROM tokens WHERE id IN (
              SELECT id FROM tokens WHERE \(tokensDue(before: before)) ORDER BY expires_at LIMIT \(bind: limit))
            RETURNING id
            """)
    }
}

