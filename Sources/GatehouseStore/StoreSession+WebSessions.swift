import Foundation
import GatehouseCore
import SQLKit

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
        try await db.raw(Self.pruneWebSessionsQuery(now: now)).run()
    }

    static func pruneWebSessionsQuery(now: Date) -> SQLQueryString { "DELETE FROM web_sessions WHERE expires_at <= \(bind: now.unixMilliseconds)" }
}
