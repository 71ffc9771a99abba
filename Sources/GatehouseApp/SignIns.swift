import Foundation
import GatehouseCore
import GatehouseStore

/// Sign-in through the identity provider, as far as Gatehouse's own state goes: the sign-ins under
/// way (state, nonce, PKCE verifier, each used once), the binding of a provider identity to one
/// principal, the short-lived session Gatehouse issues, sign-out, and an admin ending someone's
/// sessions. Talking to the provider (discovery, the code exchange, verifying the ID token's
/// signature) is the transport's job; this type gets the verified claims.
public struct SignIns: Sendable {
    let context: AppContext
    let tokens: Tokens
    let webSessions: WebSessions

    init(_ context: AppContext, tokens: Tokens, webSessions: WebSessions) {
        self.context = context
        self.tokens = tokens
        self.webSessions = webSessions
    }

    /// How long a person has to come back from the provider.
    public static let pendingLifetime: TimeInterval = 600
    /// At most this many sign-ins under way at once (each lives 10 minutes); a new one pushes out the oldest.
    public static let pendingCap = 10_000

    public var settings: OIDCSettings? { context.policies.policy.identity.oidc }

    func requireProvider() throws -> OIDCSettings {
        guard let settings else {
            throw GatehouseError(.notFound, "no_identity_provider", "this Gatehouse has no identity provider (`identity.oidc` in the policy); sign in with a token")
        }
        return settings
    }

    /// What the transport sends the person to the provider with.
    public struct Started: Sendable {
        public var state: String
        public var nonce: String
        public var codeChallenge: String
        public var redirectURI: String
        /// For the CLI: the secret only the terminal that started holds; finishing needs it.
        public var clientSecret: String?
        public var expiresAt: Date
    }

    /// Starts a sign-in. For the CLI the redirect is the terminal's own loopback listener
    /// (RFC 8252); for the browser it is `redirect_uri` from the policy.
    public func begin(purpose: PendingSignIn.Purpose, loopbackRedirect: String? = nil) async throws -> Started {
        let settings = try requireProvider()
        let redirect: String
        switch purpose {
        case .web: redirect = settings.redirectURI
        case .cli:
            guard let loopbackRedirect, Self.isLoopbackRedirect(loopbackRedirect) else {
                throw GatehouseError.invalid("redirect_uri", "bad_redirect_uri", "the CLI's redirect_uri must be http://127.0.0.1:PORT/callback (RFC 8252 loopback)")
            }
            redirect = loopbackRedirect
        case .device:
            throw GatehouseError.invalid("purpose", "device_via_begin", "a device sign-in starts with `beginDevice`")
        }
        let state = Identifier.make("st", bytes: 24)
        let nonce = Identifier.make("n", bytes: 24)
        let verifier = PKCE.makeVerifier()
        let clientSecret = purpose == .cli ? Identifier.make("ghl", bytes: 24) : nil
        let expiresAt = try await storePending(lifetime: Self.pendingLifetime) { now, expiresAt in
            PendingSignIn(stateHash: TokenSecret.hash(state), nonce: nonce, verifier: verifier, purpose: purpose, redirectURI: redirect,
                          clientHash: clientSecret.map(TokenSecret.hash), createdAt: now, expiresAt: expiresAt)
        }
        return Started(state: state, nonce: nonce, codeChallenge: PKCE.challenge(for: verifier), redirectURI: redirect,
                       clientSecret: clientSecret, expiresAt: expiresAt)
    }

    /// Exactly `http://127.0.0.1:PORT/callback` with a port a listener can have (1-65535, written plainly): the
    /// address the CLI listens on, in one spelling (no `%63allback`, no trailing slash).
    static func isLoopbackRedirect(_ text: String) -> Bool {
        let prefix = "http://127.0.0.1:", suffix = "/callback"
        guard text.hasPrefix(prefix), text.hasSuffix(suffix), text.utf8.count > prefix.utf8.count + suffix.utf8.count else { return false }
        let port = text.dropFirst(prefix.count).dropLast(suffix.count)
        guard port.count <= 5, port.first != "0", port.allSatisfy({ $0.isASCII && $0.isNumber }), let number = Int(port) else { return false }
        return (1...65535).contains(number)
    }

    /// The sign-in a callback belongs to, taken so it cannot be used again. Refuses a state that is
    /// unknown, already used or too old, and a CLI finish without the terminal's secret.
    public func take(state: String, purpose: PendingSignIn.Purpose, clientSecret: String? = nil) async throws -> PendingSignIn {
        _ = try requireProvider()
        guard state.utf8.count <= 128 else { throw Self.unknownState() }
        let clock = context.clock
        // Checked before it is taken: someone who only saw the state (in a URL, a log) cannot cancel the sign-in.
        let stateHash = TokenSecret.hash(state)
        let now = clock.now()
        return try await context.write { session in
            guard let pending = try await session.pendingSignIn(stateHash: stateHash), pending.expiresAt > now, pending.purpose == purpose else {
                throw Self.unknownState()
            }
            if purpose == .cli {
                guard let clientSecret, let expected = pending.clientHash,
                      TokenSecret.constantTimeEqual(TokenSecret.hash(clientSecret), expected) else {
                    throw GatehouseError(.unauthorized, ErrorCode.signInRefused, "this sign-in was started by another terminal; run `gatehouse login` again")
                }
            }
            try await session.deletePendingSignIn(stateHash: stateHash)
            return pending
        }
    }

    static func unknownState() -> GatehouseError {
        GatehouseError(.unauthorized, ErrorCode.signInRefused, "this sign-in is unknown, was already used, or took longer than 10 minutes; start again from the sign-in page or `gatehouse login`")
    }

    /// Remembers a device sign-in the provider started (RFC 8628): the provider's device code stays
    /// on the server; the CLI polls with a secret of its own. Returns that secret.
    public func beginDevice(deviceCode: String, expiresIn: TimeInterval) async throws -> (secret: String, expiresAt: Date) {
        _ = try requireProvider()
        let secret = Identifier.make("ghd", bytes: 24)
        let expiresAt = try await storePending(lifetime: min(max(expiresIn, 60), Self.pendingLifetime)) { now, expiresAt in
            PendingSignIn(stateHash: TokenSecret.hash(secret), nonce: "", verifier: deviceCode, purpose: .device, redirectURI: "",
                          clientHash: nil, createdAt: now, expiresAt: expiresAt)
        }
        return (secret, expiresAt)
    }

    /// Stores a sign-in under way, after pruning the old ones. Starting a sign-in needs no credentials:
    /// a flood of starts is bounded, not stored without end.
    func storePending(lifetime: TimeInterval, cap: Int = SignIns.pendingCap,
                      _ make: @escaping @Sendable (Date, Date) -> PendingSignIn) async throws -> Date {
        let clock = context.clock
        return try await context.write { session in
            let now = clock.now()
            try await session.prunePendingSignIns(now: now)
            // At the cap the oldest sign-ins under way give way, rather than the new one being refused: a flood
            // of starts (no credentials needed) must not keep everyone from signing in. Pushing a person's
            // sign-in out takes as many new ones as the cap within the minute or so they spend at the provider.
            let under = try await session.pendingSignInCount()
            if under >= cap { try await session.deleteOldestPendingSignIns(under - cap + 1) }
            let pending = make(now, now.addingTimeInterval(lifetime))
            try await session.insertPendingSignIn(pending)
            return pending.expiresAt
        }
    }

    /// The device sign-in a poll names, still under way.
    public func pendingDevice(secret: String) async throws -> PendingSignIn {
        _ = try requireProvider()
        guard secret.utf8.count <= 128 else { throw Self.unknownState() }
        let hash = TokenSecret.hash(secret)
        let pending = try await context.read { try await $0.pendingSignIn(stateHash: hash) }
        guard let pending, pending.purpose == .device, pending.expiresAt > context.clock.now() else { throw Self.unknownState() }
        return pending
    }

    /// A device sign-in is over (signed in, refused or expired): its secret stops working.
    public func endDevice(secret: String) async throws {
        let hash = TokenSecret.hash(secret)
        try await context.write { session in try await session.deletePendingSignIn(stateHash: hash) }
    }

    /// A session issued for a verified person.
    public struct Established: Sendable {
        public var token: TokenRecord
        /// The session token's secret (the CLI keeps it; the browser gets a cookie instead).
        public var secret: String
        public var caller: Caller
        /// The policy groups the sign-in gives.
        public var groups: [String]
    }

    /// Turns verified claims into a Gatehouse session: binds (or finds) the person's principal by
    /// issuer + subject, maps their groups, issues a session bounded by `session_max`, and audits it.
    /// Refusals are audited too and leave nothing behind.
    public func establish(claims: IDTokenClaims, purpose: PendingSignIn.Purpose, sourceIP: String?) async throws -> Established {
        let settings = try requireProvider()
        let policy = context.policies.filePolicy
        let person: ProviderPerson
        switch SignInRules.person(from: claims, settings: settings, policy: policy) {
        case .success(let found): person = found
        case .failure(let refusal):
            await refuse(refusal, issuer: claims.issuer, subject: claims.subject, sourceIP: sourceIP)
            throw GatehouseError(.forbidden, ErrorCode.signInRefused, refusal.message)
        }
        let secret = TokenSecret.generate()
        let clock = context.clock
        let outcome: Result<(TokenRecord, [String]), SignInRefusal> = try await context.write { session in
            let now = clock.now()
            var principal = person.principal
            let bound = try await session.identity(issuer: person.issuer, subject: person.subject)
            if let bound {
                // The provider's name may have changed; the person keeps the principal they were bound to.
                principal = bound.principal
            } else if let other = try await session.identity(principal: principal) {
                let refusal = SignInRefusal("name_taken", "the name \(principal) already belongs to another account at \(other.issuer); ask an admin (two accounts cannot share one Gatehouse name)")
                try await session.appendAudit([Self.refusalEntry(refusal, issuer: person.issuer, subject: person.subject, sourceIP: sourceIP)], at: now)
                return .failure(refusal)
            }
            // Checked for the name the person is bound to, with the groups that name has now.
            let groups: [String]
            switch SignInRules.admit(principal: principal, providerGroups: person.providerGroups, settings: settings, policy: policy,
                                     newBinding: bound == nil) {
            case .success(let admitted): groups = admitted
            case .failure(let refusal):
                try await session.appendAudit([Self.refusalEntry(refusal, issuer: person.issuer, subject: person.subject, sourceIP: sourceIP)], at: now)
                return .failure(refusal)
            }
            if bound == nil {
                try await session.insertIdentity(IdentityBinding(issuer: person.issuer, subject: person.subject, principal: principal,
                                                                 email: person.email, groups: person.providerGroups, firstSeen: now, lastSeen: now))
            } else {
                try await session.touchIdentity(issuer: person.issuer, subject: person.subject, email: person.email, groups: person.providerGroups, at: now)
            }
            // The provider's own groups are stored; policy groups are worked out from them whenever needed.
            let record = TokenRecord(id: Identifier.make("ses"), principal: principal, description: "\(purpose.rawValue) sign-in", isBootstrapAdmin: false,
                                     createdAt: now, createdBy: principal, revokedAt: nil, kind: .session,
                                     expiresAt: now.addingTimeInterval(TimeInterval(settings.sessionMax.seconds)), groups: person.providerGroups,
                                     issuer: person.issuer, subject: person.subject)
            try await session.insertToken(record, hash: TokenSecret.hash(secret))
            try await session.appendAudit([AuditEntry(actor: principal, action: .signedIn, subject: record.id, details: AuditEntry.compact([
                "principal": principal, "issuer": person.issuer, "subject": person.subject, "via": purpose.rawValue,
                "groups": groups.joined(separator: ","), "provider_groups": person.providerGroups.prefix(50).joined(separator: ","),
                "expires_at": record.expiresAt?.rfc3339, "source_ip": sourceIP]))], at: now)
            return .success((record, groups))
        }
        switch outcome {
        case .failure(let refusal): throw GatehouseError(.forbidden, ErrorCode.signInRefused, refusal.message)
        case .success(let (record, groups)):
            tokens.noteSession(record, fresh: true)
            guard let caller = Tokens.caller(for: record, policy: context.policies.policy, now: clock.now()) else {
                throw GatehouseError(.forbidden, ErrorCode.signInRefused, "\(record.principal) cannot use Gatehouse under the running policy")
            }
            return Established(token: record, secret: secret, caller: caller, groups: groups)
        }
    }

    /// A browser session on a fresh sign-in.
    public func openWebSession(_ established: Established) async throws -> (cookie: String, session: WebSession) {
        try await webSessions.open(on: established.token, caller: established.caller)
    }

    /// Records a refused sign-in (a bad token, a person the policy does not know) with what is known of them.
    public func refuse(_ refusal: SignInRefusal, issuer: String?, subject: String?, sourceIP: String?) async {
        let clock = context.clock
        do {
            try await context.write { session in
                try await session.appendAudit([Self.refusalEntry(refusal, issuer: issuer, subject: subject, sourceIP: sourceIP)], at: clock.now())
            }
        } catch {
            context.logger.warning("could not audit a refused sign-in", metadata: ["error": "\(error)"])
        }
    }

    static func refusalEntry(_ refusal: SignInRefusal, issuer: String?, subject: String?, sourceIP: String?) -> AuditEntry {
        AuditEntry(actor: "system", action: .signInRefused, subject: subject ?? "unknown", details: AuditEntry.compact([
            "code": refusal.code, "reason": String(refusal.message.prefix(300)), "issuer": issuer, "source_ip": sourceIP]))
    }

    /// Ends the caller's own session (the CLI's `logout`): the token is revoked, its browser sessions go with it.
    public func signOut(caller: Caller) async throws {
        try await context.write(as: caller) { session, _, now in
            guard let token = try await session.token(id: caller.tokenId), token.kind == .session else {
                throw GatehouseError(.conflict, "not_a_session", "this is an API token, not a sign-in; an admin revokes API tokens with `gatehouse token revoke`")
            }
            try await session.revokeToken(id: token.id, by: caller.principal, at: now)
            try await session.deleteWebSessions(tokenId: token.id)
            try await session.appendAudit([AuditEntry(actor: caller.principal, action: .signedOut, subject: token.id,
                                                      details: ["principal": caller.principal])], at: now)
        }
    }

    /// Live sessions, for admins.
    public func sessions(caller: Caller) async throws -> [TokenRecord] {
        try context.requireAdmin(caller, "list sessions")
        let now = context.clock.now()
        return try await context.read { try await $0.liveSessions(now: now) }
    }

    /// Ends every token and session of a principal, for good: signing in again makes a new session,
    /// nothing old comes back. Returns how many were ended.
    public func revokeAll(caller: Caller, principal: String) async throws -> Int {
        try context.requireAdmin(caller, "end other people's sessions")
        guard PolicyLoader.isValidName(principal) else {
            throw GatehouseError.invalid("principal", "invalid_name", "'\(principal.prefix(80))' is not a principal name: \(PolicyLoader.nameRule)")
        }
        let ended = try await context.write(as: caller) { session, policy, now in
            let live = try await session.liveTokens(principal: principal).filter { !$0.isBootstrapAdmin }
            // A name that matches no one (a typo) is said as such rather than reported as 0 ended.
            if live.isEmpty, policy.principals[principal] == nil, principal != Tokens.bootstrapAdminName {
                throw GatehouseError(.notFound, "unknown_principal", "'\(principal)' is not a principal in the policy (nor a person signed in through the provider) and holds no live token or session; nothing was ended", field: "name")
            }
            try await Tokens.refuseLastAdminLockOut(ending: Set(live.map(\.id)), session: session, policy: policy, now: now)
            return try await Self.endEverything(of: principal, by: caller.principal, reason: "revoked by an admin", session: session, now: now)
        }
        return ended
    }

    static func endEverything(of principal: String, by actor: String, reason: String, session: StoreSession, now: Date) async throws -> Int {
        let live = try await session.liveTokens(principal: principal).filter { !$0.isBootstrapAdmin }
        for token in live {
            try await session.revokeToken(id: token.id, by: actor, at: now)
            try await session.deleteWebSessions(tokenId: token.id)
        }
        try await session.appendAudit([AuditEntry(actor: actor, action: .sessionsRevoked, subject: principal, details: [
            "principal": principal, "ended": "\(live.count)", "reason": reason])], at: now)
        return live.count
    }

    /// Loads the people the provider has vouched for, with the groups of their latest sign-in, into
    /// the running policy (at start and on every sweep, so other instances' sign-ins are seen here too).
    public func refreshPeople() async throws {
        let known = try await context.read { try await $0.identities() }
        var people: [String: PolicyHolder.Person] = [:]
        for identity in known {
            people[identity.principal] = PolicyHolder.Person(groups: identity.groups, signedInAt: identity.lastSeen)
        }
        context.policies.replacePeople(people)
    }

    /// Principals that left the policy file lose their API tokens and their grants for good: putting the
    /// name back revives neither. People the identity provider vouches for are not in the file and keep
    /// theirs (the provider's groups decide what they may do). Runs at start and after every accepted reload.
    public func endRemovedPrincipals(actor: String) async throws -> [String] {
        let policy = context.policies.filePolicy
        let clock = context.clock
        return try await context.write { session in
            let now = clock.now()
            let orphans = Set(try await session.tokens(includeRevoked: false)
                .filter { $0.kind == .api && !$0.isBootstrapAdmin && policy.principals[$0.principal] == nil }.map(\.principal))
            for principal in orphans.sorted() {
                _ = try await Self.endEverything(of: principal, by: actor, reason: "removed from the policy", session: session, now: now)
            }
            let people = Set(try await session.identities().map(\.principal))
            let holders = try await session.principalsHoldingGrants(now: now).filter { policy.principals[$0] == nil && !people.contains($0) }
            var entries: [AuditEntry] = []
            for principal in holders.sorted() {
                entries += try await GrantDesk.revokeInForce(of: principal, by: actor, reason: "\(principal) was removed from the policy",
                                                             session: session, now: now).entries
            }
            if !entries.isEmpty { try await session.appendAudit(entries, at: now) }
            return orphans.union(holders).sorted()
        }
    }
}
