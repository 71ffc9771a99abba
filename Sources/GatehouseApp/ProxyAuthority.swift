import Foundation
import GatehouseCore
import GatehouseGuard
import GatehouseStore

/// What the guard proxy asks the application: may this person open a session, may this statement
/// run, is the session's access still there. Decisions use the same core as `POST /v1/check`.
public struct ProxyAuthority: Sendable {
    let context: AppContext
    let tokens: Tokens
    let checks: AccessChecks

    init(_ context: AppContext, tokens: Tokens, checks: AccessChecks) {
        self.context = context
        self.tokens = tokens
        self.checks = checks
    }

    /// A signed-in proxy session: who, on what, through which token.
    public struct ProxyIdentity: Sendable {
        public var caller: Caller
        public var resource: String
        public var sessionID: String
        public var client: String

        public init(caller: Caller, resource: String, sessionID: String, client: String) {
            self.caller = caller
            self.resource = resource
            self.sessionID = sessionID
            self.client = client
        }
    }

    /// The access a proxy session has right now: its principal's open grants on the resource, or why
    /// it has none.
    public enum ProxyAccess: Sendable, Equatable {
        case granted([Grant])
        case ended(String)
    }

    /// Signs a proxy client in: the password is a Gatehouse token of the principal named as the
    /// database user, who must hold an active grant on the resource. Writes `proxy.session.started`.
    /// `admit` may refuse the principal a session (a cap the proxy keeps), with the reason.
    public func signIn(token: String, user: String, resource: String, client: String,
                       admit: @Sendable (String) -> String? = { _ in nil }) async throws -> (ProxyIdentity, [Grant]) {
        let caller: Caller
        do {
            caller = try await tokens.authenticate(bearer: token)
        } catch let error as GatehouseError where error.kind == .unauthorized {
            throw GatehouseError(.unauthorized, "invalid_token", "password authentication failed for user \"\(user)\": the password must be a live Gatehouse token of \(user) (`gatehouse token create \(user)` by an admin)")
        }
        guard caller.principal == user else {
            throw GatehouseError(.unauthorized, "wrong_user", "password authentication failed for user \"\(user)\": the token belongs to another principal; connect as that principal's name")
        }
        let identity = ProxyIdentity(caller: caller, resource: resource, sessionID: Identifier.make("ses"), client: client)
        if let refusal = admit(user) {
            try await context.write { session in
                try await session.appendAudit([AuditEntry(actor: user, action: .proxySessionRefused, subject: identity.sessionID, resource: resource,
                                                          details: ["principal": user, "client": client, "reason": refusal])], at: self.context.clock.now())
            }
            throw GatehouseError(.tooManyRequests, "too_many_sessions", refusal)
        }
        let grants: [Grant] = try await context.write(as: caller) { session, policy, now in
            let access = try await Self.access(session, policy: policy, principal: user, resource: resource, now: now)
            guard case .granted(let grants) = access else {
                if case .ended(let why) = access {
                    try await session.appendAudit([AuditEntry(actor: user, action: .proxySessionRefused, subject: identity.sessionID, resource: resource,
                                                              details: ["principal": user, "client": client, "reason": why])], at: now)
                }
                return []
            }
            try await session.appendAudit([AuditEntry(actor: user, action: .proxySessionStarted, subject: identity.sessionID, resource: resource,
                                                      details: ["principal": user, "client": client,
                                                                "grants": grants.map(\.id).joined(separator: ",")])], at: now)
            return grants
        }
        guard !grants.isEmpty else {
            let policy = context.policies.policy
            let role = policy.resources[resource]?.roles.values
                .filter { policy.isMember(user, ofAny: $0.requesters) }.min { ($0.allows, $0.name) < ($1.allows, $1.name) }
            let ask = role.map { " Ask for one: gatehouse request \(resource) --role \($0.name) --for \($0.maxDuration) --reason \"...\"" } ?? ""
            throw GatehouseError(.forbidden, "no_grant", "\(user) has no active grant on \(resource), so no session can start.\(ask)")
        }
        return (identity, grants)
    }

    /// The current access of a session's principal on its resource; the proxy's watcher calls this
    /// about twice a second per principal and resource, and ends sessions whose access has ended.
    public func access(_ identity: ProxyIdentity) async throws -> ProxyAccess {
        let context = self.context
        return try await context.read { session in
            guard let token = try await session.token(id: identity.caller.tokenId) else {
                return .ended("the token this session signed in with is no longer known (it expired and was removed); sign in again")
            }
            guard token.revokedAt == nil else { return .ended("the token this session signed in with was revoked") }
            if let expiresAt = token.expiresAt, expiresAt <= context.clock.now() {
                return .ended("the token this session signed in with expired; sign in again (`gatehouse login`)")
            }
            return try await Self.access(session, policy: context.policies.policy, principal: identity.caller.principal,
                                         resource: identity.resource, now: context.clock.now())
        }
    }

    static func access(_ session: StoreSession, policy: Policy, principal: String, resource: String, now: Date) async throws -> ProxyAccess {
        guard policy.principals[principal] != nil else { return .ended("\(principal) is no longer in the policy") }
        guard policy.resources[resource] != nil else { return .ended("resource \(resource) is no longer in the policy") }
        if try await session.principalFlags(principal)?.isBlocked == true {
            return .ended("\(principal) is blocked; an admin can lift it with `gatehouse unblock \(principal)`")
        }
        let grants = try await session.openGrants(principal: principal, resource: resource).filter { $0.isActive(at: now) }
        return grants.isEmpty ? .ended("\(principal) has no active grant on \(resource)") : .granted(grants)
    }

    /// Why a grant the session had is gone: expired, released, revoked (by whom) or used.
    public func endReason(grants: [Grant], principal: String, resource: String) async -> String {
        let now = context.clock.now()
        guard let latest = grants.max(by: { $0.expiresAt < $1.expiresAt }) else { return "\(principal) has no active grant on \(resource)" }
        if latest.expiresAt <= now { return "the grant \(latest.id) on \(resource) expired" }
        guard let stored = try? await context.read({ try await $0.grant(id: latest.id) }), let end = stored.endReason else {
            return "\(principal) has no active grant on \(resource)"
        }
        let by = stored.endedBy.map { " by \($0)" } ?? ""
        let comment = stored.endComment.map { ": \($0)" } ?? ""
        return "the grant \(latest.id) on \(resource) was \(end.rawValue)\(by)\(comment)"
    }

    /// The application's clock: when grants are judged expired.
    public var now: Date { context.clock.now() }

    /// Decides a statement from the session's last known grants without touching the store, on the
    /// calling thread: only a statement already classified or short enough to classify here, below dangerous, allowed by a role grant, and not to be audited.
    /// Nil means "ask `proxyStatement`". Expiry is judged now; a revocation is seen within the
    /// watcher's interval.
    /// With `followsCalls` (a session that may write), a statement that calls a function by name is
    /// never decided here: what the function does is looked up first (`statement`).
    /// A session that is read-only on the database (`readOnlySession`) takes reads only here: a write is judged by
    /// `statement`, which refuses it with the advice to reconnect.
    public func fastAllow(_ identity: ProxyIdentity, text: String, grants: [Grant], audit: ProxySettings.StatementAudit, followsCalls: Bool = false,
                          readOnlySession: Bool = false, bound: Bool = false) -> Bool {
        guard audit != .all else { return false }
        let action = Action(kind: .sql, text: text)
        let policy = context.policies.policy
        guard let classification = context.actionGuard.classifyInline(action, settings: policy.guardSettings), classification.risk < .dangerous,
              !followsCalls || classification.calls.isEmpty, !readOnlySession || classification.risk == .read,
              !bound || classification.patternParameters.isEmpty else { return false }
        let decision = ActionCheck.decide(principal: identity.caller.principal, resource: identity.resource, action: action,
                                          classification: classification, policy: policy, grants: grants, now: context.clock.now())
        if case .allowByRole = decision { return true }
        return false
    }

    /// Follows function calls into the bodies `catalog` holds (one per database: function ids are).
    public func functionReach(catalog: any FunctionCatalog) -> FunctionReach {
        FunctionReach(catalog: catalog, actionGuard: context.actionGuard)
    }

    /// Decides one statement of a proxy session: nil to run it, else the message for the client.
    /// Refused and dangerous statements are audited (every statement with `audit: all`); a one-shot
    /// grant is used up in the same transaction. With `functions` (a session that may write), the
    /// statement is judged by what the functions it calls do as well; when their definitions cannot be
    /// read, it is refused.
    /// `readOnlySession`: the database session runs read-only (it started with read grants only), so a
    /// write a later grant would allow could not run in it: refused with the advice to reconnect, and a
    /// one-shot approval for it is left unused.
    /// `bound`: the values of the Bind being judged (the extended protocol), for parameters whose value decides what
    /// the statement does (`BoundValues`: a pattern, a setting's name, a WHERE found true for every row): the statement
    /// is judged with them written in as constants, which is what the database runs.
    public func statement(_ identity: ProxyIdentity, text: String, grants: [Grant], audit: ProxySettings.StatementAudit,
                          functions: FunctionReach? = nil, readOnlySession: Bool = false, bound: [BoundValues.Value]? = nil) async throws
        -> (refusal: (message: String, hint: String?)?, risk: RiskLevel) {
        // An empty query runs nothing and PostgreSQL answers it (EmptyQueryResponse): drivers send one to
        // ask whether a connection still works (pgjdbc's isValid). Not an action to judge or audit.
        if text.isEmpty { return (nil, .read) }
        let action = Action(kind: .sql, text: text)
        if let problem = action.problem { return ((problem, nil), .forbidden) }
        var classification = await checks.classify(action, for: identity.caller.principal)
        if let bound, !classification.patternParameters.isEmpty,
           let substitution = BoundValues.substitute(text, classification.patternParameters, bound) {
            // `DELETE FROM t WHERE v LIKE $1` with `%` bound deletes every row; `WHERE ($1::int IS NULL OR id = $1)`
            // with 5 bound, one; `current_setting($1)` reads the setting bound. The text with the values in is what
            // runs, and its answer stands when the values are written in exactly (`mayLower`); otherwise it only adds.
            let withValues = await checks.classify(Action(kind: .sql, text: substitution.text), for: identity.caller.principal)
            let known = Set(classification.findings.map(\.category))
            let marked = withValues.findings.map { finding -> Finding in
                guard !known.contains(finding.category) else { return finding }
                var finding = finding
                finding.detail = "with the values bound: " + finding.detail
                return finding
            }
            if substitution.mayLower {
                classification = ActionClassification(kind: .sql, findings: marked, statements: withValues.statements,
                                                      normalized: classification.normalized, calls: withValues.calls)
            } else if marked.contains(where: { !known.contains($0.category) }) {
                classification = ActionClassification(kind: .sql, findings: classification.findings + marked.filter { !known.contains($0.category) },
                                                      statements: classification.statements, normalized: classification.normalized,
                                                      calls: classification.calls)
            }
        }
        var reached: [String] = []
        if let functions, !classification.calls.isEmpty {
            do {
                let own = classification.findings.count
                classification = try await functions.judge(classification, settings: context.policies.policy.guardSettings,
                                                            for: identity.caller.principal)
                reached = classification.findings.dropFirst(own).filter { $0.level == classification.risk }.map(\.detail)
            } catch {
                let names = classification.calls.map { "\($0.qualifiedName)()" }.joined(separator: ", ")
                await refused(identity, what: "a call of \(names) whose definition could not be read (\(error)): \(AuditEntry.excerpt(text))")
                throw GatehouseError(.unavailable, "function_lookup_failed",
                                     "cannot read the definition of \(names) from the database's catalog, so what the call does cannot be judged (\(error)); try again, and if it persists ask an admin to check the proxy's connection to the database")
            }
        }
        if let setting = Self.unsafeSettingChange(classification) {
            await refused(identity, what: "a change of a setting the guard calls unsafe (\(setting)): \(AuditEntry.excerpt(text))")
            return (("gatehouse: \(setting): a change of a setting the guard calls unsafe is refused through the proxy (read-only defaults, the session's role, and client_encoding, standard_conforming_strings or backslash_quote, after which Gatehouse could no longer read statements as the database does)", "the proxy refuses every change of a setting the guard calls unsafe, and set_config() of PostgreSQL's own settings; connect to the database another way for such work"), classification.risk)
        }
        let expected = ActionCheck.decide(principal: identity.caller.principal, resource: identity.resource, action: action,
                                          classification: classification, policy: context.policies.policy, grants: grants, now: context.clock.now())
        if readOnlySession, classification.risk > .read, expected.grant != nil {
            await refused(identity, what: "a \(classification.risk.rawValue) statement in a session that is read-only on the database: \(AuditEntry.excerpt(text))")
            return (("gatehouse: this session started with read grants only and is read-only on the database, so this \(classification.risk.rawValue) statement cannot run in it; the grant that allows it (\(expected.grant?.id ?? "")) is left unused",
                     "reconnect: a new session starts with the grants you hold now"), classification.risk)
        }
        if audit != .all, classification.risk < .dangerous, case .allowByRole = expected {
            return (nil, classification.risk)
        }
        let scope: ActionAuditScope = audit == .all ? .all : .refusedAndDangerous
        let (_, decision, checked) = try await checks.checkAction(caller: identity.caller, resource: identity.resource, action: action, principal: nil,
                                                                  audit: scope, context: ["via": "proxy", "session": identity.sessionID],
                                                                  classification: classification)
        switch decision {
        case .allowByRole, .allowOnce:
            return (nil, checked.risk)
        case let .approvalRequired(commands, reason):
            return (("gatehouse: \(reason)\(Self.because(reached))", "ask for approval: " + commands.joined(separator: "  or  ")), checked.risk)
        case let .deny(reason):
            return (("gatehouse: \(reason)\(Self.because(reached))", nil), checked.risk)
        }
    }

    /// What the called functions' bodies do, when that is what makes the statement's risk.
    static func because(_ reached: [String]) -> String {
        reached.isEmpty ? "" : ": it " + reached.prefix(3).joined(separator: "; it ")
    }

    /// Settings under which the database reads statement text differently from the classifier,
    /// which reads UTF-8 with standard conforming strings. The proxy also ends any session whose
    /// database reports one of them changed (a change made where the classifier cannot see it).
    public static let parserSettings = ["client_encoding", "standard_conforming_strings", "backslash_quote"]

    /// Any change of a setting the classifier calls unsafe, or any `set_config()`: the setting's name
    /// can be spelled many ways (`U&"..."`, `SET NAMES`, a name built at run time), so none is let
    /// through rather than trying to recognise the harmless ones.
    /// What the statement changes of a setting the guard calls unsafe (the finding's own words), or nil.
    static func unsafeSettingChange(_ classification: ActionClassification) -> String? {
        classification.findings.first { ["unsafe_setting", "set_config"].contains($0.category) }?.detail
    }

    /// A FunctionCall message or another refusal the proxy makes without asking the core.
    public func refused(_ identity: ProxyIdentity, what: String) async {
        let context = self.context
        _ = try? await context.write { session in
            try await session.appendAudit([AuditEntry(actor: identity.caller.principal, action: .proxyRefused, subject: identity.sessionID,
                                                      resource: identity.resource, details: ["principal": identity.caller.principal, "what": what])],
                                          at: context.clock.now())
        }
    }

    /// Writes `proxy.session.ended` with why and how much the session did.
    public func sessionEnded(_ identity: ProxyIdentity, reason: String, statements: Int, refused: Int) async {
        let context = self.context
        do {
            try await context.write { session in
                try await session.appendAudit([AuditEntry(actor: identity.caller.principal, action: .proxySessionEnded, subject: identity.sessionID,
                                                          resource: identity.resource,
                                                          details: ["principal": identity.caller.principal, "client": identity.client, "reason": reason,
                                                                    "statements": "\(statements)", "refused": "\(refused)"])],
                                              at: context.clock.now())
            }
        } catch {
            context.logger.error("could not audit the end of proxy session", metadata: ["session": "\(identity.sessionID)", "error": "\(error)"])
        }
    }
}
