import Foundation
import GatehouseCore
import GatehouseStore

/// Web inbox sessions: a browser signs in once with a Gatehouse token and then carries a random
/// session id in an HttpOnly cookie. The store keeps only the id's SHA-256, the token it stands
/// for (so revoking the token ends the session) and the session's CSRF secret.
public struct WebSessions: Sendable {
    let context: AppContext
    let tokens: Tokens

    init(_ context: AppContext, tokens: Tokens) {
        self.context = context
        self.tokens = tokens
    }

    public static let lifetime: TimeInterval = 12 * 3600

    /// Signs in with a token; returns the cookie value and the session.
    public func signIn(token: String, sourceIP: String?) async throws -> (cookie: String, session: WebSession, caller: Caller) {
        let caller: Caller
        do {
            caller = try await tokens.authenticate(bearer: token.trimmingCharacters(in: .whitespacesAndNewlines))
        } catch let error as GatehouseError where error.kind == .unauthorized {
            throw GatehouseError(.unauthorized, error.code, "sign-in failed: \(error.message)")
        }
        let cookie = Identifier.make("ghw", bytes: 32)
        let session = try await context.write(as: caller) { session, _, now in
            let record = WebSession(idHash: TokenSecret.hash(cookie), tokenId: caller.tokenId, principal: caller.principal,
                                    csrf: Identifier.make("csrf", bytes: 32), createdAt: now,
                                    expiresAt: now.addingTimeInterval(Self.lifetime))
            try await session.pruneWebSessions(now: now)
            try await session.insertWebSession(record)
            try await session.appendAudit([AuditEntry(actor: caller.principal, action: .webSignedIn, subject: caller.tokenId,
                                                      details: AuditEntry.compact(["principal": caller.principal, "source_ip": sourceIP]))], at: now)
            return record
        }
        return (cookie, session, caller)
    }

    /// The caller behind a session cookie, or nil when the cookie is unknown, expired, or its
    /// token was revoked or its principal removed from the policy.
    public func caller(cookie: String) async throws -> (Caller, WebSession)? {
        guard cookie.utf8.count <= 128 else { return nil }
        let hash = TokenSecret.hash(cookie)
        let found = try await context.read { session -> (WebSession, TokenRecord)? in
            guard let web = try await session.webSession(idHash: hash), let token = try await session.token(id: web.tokenId) else { return nil }
            return (web, token)
        }
        guard let (web, token) = found, web.expiresAt > context.clock.now() else { return nil }
        tokens.noteSession(token)
        guard let caller = Tokens.caller(for: token, policy: context.policies.policy, now: context.clock.now()) else { return nil }
        return (caller, web)
    }

    /// Opens a browser session on a session token that a sign-in through the provider just issued.
    func open(on token: TokenRecord, caller: Caller) async throws -> (cookie: String, session: WebSession) {
        let cookie = Identifier.make("ghw", bytes: 32)
        let clock = context.clock
        let session = try await context.write { session in
            let now = clock.now()
            let record = WebSession(idHash: TokenSecret.hash(cookie), tokenId: token.id, principal: caller.principal,
                                    csrf: Identifier.make("csrf", bytes: 32), createdAt: now,
                                    expiresAt: min(token.expiresAt ?? now.addingTimeInterval(Self.lifetime), now.addingTimeInterval(Self.lifetime)))
            try await session.pruneWebSessions(now: now)
            try await session.insertWebSession(record)
            return record
        }
        return (cookie, session)
    }

    /// Ends a browser session. One opened by a sign-in through the provider ends with the session token it
    /// stands for, as `gatehouse logout` ends the CLI's: nothing signed in by it counts any more (Slack clicks
    /// included), audited `identity.signed_out`. One opened with an API token ends alone: the token is the
    /// admin's to revoke.
    public func signOut(cookie: String, caller: Caller) async throws {
        let hash = TokenSecret.hash(cookie)
        try await context.write(as: caller) { session, _, now in
            guard let web = try await session.webSession(idHash: hash), web.principal == caller.principal else { return }
            guard let token = try await session.token(id: web.tokenId), token.kind == .session else {
                return try await session.deleteWebSession(idHash: hash)
            }
            try await session.revokeToken(id: token.id, by: caller.principal, at: now)
            try await session.deleteWebSessions(tokenId: token.id)
            try await session.appendAudit([AuditEntry(actor: caller.principal, action: .signedOut, subject: token.id,
                                                      details: ["principal": caller.principal, "via": "web"])], at: now)
        }
    }
}
