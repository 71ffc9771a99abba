import Foundation
import GatehouseCore
import SQLKit

/// The binding of a provider's issuer + subject to one principal name, for good.
public struct IdentityBinding: Sendable, Equatable {
    public var issuer: String
    public var subject: String
    public var principal: String
    public var email: String?
    /// The policy groups of the latest sign-in.
    public var groups: [String]
    public var firstSeen: Date
    public var lastSeen: Date

    public init(issuer: String, subject: String, principal: String, email: String?, groups: [String], firstSeen: Date, lastSeen: Date) {
        self.issuer = issuer
        self.subject = subject
        self.principal = principal
        self.email = email
        self.groups = groups
        self.firstSeen = firstSeen
        self.lastSeen = lastSeen
    }
}

/// A sign-in under way: what the callback must find again. The state's hash is the key, so a state
/// is used once; the PKCE verifier and the nonce never leave the server.
public struct PendingSignIn: Sendable, Equatable {
    /// `device`: the CLI's device authorization grant (RFC 8628); `verifier` then holds the provider's device code.
    public enum Purpose: String, Sendable { case web, cli, device }
    public var stateHash: String
    public var nonce: String
    public var verifier: String
    public var purpose: Purpose
    public var redirectURI: String
    /// For the CLI: the hash of the secret only the terminal that started the sign-in holds.
    public var clientHash: String?
    public var createdAt: Date
    public var expiresAt: Date

    public init(stateHash: String, nonce: String, verifier: String, purpose: Purpose, redirectURI: String, clientHash: String?,
                createdAt: Date, expiresAt: Date) {
        self.stateHash = stateHash
        self.nonce = nonce
        self.verifier = verifier
        self.purpose = purpose
        self.redirectURI = redirectURI
        self.clientHash = clientHash
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}

extension StoreSession {
    // MARK: identities

    public func identity(issuer: String, subject: String) async throws -> IdentityBinding? {
        try await db.raw("SELECT * FROM identities WHERE issuer = \(bind: issuer) AND subject = \(bind: subject)").first().map(Self.identity)
    }

    public func identity(principal: String) async throws -> IdentityBinding? {
        try await db.raw("SELECT * FROM identities WHERE principal = \(bind: principal)").first().map(Self.identity)
    }

    public func insertIdentity(_ i: IdentityBinding) async throws {
        try await db.raw("""
            INSERT INTO identities (issuer, subject, principal, email, groups, first_seen, last_seen)
            VALUES (\(bind: i.issuer), \(bind: i.subject), \(bind: i.principal), \(bind: i.email), \(bind: Self.encodeList(i.groups)),
                    \(bind: i.firstSeen.unixMilliseconds), \(bind: i.lastSeen.unixMilliseconds))
            """).run()
    }

    public func identities() async throws -> [IdentityBinding] {
        try await db.raw("SELECT * FROM identities ORDER BY principal").all().map(Self.identity)
    }

    public func touchIdentity(issuer: String, subject: String, email: String?, groups: [String], at: Date) async throws {
        try await db.raw("""
            UPDATE identities SET last_seen = \(bind: at.unixMilliseconds), email = \(bind: email), groups = \(bind: Self.encodeList(groups))
            WHERE issuer = \(bind: issuer) AND subject = \(bind: subject)
            """).run()
    }

    static func identity(_ row: any SQLRow) throws -> IdentityBinding {
        IdentityBinding(
            issuer: try row.decode(column: "issuer", as: String.self),
            subject: try row.decode(column: "subject", as: String.self),
            principal: try row.decode(column: "principal", as: String.self),
            email: try row.decodeOptional(column: "email", as: String.self),
            groups: try decodeList(try row.decode(column: "groups", as: String.self)),
            firstSeen: Date(unixMilliseconds: try row.decode(column: "first_seen", as: Int64.self)),
            lastSeen: Date(unixMilliseconds: try row.decode(column: "last_seen", as: Int64.self)))
    }

    // MARK: sessions from the provider

    /// Live sessions (not revoked, not expired), newest first.
    public func liveSessions(now: Date) async throws -> [TokenRecord] {
        try await db.raw("""
            SELECT * FROM tokens WHERE kind = 'session' AND revoked_at IS NULL AND expires_at > \(bind: now.unixMilliseconds)
            ORDER BY created_at DESC, id
            """).all().map(Self.token)
    }

    /// Every live token of a principal, sessions and API tokens alike.
    public func liveTokens(principal: String) async throws -> [TokenRecord] {
        try await db.raw("SELECT * FROM tokens WHERE principal = \(bind: principal) AND revoked_at IS NULL ORDER BY created_at, id")
            .all().map(Self.token)
    }

    public func deleteWebSessions(tokenId: String) async throws {
        try await db.raw(Self.deleteWebSessionsQuery(tokenId: tokenId)).run()
    }

    static func deleteWebSessionsQuery(tokenId: String) -> SQLQueryString { "DELETE FROM web_sessions WHERE token_id = \(bind: tokenId)" }

    // MARK: sign-ins under way

    public func insertPendingSignIn(_ p: PendingSignIn) async throws {
        try await db.raw("""
            INSERT INTO sign_ins (state_hash, nonce, verifier, purpose, redirect_uri, client_hash, created_at, expires_at)
            VALUES (\(bind: p.stateHash), \(bind: p.nonce), \(bind: p.verifier), \(bind: p.purpose.rawValue), \(bind: p.redirectURI),
                    \(bind: p.clientHash), \(bind: p.createdAt.unixMilliseconds), \(bind: p.expiresAt.unixMilliseconds))
            """).run()
    }

    /// Removes and returns the sign-in with this state: a second callback with the same state finds nothing.
    public func takePendingSignIn(stateHash: String) async throws -> PendingSignIn? {
        guard let found = try await pendingSignIn(stateHash: stateHash) else { return nil }
        try await deletePendingSignIn(stateHash: stateHash)
        return found
    }

    public func deletePendingSignIn(stateHash: String) async throws {
        try await db.raw("DELETE FROM sign_ins WHERE state_hash = \(bind: stateHash)").run()
    }

    /// The sign-in with this state, left in place (a device sign-in is polled until it ends).
    public func pendingSignIn(stateHash: String) async throws -> PendingSignIn? {
        guard let row = try await db.raw("SELECT * FROM sign_ins WHERE state_hash = \(bind: stateHash)").first() else { return nil }
        return PendingSignIn(
            stateHash: try row.decode(column: "state_hash", as: String.self),
            nonce: try row.decode(column: "nonce", as: String.self),
            verifier: try row.decode(column: "verifier", as: String.self),
            purpose: try row.decodeValue(column: "purpose", as: PendingSignIn.Purpose.self),
            redirectURI: try row.decode(column: "redirect_uri", as: String.self),
            clientHash: try row.decodeOptional(column: "client_hash", as: String.self),
            createdAt: Date(unixMilliseconds: try row.decode(column: "created_at", as: Int64.self)),
            expiresAt: Date(unixMilliseconds: try row.decode(column: "expires_at", as: Int64.self)))
    }

    public func pendingSignInCount() async throws -> Int {
        try await db.raw("SELECT COUNT(*) AS n FROM sign_ins").first()?.decode(column: "n", as: Int.self) ?? 0
    }

    /// Removes the `count` sign-ins started first.
    public func deleteOldestPendingSignIns(_ count: Int) async throws {
        try await db.raw("""
            DELETE FROM sign_ins WHERE state_hash IN (SELECT state_hash FROM sign_ins ORDER BY created_at, state_hash LIMIT \(bind: count))
            """).run()
    }

    public func prunePendingSignIns(now: Date) async throws {
        try await db.raw("DELETE FROM sign_ins WHERE expires_at <= \(bind: now.unixMilliseconds)").run()
    }
}
