import Foundation
import GatehouseCore
import SQLKit

/// One posted copy of a request's Slack message.
public struct SlackMessageRef: Sendable, Equatable {
    public var requestId: String
    public var channel: String
    public var ts: String

    public init(requestId: String, channel: String, ts: String) {
        self.requestId = requestId
        self.channel = channel
        self.ts = ts
    }
}

/// Slack: links between Slack accounts and principals (tokens of kind `slack`), the copies of each
/// request's message, and the codes that link an account from the web inbox.
extension StoreSession {
    public static func slackIssuer(team: String) -> String { "slack:" + team }

    /// The live link of this Slack user, if any.
    public func slackLink(team: String, user: String) async throws -> TokenRecord? {
        try await db.raw("""
            SELECT * FROM tokens WHERE kind = 'slack' AND issuer = \(bind: Self.slackIssuer(team: team)) AND subject = \(bind: user)
              AND revoked_at IS NULL ORDER BY created_at DESC, id LIMIT 1
            """).first().map(Self.token)
    }

    /// The live Slack links of a principal (for direct messages).
    public func slackLinks(principal: String) async throws -> [TokenRecord] {
        try await db.raw("""
            SELECT * FROM tokens WHERE kind = 'slack' AND principal = \(bind: principal) AND revoked_at IS NULL ORDER BY created_at, id
            """).all().map(Self.token)
    }

    /// The principals the identity provider confirmed this e-mail address for.
    public func principals(withEmail email: String) async throws -> [String] {
        try await db.raw("SELECT principal FROM identities WHERE email = \(bind: email) ORDER BY principal")
            .all().map { try $0.decode(column: "principal", as: String.self) }
    }

    public func insertSlackMessage(_ ref: SlackMessageRef, at: Date) async throws {
        try await db.raw("""
            INSERT INTO slack_messages (request_id, channel, ts, created_at)
            VALUES (\(bind: ref.requestId), \(bind: ref.channel), \(bind: ref.ts), \(bind: at.unixMilliseconds))
            ON CONFLICT (request_id, channel, ts) DO NOTHING
            """).run()
    }

    public func slackMessages(requestId: String) async throws -> [SlackMessageRef] {
        try await db.raw("SELECT * FROM slack_messages WHERE request_id = \(bind: requestId) ORDER BY created_at, channel, ts").all().map { row in
            SlackMessageRef(requestId: try row.decode(column: "request_id", as: String.self),
                            channel: try row.decode(column: "channel", as: String.self),
                            ts: try row.decode(column: "ts", as: String.self))
        }
    }

    /// Stores a link code for `principal`, ending the earlier ones it made (one at a time).
    public func insertSlackLinkCode(hash: String, principal: String, createdAt: Date, expiresAt: Date) async throws {
        try await db.raw("""
            DELETE FROM slack_link_codes WHERE expires_at <= \(bind: createdAt.unixMilliseconds) OR principal = \(bind: principal)
            """).run()
        try await db.raw("""
            INSERT INTO slack_link_codes (code_hash, principal, created_at, expires_at)
            VALUES (\(bind: hash), \(bind: principal), \(bind: createdAt.unixMilliseconds), \(bind: expiresAt.unixMilliseconds))
            """).run()
    }

    /// The principal a valid link code was made by, removing the code (it works once).
    public func takeSlackLinkCode(hash: String, now: Date) async throws -> String? {
        guard let row = try await db.raw("""
            SELECT principal FROM slack_link_codes WHERE code_hash = \(bind: hash) AND expires_at > \(bind: now.unixMilliseconds)
            """).first() else { return nil }
        try await db.raw("DELETE FROM slack_link_codes WHERE code_hash = \(bind: hash)").run()
        return try row.decode(column: "principal", as: String.self)
    }
}
