import Foundation
import Testing
@testable import GatehouseCore

/// The `identity:` section of the policy, and the pure rules of a sign-in.
@Suite("Identity: the oidc policy section and the sign-in rules")
struct IdentityPolicyTests {
    static let base = """
        version: 1
        principals:
          deploy-bot: {groups: [automation], kind: service}
          alice: {groups: [engineers]}
        admins: [security]
        resources:
          prod-db:
            kind: postgres
            roles:
              write: {requesters: [engineers], approvers: [leads], approvals: 2, max_duration: 1h, allows: write}

        """

    static func load(_ identity: String) -> PolicyLoadResult { PolicyLoader.load(yaml: base + identity) }

    static let valid = """
        identity:
          oidc:
            issuer: https://login.example.com/realms/acme
            client_id: gatehouse
            client_secret_env: GATEHOUSE_OIDC_SECRET
            redirect_uri: https://gatehouse.example.com/auth/callback
            scopes: [profile, email]
            name_claim: email
            allowed_email_domains: [Example.com]
            session_max: 4h
            groups:
              platform-oncall: [engineers]
              db-leads: [leads]
              secops: [security]
        """

    @Test("a valid section: groups mapped from the provider count as known (approvers and admins may be provider groups), openid is always asked")
    func valid() throws {
        let result = Self.load(Self.valid)
        #expect(result.errors.isEmpty, "\(result.errors)")
        let policy = try #require(result.policy)
        let oidc = try #require(policy.identity.oidc)
        #expect(oidc.scopes == ["openid", "profile", "email"])
        #expect(oidc.nameClaim == .email)
        #expect(oidc.allowedEmailDomains == ["example.com"])
        #expect(oidc.sessionMax == TimeSpan(seconds: 4 * 3600))
        #expect(oidc.clientSecret == .environment("GATEHOUSE_OIDC_SECRET"))
        #expect(oidc.policyGroups(forProviderGroups: ["db-leads", "secops", "unmapped"]) == ["leads", "security"])
        #expect(policy.identity.bootstrapAdmin)
    }

    @Test("without the section, a role whose approvers nobody is in is refused as before")
    func withoutSection() {
        let result = Self.load("")
        #expect(result.policy == nil)
        #expect(result.errors.contains { $0.message.contains("unknown group `leads`") })
    }

    @Test("mistakes are reported with their line and what to write instead", arguments: [
        ("identity:\n  oidc:\n    issuer: http://login.example.com\n    client_id: g\n    client_secret_env: S\n    redirect_uri: https://g.example.com/auth/callback\n", 13, "https URL"),
        ("identity:\n  oidc:\n    issuer: https://login.example.com\n    client_id: g\n    client_secret: hunter2\n    redirect_uri: https://g.example.com/auth/callback\n", 15, "unknown key `client_secret`"),
        ("identity:\n  oidc:\n    issuer: https://login.example.com\n    client_id: g\n    redirect_uri: https://g.example.com/auth/callback\n", 13, "client_secret_env"),
        ("identity:\n  oidc:\n    issuer: https://login.example.com\n    client_id: g\n    client_secret_env: S\n    client_secret_file: /etc/s\n    redirect_uri: https://g.example.com/auth/callback\n", 13, "not both"),
        ("identity:\n  oidc:\n    issuer: https://login.example.com\n    client_id: g\n    client_secret_env: S\n    redirect_uri: https://g.example.com/login\n", 16, "/auth/callback"),
        ("identity:\n  oidc:\n    issuer: https://login.example.com\n    client_id: g\n    client_secret_env: S\n    redirect_uri: https://g.example.com/auth/callback\n    name_claim: nickname\n", 17, "name_claim"),
        ("identity:\n  oidc:\n    issuer: https://login.example.com\n    client_id: g\n    client_secret_env: S\n    redirect_uri: https://g.example.com/auth/callback\n    session_max: 30d\n", 17, "between 5m and 7d"),
        ("identity:\n  oidc:\n    issuer: https://login.example.com\n    client_id: g\n    client_secret_env: S\n    redirect_uri: https://g.example.com/auth/callback\n    groups: {ops: [Leads!]}\n", 17, "not a valid name"),
        ("identity:\n  bootstrap_admin: disabled\n", 12, "nobody could administer"),
    ])
    func mistakes(yaml: String, line: Int, phrase: String) {
        let result = Self.load(yaml)
        #expect(result.policy == nil)
        #expect(result.errors.contains { $0.line == line && $0.message.contains(phrase) }, "\(result.errors.map { "\($0.line): \($0.message)" })")
    }

    static func claims(_ change: (inout IDTokenClaims) -> Void = { _ in }) -> IDTokenClaims {
        var claims = IDTokenClaims(issuer: "https://login.example.com", subject: "248289761001", audience: ["gatehouse"],
                                   expiresAt: Date(timeIntervalSince1970: 1_000_300), issuedAt: Date(timeIntervalSince1970: 1_000_000),
                                   nonce: "n-1", preferredUsername: "Erin", email: "erin@example.com", emailVerified: true, groups: ["platform-oncall"])
        change(&claims)
        return claims
    }

    @Test("claims: issuer, audience, authorized party, expiry with 60 s of skew, issue time, nonce")
    func claimChecks() {
        let now = Date(timeIntervalSince1970: 1_000_100)
        func check(_ claims: IDTokenClaims, nonce: String? = "n-1", at time: Date = now) -> String? {
            SignInRules.checkClaims(claims, issuer: "https://login.example.com", clientID: "gatehouse", nonce: nonce, now: time)?.code
        }
        #expect(check(Self.claims()) == nil)
        #expect(check(Self.claims { $0.issuer = "https://evil.example.com" }) == "wrong_issuer")
        #expect(check(Self.claims { $0.audience = ["other"] }) == "wrong_audience")
        #expect(check(Self.claims { $0.audience = ["gatehouse", "other"] }) == "wrong_audience")
        #expect(check(Self.claims { $0.audience = ["gatehouse", "other"]; $0.authorizedParty = "gatehouse" }) == nil)
        #expect(check(Self.claims(), at: Date(timeIntervalSince1970: 1_000_359)) == nil)
        #expect(check(Self.claims(), at: Date(timeIntervalSince1970: 1_000_361)) == "token_expired")
        #expect(check(Self.claims { $0.issuedAt = Date(timeIntervalSince1970: 1_000_200) }) == "token_from_future")
        #expect(check(Self.claims { $0.notBefore = Date(timeIntervalSince1970: 1_000_200) }) == "token_not_yet_valid")
        #expect(check(Self.claims { $0.notBefore = Date(timeIntervalSince1970: 1_000_150) }) == nil)
        #expect(check(Self.claims { $0.nonce = nil }) == "wrong_nonce")
        #expect(check(Self.claims { $0.nonce = "n-2" }) == "wrong_nonce")
        #expect(check(Self.claims { $0.subject = "" }) == "missing_claim")
    }

    @Test("who the claims name: a lowercase principal, groups mapped and added to the file's, clear refusals")
    func person() throws {
        let policy = try #require(Self.load(Self.valid).policy)
        var settings = try #require(policy.identity.oidc)
        func outcome(_ claims: IDTokenClaims, _ settings: OIDCSettings) -> String {
            switch SignInRules.person(from: claims, settings: settings, policy: policy) {
            case .success(let person): "\(person.principal):\(person.groups.joined(separator: ","))"
            case .failure(let refusal): refusal.code
            }
        }
        #expect(outcome(Self.claims(), settings) == "erin:engineers")
        #expect(outcome(Self.claims { $0.email = "alice@example.com"; $0.groups = ["db-leads"] }, settings) == "alice:leads", "the file's groups are added for the bound name, later")
        #expect(outcome(Self.claims { $0.emailVerified = false }, settings) == "email_domain_refused")
        #expect(outcome(Self.claims { $0.email = "erin@elsewhere.com" }, settings) == "email_domain_refused")
        #expect(outcome(Self.claims { $0.email = "deploy-bot@example.com" }, settings) == "service_account_name")
        #expect(outcome(Self.claims { $0.email = "admin@example.com" }, settings) == "reserved_name")
        func admitted(_ principal: String, _ groups: [String], new: Bool = true, domains: [String] = ["example.com"]) -> String {
            var s = settings
            s.allowedEmailDomains = domains
            switch SignInRules.admit(principal: principal, providerGroups: groups, settings: s, policy: policy, newBinding: new) {
            case .success(let groups): return groups.joined(separator: ",")
            case .failure(let refusal): return refusal.code
            }
        }
        #expect(admitted("erin", ["marketing"]) == "no_policy_group")
        #expect(admitted("erin", []) == "no_policy_group")
        #expect(admitted("alice", ["db-leads"]) == "leads,engineers", "a listed name gets the file's groups too")
        #expect(admitted("alice", [], domains: []) == "listed_name_unprotected", "a listed name is not first-come without a domain rule")
        #expect(admitted("alice", [], new: false, domains: []) == "engineers", "once bound, it is theirs")
        #expect(admitted("deploy-bot", ["platform-oncall"], new: false) == "service_account_name", "checked for the bound name at every sign-in")
        #expect(outcome(Self.claims { $0.email = "\u{212A}elvin@example.com" }, settings) == "unusable_name", "the Kelvin sign does not become k")
        settings.nameClaim = .preferredUsername
        settings.allowedEmailDomains = []
        #expect(outcome(Self.claims(), settings) == "erin:engineers")
        #expect(outcome(Self.claims { $0.preferredUsername = "Zoë Smith" }, settings) == "unusable_name")
        #expect(outcome(Self.claims { $0.preferredUsername = nil }, settings) == "missing_claim")
    }

    @Test("people from the provider join the running policy with their groups; a service account's name is never taken over")
    func including() throws {
        let policy = try #require(Self.load(Self.valid).policy)
        let merged = policy.including(people: ["erin": ["leads"], "alice": ["leads"], "deploy-bot": ["security"]])
        #expect(merged.isMember("erin", ofAny: ["leads"]))
        #expect(merged.principals["alice"]?.groups == ["engineers", "leads"])
        #expect(!merged.isAdmin("deploy-bot"))
        #expect(merged.eligibleApprovers(for: try #require(policy.resources["prod-db"]?.roles["write"])) == ["erin", "alice"])
    }
}
