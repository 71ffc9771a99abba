import Crypto
import Foundation
import GatehouseCore
import GatehouseStore

/// Web inbox sessions: a browser signs in once with a Gatehouse token and then carries a random
/// session id in an HttpOnly cookie. The store keeps only the id's SHA-256, the token it stands
/// for (so revoking the token ends the session) and the session's CSRF secret.
extension AccessService {
    public static let webSessionLifetime: TimeInterval = 12 * 3600

    /// Signs in with a token; returns the cookie value and the session.
    public func signIn(token: String, sourceIP: String?) async throws -> (cookie: String, session: WebSession, caller: Caller) {
        let caller: Caller
        do {
            caller = try await authenticate(bearer: token.trimmingCharacters(in: .whitespacesAndNewlines))
        } catch let error as GatehouseError where error.kind == .unauthorized {
            throw GatehouseError(.unauthorized, error.code, "sign-in failed: \(error.message)")
        }
        let cookie = Identifier.make("ghw", bytes: 32)
        let session = try await write(as: caller) { session, _, now in
            let record = WebSession(idHash: TokenSecret.hash(cookie), tokenId: caller.tokenId, principal: caller.principal,
                                    csrf: Identifier.make("csrf", bytes: 32), createdAt: now,
                                    expiresAt: now.addingTimeInterval(Self.webSessionLifetime))
            try await session.pruneWebSessions(now: now)
            try await session.insertWebSession(record)
            try await session.appendAudit([AuditEntry(actor: caller.principal, action: "web.signed_in", subject: caller.tokenId,
                                                      details: Self.compact(["principal": caller.principal, "source_ip": sourceIP]))], at: now)
            return record
        }
        return (cookie, session, caller)
    }

    /// The caller behind a session cookie, or nil when the cookie is unknown, expired, or its
    /// token was revoked or its principal removed from the policy.
    public func webCaller(cookie: String) async throws -> (Caller, WebSession)? {
        guard cookie.utf8.count <= 128 else { return nil }
        let hash = TokenSecret.hash(cookie)
        let found = try await read { session -> (WebSession, TokenRecord)? in
            guard let web = try await session.webSession(idHash: hash), let token = try await session.token(id: web.tokenId) else { return nil }
            return (web, token)
        }
        guard let (web, token) = found, web.expiresAt > clock.now(), token.revokedAt == nil else { return nil }
        let policy = policies.policy
        if token.isBootstrapAdmin { return (Caller(principal: token.principal, isAdmin: true, tokenId: token.id), web) }
        guard policy.principals[token.principal] != nil else { return nil }
        return (Caller(principal: token.principal, isAdmin: policy.isAdmin(token.principal), tokenId: token.id), web)
    }

    public func signOut(cookie: String) async throws {
        let hash = TokenSecret.hash(cookie)
        try await write { session in try await session.deleteWebSession(idHash: hash) }
    }

    /// The requester's latest requests, for an approver deciding one of them.
    public func history(of requester: String, limit: Int) async throws -> [AccessRequest] {
        try await read { try await $0.requests(.init(requester: requester, limit: limit)) }
    }

    /// Anti-spam flags of a principal (blocked, throttled), for the request page.
    public func flags(of principal: String) async throws -> PrincipalFlags? {
        try await read { try await $0.principalFlags(principal) }
    }

    /// Whether the caller may decide this request (the page shows the buttons only then).
    public func mayDecide(_ caller: Caller, _ request: AccessRequest) -> Bool {
        request.requester != caller.principal && canDecide(caller.principal, request, policy: policies.policy)
    }
}

/// Constant-time comparison of two secrets.
func secretsEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    guard x.count == y.count else { return false }
    return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
}
