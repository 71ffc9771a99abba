import Foundation
import GatehouseCore
import GatehouseStore

/// Decisions from Slack: who a Slack user is (a link to one principal, made from the e-mail address
/// the identity provider confirmed or by the person in the web inbox), the decision itself through
/// the same `RequestDesk.decide` as every other way in, and the copies of each request's message.
public struct SlackDesk: Sendable {
    let context: AppContext
    let desk: RequestDesk

    init(_ context: AppContext, desk: RequestDesk) {
        self.context = context
        self.desk = desk
    }

    /// Why a Slack user cannot act (nothing is decided).
    public struct Refusal: Error, Sendable, Equatable {
        public var code: String
        public var message: String
        public init(_ code: String, _ message: String) {
            self.code = code
            self.message = message
        }
    }

    /// The caller a Slack user acts as: their live link, made now from the e-mail address Slack and
    /// the identity provider both confirm when there is none yet. A Slack click decides; it
    /// administers nothing (the caller is never an admin).
    public func caller(profile: SlackProfile) async throws -> Result<Caller, Refusal> {
        let origin = ["via": "slack", "slack_user": profile.user, "slack_team": profile.team]
        let policy = context.policies.policy
        guard let settings = policy.notifications.slack, profile.team == settings.teamID else {
            return .failure(Refusal("slack_workspace_refused", "this Slack account belongs to another workspace; only people of Gatehouse's own workspace decide from Slack"))
        }
        guard !profile.deleted, !profile.isBot else {
            return .failure(Refusal("slack_account_unusable", "this Slack account is deactivated or a bot; it cannot decide requests"))
        }
        let context = self.context
        var link = try await context.read { try await $0.slackLink(team: profile.team, user: profile.user) }
        if let existing = link, let email = Self.linkedEmail(existing) {
            // A link made from an e-mail address holds while both sides still confirm that address for this person.
            let owners = try await context.read { try await $0.principals(withEmail: email) }
            if profile.confirmedEmail != email || owners != [existing.principal] {
                try await unlink(existing, reason: "the e-mail address that linked it is no longer confirmed for this person on both sides")
                link = nil
            }
        }
        if link == nil {
            switch try await linkByEmail(profile) {
            case .success(let made): link = made
            case .failure(let refusal): return .failure(refusal)
            }
        }
        guard let link else { return .failure(notLinked()) }
        let now = context.clock.now()
        if let refusal = Tokens.refusal(for: link, policy: policy, now: now) {
            return .failure(Refusal("slack_link_refused", refusal.message))
        }
        if policy.identity.oidc != nil {
            // People known from the provider act only while they hold a live sign-in: the provider is
            // asked about them at every sign-in, never in between.
            let sessions = try await context.read { try await $0.liveTokens(principal: link.principal) }
            guard sessions.contains(where: { $0.kind == .session && ($0.expiresAt ?? .distantPast) > now }) else {
                let inbox = policy.notifications.baseURL.map { " (\($0)/inbox)" } ?? ""
                return .failure(Refusal("slack_sign_in_needed", "decisions from Slack count only while you are signed in to Gatehouse; sign in with the company's identity provider\(inbox), then click again"))
            }
        }
        return .success(Caller(principal: link.principal, isAdmin: false, tokenId: link.id, origin: origin))
    }

    static let viaEmail = "Slack account, linked by the e-mail address both Slack and the identity provider confirmed: "
    static let viaInbox = "Slack account, linked by its person with a code from the web inbox"

    static func linkedEmail(_ link: TokenRecord) -> String? {
        guard let description = link.description, description.hasPrefix(viaEmail) else { return nil }
        return String(description.dropFirst(viaEmail.count))
    }

    /// A link from the confirmed e-mail address, when exactly one person signed in with it.
    func linkByEmail(_ profile: SlackProfile) async throws -> Result<TokenRecord?, Refusal> {
        guard let email = profile.confirmedEmail else { return .success(nil) }
        let context = self.context
        return try await context.write { session in
            if let raced = try await session.slackLink(team: profile.team, user: profile.user) { return .success(raced) }
            let owners = try await session.principals(withEmail: email)
            guard owners.count <= 1 else {
                return .failure(Refusal("slack_email_ambiguous", "several Gatehouse people signed in with \(email); link your Slack account with a code from the web inbox instead"))
            }
            guard let principal = owners.first else { return .success(nil) }
            let record = try await Self.insertLink(principal: principal, profile: profile, via: Self.viaEmail + email, by: "system",
                                                   session: session, now: context.clock.now())
            return .success(record)
        }
    }

    static func insertLink(principal: String, profile: SlackProfile, via: String, by actor: String, session: StoreSession, now: Date) async throws -> TokenRecord {
        if let earlier = try await session.slackLink(team: profile.team, user: profile.user) {
            try await session.revokeToken(id: earlier.id, by: actor, at: now)
            try await session.appendAudit([AuditEntry(actor: actor, action: .slackUnlinked, subject: earlier.id, details: [
                "principal": earlier.principal, "slack_user": profile.user, "reason": "linked again"])], at: now)
        }
        let record = TokenRecord(id: Identifier.make("tok"), principal: principal, description: via, isBootstrapAdmin: false, createdAt: now,
                                 createdBy: actor, revokedAt: nil, kind: .slack, issuer: StoreSession.slackIssuer(team: profile.team),
                                 subject: profile.user)
        // The hash of a secret nobody ever holds: a link can never be presented as a bearer token.
        try await session.insertToken(record, hash: TokenSecret.hash(TokenSecret.generate()))
        try await session.appendAudit([AuditEntry(actor: actor, action: .slackLinked, subject: record.id, details: [
            "principal": principal, "slack_user": profile.user, "slack_team": profile.team,
            "via": via.hasPrefix(viaEmail) ? "email" : "inbox"])], at: now)
        return record
    }

    func unlink(_ link: TokenRecord, reason: String) async throws {
        let context = self.context
        try await context.write { session in
            let now = context.clock.now()
            try await session.revokeToken(id: link.id, by: "system", at: now)
            try await session.appendAudit([AuditEntry(actor: "system", action: .slackUnlinked, subject: link.id, details: [
                "principal": link.principal, "slack_user": link.subject ?? "", "reason": reason])], at: now)
        }
    }

    /// The answer for a Slack user with no link: how to make one.
    func notLinked() -> Refusal {
        let policy = context.policies.policy
        var message = "your Slack account is not linked to a Gatehouse person, so nothing was decided."
        if policy.identity.oidc != nil {
            message += " Sign in to Gatehouse with the company's identity provider under the e-mail address your Slack profile shows, then click again; or"
        }
        let inbox = policy.notifications.baseURL.map { "\($0)/slack/link" } ?? "Gatehouse's web inbox (Link Slack)"
        message += " make a link code at \(inbox) and enter it with the button below."
        return Refusal("slack_not_linked", message)
    }

    /// A one-time link code for the signed-in caller (the web inbox shows it once).
    public func makeLinkCode(caller: Caller) async throws -> (code: String, expiresAt: Date) {
        let code = LinkCode.make()
        let hash = TokenSecret.hash(SlackInteraction.normalizedLinkCode(code) ?? code)
        return try await context.write(as: caller) { session, policy, now in
            guard policy.principals[caller.principal]?.kind == .user, caller.origin.isEmpty else {
                throw GatehouseError(.forbidden, "slack_link_refused", "only people signed in to the web inbox link a Slack account")
            }
            let expiresAt = now.addingTimeInterval(LinkCode.lifetime)
            try await session.insertSlackLinkCode(hash: hash, principal: caller.principal, createdAt: now, expiresAt: expiresAt)
            return (code, expiresAt)
        }
    }

    /// Links the Slack account that typed a valid code to the person who made it.
    public func link(profile: SlackProfile, code: String) async throws -> Result<String, Refusal> {
        let policy = context.policies.policy
        guard let settings = policy.notifications.slack, profile.team == settings.teamID else {
            return .failure(Refusal("slack_workspace_refused", "this Slack account belongs to another workspace"))
        }
        guard !profile.deleted, !profile.isBot else {
            return .failure(Refusal("slack_account_unusable", "this Slack account is deactivated or a bot"))
        }
        guard let normalized = SlackInteraction.normalizedLinkCode(code) else {
            return .failure(Refusal("slack_link_code_unknown", "that is not a link code (8 letters and digits, like K7QF-9XMW)"))
        }
        let context = self.context
        return try await context.write { session in
            let now = context.clock.now()
            guard let principal = try await session.takeSlackLinkCode(hash: TokenSecret.hash(normalized), now: now) else {
                return .failure(Refusal("slack_link_code_unknown", "this code is unknown, used already or older than 10 minutes; make a new one in the web inbox"))
            }
            _ = try await Self.insertLink(principal: principal, profile: profile, via: Self.viaInbox, by: principal, session: session, now: now)
            return .success(principal)
        }
    }

    /// Records a click that decided nothing (the Slack user was identified by Slack's signature).
    public func refused(_ interaction: SlackInteraction, requestId: String?, principal: String?, code: String, message: String) async {
        let context = self.context
        do {
            try await context.write { session in
                try await session.appendAudit([AuditEntry(actor: principal ?? "slack:\(interaction.user)", action: .slackRefused,
                                                          subject: requestId ?? interaction.user, details: AuditEntry.compact([
                    "slack_user": interaction.user, "slack_team": interaction.team, "code": code, "message": String(message.prefix(300))]))],
                                              at: context.clock.now())
            }
        } catch {
            context.logger.warning("a refused Slack click could not be audited", metadata: ["error": "\(error)"])
        }
    }

    /// A decision from Slack: the same use case as the API and the web inbox.
    public func decide(caller: Caller, requestId: String, decision: ApprovalDecision, comment: String?) async throws -> RequestView {
        try await desk.decide(caller: caller, id: requestId, decision: decision, comment: comment)
    }

    // MARK: messages

    /// A request and its approvals as its Slack message shows them, read without a caller (the
    /// message goes to the channels the policy names).
    public func requestForMessage(_ id: String) async throws -> RequestView? {
        try await context.read { session in
            guard let request = try await session.request(id: id) else { return nil }
            return RequestView(request: request, approvals: try await session.approvals(requestId: id))
        }
    }

    public func recordMessage(_ ref: SlackMessageRef) async throws {
        let context = self.context
        try await context.write { try await $0.insertSlackMessage(ref, at: context.clock.now()) }
    }

    public func messages(of requestId: String) async throws -> [SlackMessageRef] {
        try await context.read { try await $0.slackMessages(requestId: requestId) }
    }

    /// The Slack user a principal's direct messages go to (their latest live link), if any.
    public func slackUser(of principal: String) async throws -> String? {
        try await context.read { try await $0.slackLinks(principal: principal) }.last?.subject
    }
}
