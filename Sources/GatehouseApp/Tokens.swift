import Foundation
import GatehouseCore
import GatehouseStore

/// API tokens: the bootstrap admin, authentication, and the admin's create, list and revoke.
public struct Tokens: Sendable {
    let context: AppContext

    init(_ context: AppContext) { self.context = context }

    public static let bootstrapAdminName = "admin"

    /// What a start found of the bootstrap admin.
    public enum BootstrapAdmin: Sendable, Equatable {
        /// Created now from `GATEHOUSE_ADMIN_TOKEN`.
        case created
        /// Present and live, with this value.
        case present
        /// Present, but `GATEHOUSE_ADMIN_TOKEN` is another value than the first start's (which alone counts).
        case otherValue
        /// Revoked (by whom, when): `GATEHOUSE_ADMIN_TOKEN` no longer works.
        case revoked(by: String, at: Date)
    }

    /// On first start, `GATEHOUSE_ADMIN_TOKEN` becomes the token of the built-in `admin` principal.
    /// Later starts leave the stored admin alone, and say when the variable no longer works.
    public func bootstrapAdmin(token: String) async throws -> BootstrapAdmin {
        guard token.count >= 16 else {
            throw GatehouseError(.invalid, "admin_token_too_short", "GATEHOUSE_ADMIN_TOKEN must be at least 16 characters; generate one with `openssl rand -hex 24`", field: "GATEHOUSE_ADMIN_TOKEN")
        }
        let clock = context.clock
        return try await context.store.write { session in
            let now = clock.now()
            if let (existing, hash) = try await session.bootstrapAdminToken() {
                if let at = existing.revokedAt { return .revoked(by: existing.revokedBy ?? "unknown", at: at) }
                return TokenSecret.constantTimeEqual(hash, TokenSecret.hash(token)) ? .present : .otherValue
            }
            let record = TokenRecord(id: Identifier.make("tok"), principal: Self.bootstrapAdminName, description: "bootstrap admin (GATEHOUSE_ADMIN_TOKEN)",
                                     isBootstrapAdmin: true, createdAt: now, createdBy: "system", revokedAt: nil)
            try await session.insertToken(record, hash: TokenSecret.hash(token))
            try await session.appendAudit([AuditEntry(actor: "system", action: .tokenCreated, subject: record.id,
                                                      details: ["principal": record.principal, "admin": "true"])], at: now)
            return .created
        }
    }

    public func authenticate(bearer token: String?) async throws -> Caller {
        // Signing in is a way to a token only where the policy names an identity provider.
        let signIn = context.policies.policy.identity.oidc != nil
        guard let token, !token.isEmpty else {
            throw GatehouseError(.unauthorized, ErrorCode.missingToken, "no token: send `Authorization: Bearer <token>` (set GATEHOUSE_TOKEN for the CLI\(signIn ? ", or run `gatehouse login`" : ""))")
        }
        let unknown = "the token is unknown or revoked; " + (signIn ? "sign in again (`gatehouse login`) or ask an admin for a new service token"
                                                               : "ask an admin for a new one (`gatehouse token create`)")
        let store = context.store
        guard token.utf8.count <= 256, let record = try await context.unavailableOnFailure({ try await store.liveToken(hash: TokenSecret.hash(token)) }) else {
            throw GatehouseError(.unauthorized, ErrorCode.invalidToken, unknown)
        }
        // A Slack link stands only behind clicks Slack signed; it is never a bearer token.
        guard record.kind != .slack else {
            throw GatehouseError(.unauthorized, ErrorCode.invalidToken, unknown)
        }
        noteSession(record)
        let policy = context.policies.policy
        if let refusal = Self.refusal(for: record, policy: policy, now: context.clock.now()) { throw refusal }
        guard let caller = Self.caller(for: record, policy: policy, now: context.clock.now()) else {
            throw GatehouseError(.unauthorized, ErrorCode.principalRemoved, "the token belongs to \(record.principal), who is no longer in the policy")
        }
        return caller
    }

    /// A live session names a person and the groups the provider gave them: the running policy
    /// knows them from now on (on every instance, the next sweep loads them from the store too).
    func noteSession(_ record: TokenRecord, fresh: Bool = false) {
        guard record.kind == .session, record.revokedAt == nil, let expiresAt = record.expiresAt, expiresAt > context.clock.now() else { return }
        context.policies.see(record.principal, PolicyHolder.Person(groups: record.groups ?? [], signedInAt: record.createdAt), fresh: fresh)
    }

    /// The caller a live token stands for under `policy`, or nil when the token is revoked or
    /// expired, its principal left the policy, it is a person's API token while people sign in
    /// through the provider, or it is the bootstrap admin's and that is switched off. Every path
    /// that trusts a token (authentication, web sessions, the re-check inside a write, long polls) asks this.
    static func caller(for record: TokenRecord, policy: Policy, now: Date) -> Caller? {
        refusal(for: record, policy: policy, now: now) == nil
            ? Caller(principal: record.principal, isAdmin: record.isBootstrapAdmin || policy.isAdmin(record.principal), tokenId: record.id)
            : nil
    }

    static func refusal(for record: TokenRecord, policy: Policy, now: Date) -> GatehouseError? {
        guard record.revokedAt == nil else {
            return GatehouseError(.unauthorized, ErrorCode.invalidToken, "the token was revoked; sign in again or ask an admin for a new one")
        }
        if let expiresAt = record.expiresAt, expiresAt <= now {
            return GatehouseError(.unauthorized, ErrorCode.sessionExpired, "the session ended at \(expiresAt.rfc3339); sign in again (`gatehouse login`, or the web inbox)")
        }
        if record.isBootstrapAdmin {
            return policy.identity.bootstrapAdmin ? nil
                : GatehouseError(.unauthorized, ErrorCode.invalidToken, "the bootstrap admin token is switched off (`identity.bootstrap_admin: disabled`); admins sign in through the identity provider")
        }
        guard let entry = policy.principals[record.principal] else {
            return GatehouseError(.unauthorized, ErrorCode.principalRemoved, "the token belongs to \(record.principal), who is no longer in the policy")
        }
        if record.kind == .session, entry.kind == .service || policy.identity.oidc == nil {
            return GatehouseError(.unauthorized, ErrorCode.invalidToken, entry.kind == .service
                                  ? "\(record.principal) is a service account in the policy; a sign-in session cannot act as it"
                                  : "sign-in through an identity provider is switched off; sign in with a token")
        }
        if record.kind == .slack, entry.kind == .service {
            return GatehouseError(.unauthorized, ErrorCode.invalidToken, "\(record.principal) is a service account in the policy; a Slack account cannot act as it")
        }
        if record.kind == .api, entry.kind == .user, policy.identity.oidc != nil {
            return GatehouseError(.unauthorized, ErrorCode.humanTokenRefused, "people sign in through the identity provider (`gatehouse login`, or the web inbox); API tokens are for service accounts only")
        }
        return nil
    }

    public func create(caller: Caller, principal: String, description: String?) async throws -> (TokenRecord, String) {
        try context.requireAdmin(caller, "create tokens")
        let policy = context.policies.policy
        let filePolicy = context.policies.filePolicy
        guard PolicyLoader.isValidName(principal) else {
            throw GatehouseError.invalid("principal", "invalid_name", "that is not a principal name: \(PolicyLoader.nameRule)")
        }
        guard let entry = filePolicy.principals[principal] else {
            if policy.identity.oidc != nil {
                throw GatehouseError(.forbidden, ErrorCode.humanTokenRefused, "'\(principal.prefix(80))' is not a service account in the policy; people sign in through the identity provider (`gatehouse login`, or the web inbox), and tokens are only for principals with `kind: service`", field: "principal")
            }
            let known = filePolicy.principals.keys.sorted().joined(separator: ", ")
            throw GatehouseError(.notFound, "unknown_principal", "'\(principal)' is not a principal in the policy; known principals: \(known)", field: "principal")
        }
        if entry.kind == .user, policy.identity.oidc != nil {
            throw GatehouseError(.forbidden, ErrorCode.humanTokenRefused, "\(principal) is a person, and people sign in through the identity provider (`gatehouse login`, or the web inbox); tokens are only for principals with `kind: service`", field: "principal")
        }
        if let description, description.utf8.count > 256 {
            throw GatehouseError.unprocessable("description", "description_too_long", "the description is longer than 256 bytes")
        }
        if let description { try TextRules.check(description, field: "description") }
        let secret = TokenSecret.generate()
        let record = try await context.write(as: caller) { session, _, now in
            let record = TokenRecord(id: Identifier.make("tok"), principal: principal, description: description, isBootstrapAdmin: false,
                                     createdAt: now, createdBy: caller.principal, revokedAt: nil)
            try await session.insertToken(record, hash: TokenSecret.hash(secret))
            try await session.appendAudit([AuditEntry(actor: caller.principal, action: .tokenCreated, subject: record.id,
                                                      details: ["principal": principal])], at: now)
            return record
        }
        return (record, secret)
    }

    /// Refuses to end the last credentials that let anyone administer Gatehouse: nobody could create
    /// a token or reload the policy afterwards (a restart would not help: the bootstrap token is
    /// created only once).
    static func refuseLastAdminLockOut(ending ids: Set<String>, session: StoreSession, policy: Policy, now: Date) async throws {
        // With a provider whose groups make admins, an admin can always sign in again.
        if let oidc = policy.identity.oidc, !oidc.mappedGroups.isDisjoint(with: policy.adminGroups) { return }
        // A Slack link only decides requests: it administers nothing.
        let live = try await session.tokens(includeRevoked: false).filter { $0.kind != .slack }
        let ended = live.filter { ids.contains($0.id) }
        guard ended.contains(where: { caller(for: $0, policy: policy, now: now)?.isAdmin == true }) else { return }
        let remaining = live.filter { !ids.contains($0.id) && caller(for: $0, policy: policy, now: now)?.isAdmin == true }
        guard remaining.isEmpty else { return }
        throw GatehouseError(.conflict, "last_admin_credential",
                             "this would end the last credential an admin can use, and nobody could administer Gatehouse afterwards; create another admin token (or sign in as an admin through the identity provider) first")
    }

    /// The token (or session) the caller authenticated with.
    public func record(of caller: Caller) async throws -> TokenRecord? {
        try await context.read { try await $0.token(id: caller.tokenId) }
    }

    public func list(caller: Caller, includeRevoked: Bool) async throws -> [TokenRecord] {
        try context.requireAdmin(caller, "list tokens")
        return try await context.read { try await $0.tokens(includeRevoked: includeRevoked) }
    }

    public func revoke(caller: Caller, id: String) async throws -> TokenRecord {
        try context.requireAdmin(caller, "revoke tokens")
        return try await context.write(as: caller) { session, policy, now in
            guard var record = try await session.token(id: id) else {
                throw GatehouseError(.notFound, "token_not_found", "no token with id \(id); list them with `gatehouse token list`")
            }
            guard record.revokedAt == nil else {
                throw GatehouseError(.conflict, "token_revoked", "token \(id) is already revoked")
            }
            try await Self.refuseLastAdminLockOut(ending: [id], session: session, policy: policy, now: now)
            try await session.revokeToken(id: id, by: caller.principal, at: now)
            try await session.appendAudit([AuditEntry(actor: caller.principal, action: .tokenRevoked, subject: id,
                                                      details: ["principal": record.principal])], at: now)
            record.revokedAt = now
            return record
        }
    }
}
