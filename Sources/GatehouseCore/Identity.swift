import Foundation
import Crypto

/// The `identity:` section: how people sign in. Without it, people use tokens an admin creates.
public struct IdentitySettings: Sendable, Equatable {
    public var oidc: OIDCSettings?
    /// Whether the bootstrap admin token (`GATEHOUSE_ADMIN_TOKEN`) still works. Switch it off once an
    /// admin signs in through the provider.
    public var bootstrapAdmin = true

    public init(oidc: OIDCSettings? = nil, bootstrapAdmin: Bool = true) {
        self.oidc = oidc
        self.bootstrapAdmin = bootstrapAdmin
    }
}

/// `identity.oidc`: one OpenID Connect provider.
public struct OIDCSettings: Sendable, Equatable {
    public typealias SecretSource = SecretReference
    public enum NameClaim: String, Sendable, Equatable, CaseIterable {
        case preferredUsername = "preferred_username"
        case email
    }

    /// The issuer URL exactly as the provider's discovery document states it.
    public var issuer: String
    public var clientID: String
    public var clientSecret: SecretSource
    /// Where the provider sends the browser back: `<Gatehouse URL>/auth/callback`, registered at the provider.
    public var redirectURI: String
    public var scopes: [String] = ["openid", "profile", "email"]
    public var nameClaim: NameClaim = .preferredUsername
    public var groupsClaim = "groups"
    /// Provider group → policy groups. Provider groups not listed here give nothing.
    public var groupMap: [String: [String]] = [:]
    /// When set, only people whose verified e-mail is in one of these domains may sign in.
    public var allowedEmailDomains: [String] = []
    public var sessionMax = TimeSpan(seconds: 12 * 3600)
    /// Shown on the sign-in button: "Sign in with <name>".
    public var displayName = "your identity provider"
    /// Whether `gatehouse login --device` (RFC 8628) may be used. Off by default: a device code can be
    /// phished (someone starts a sign-in and sends the code to a victim).
    public var deviceFlow = false

    public init(issuer: String, clientID: String, clientSecret: SecretSource, redirectURI: String) {
        self.issuer = issuer
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.redirectURI = redirectURI
    }

    /// The policy groups the provider's groups give.
    public func policyGroups(forProviderGroups providerGroups: [String]) -> [String] {
        var out: [String] = []
        for group in providerGroups { for mapped in groupMap[group] ?? [] where !out.contains(mapped) { out.append(mapped) } }
        return out
    }

    /// Every policy group a provider group can give (they count as known groups in the policy).
    public var mappedGroups: Set<String> { Set(groupMap.values.flatMap { $0 }) }
}

/// The claims of an ID token that Gatehouse reads, after its signature was verified.
public struct IDTokenClaims: Sendable, Equatable {
    public var issuer: String
    public var subject: String
    public var audience: [String]
    public var authorizedParty: String?
    public var expiresAt: Date
    public var issuedAt: Date
    /// `nbf`, when the token has one: not to be taken before then.
    public var notBefore: Date?
    public var nonce: String?
    public var preferredUsername: String?
    public var email: String?
    public var emailVerified: Bool?
    /// Nil when the token has no groups claim at all.
    public var groups: [String]?

    public init(issuer: String, subject: String, audience: [String], authorizedParty: String? = nil, expiresAt: Date, issuedAt: Date,
                notBefore: Date? = nil, nonce: String? = nil, preferredUsername: String? = nil, email: String? = nil, emailVerified: Bool? = nil,
                groups: [String]? = nil) {
        self.notBefore = notBefore
        self.issuer = issuer
        self.subject = subject
        self.audience = audience
        self.authorizedParty = authorizedParty
        self.expiresAt = expiresAt
        self.issuedAt = issuedAt
        self.nonce = nonce
        self.preferredUsername = preferredUsername
        self.email = email
        self.emailVerified = emailVerified
        self.groups = groups
    }
}

/// Why a sign-in was refused: a stable code for the audit log and the API, and a sentence for the person.
public struct SignInRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: String
    public var message: String
    public init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}

/// A person as the provider vouches for them, mapped onto the policy.
public struct ProviderPerson: Sendable, Equatable {
    public var issuer: String
    public var subject: String
    /// The principal name the claim gives (the store may already bind this issuer+subject to another name).
    public var principal: String
    /// The e-mail address, only when the provider verified it.
    public var email: String?
    /// Policy groups from the provider's groups (the policy file may add more).
    public var groups: [String]
    public var providerGroups: [String]
}

/// The pure rules of an OpenID Connect sign-in: is this ID token for us and fresh, and who is it.
public enum SignInRules {
    /// The most clock difference tolerated between Gatehouse and the provider.
    public static let clockSkew: TimeInterval = 60

    /// Checks an ID token's claims (its signature already verified) against what this sign-in expects.
    public static func checkClaims(_ claims: IDTokenClaims, issuer: String, clientID: String, nonce: String?, now: Date) -> SignInRefusal? {
        guard claims.issuer == issuer else {
            return SignInRefusal("wrong_issuer", "the ID token was issued by \(claims.issuer), not by the configured provider \(issuer)")
        }
        guard claims.audience.contains(clientID) else {
            return SignInRefusal("wrong_audience", "the ID token is for \(claims.audience.joined(separator: ", ")), not for this Gatehouse (client id \(clientID))")
        }
        if claims.audience.count > 1, claims.authorizedParty != clientID {
            return SignInRefusal("wrong_audience", "the ID token names several audiences and its authorized party is not this Gatehouse")
        }
        guard claims.expiresAt.addingTimeInterval(clockSkew) > now else {
            return SignInRefusal("token_expired", "the ID token expired at \(claims.expiresAt.rfc3339); sign in again")
        }
        guard claims.issuedAt.addingTimeInterval(-clockSkew) <= now else {
            return SignInRefusal("token_from_future", "the ID token was issued in the future (\(claims.issuedAt.rfc3339)); check the clocks of Gatehouse and the provider")
        }
        if let notBefore = claims.notBefore, notBefore.addingTimeInterval(-clockSkew) > now {
            return SignInRefusal("token_not_yet_valid", "the ID token is not valid before \(notBefore.rfc3339); check the clocks of Gatehouse and the provider")
        }
        guard !claims.subject.isEmpty, claims.subject.utf8.count <= 255 else {
            return SignInRefusal("missing_claim", "the ID token has no usable `sub` claim")
        }
        if let nonce {
            guard let got = claims.nonce, TokenSecret.constantTimeEqual(got, nonce) else {
                return SignInRefusal("wrong_nonce", "the ID token's nonce does not match this sign-in; start again from the sign-in page")
            }
        }
        return nil
    }

    /// Who the claims name, under the settings and the policy: a principal name and policy groups.
    public static func person(from claims: IDTokenClaims, settings: OIDCSettings, policy: Policy) -> Result<ProviderPerson, SignInRefusal> {
        // Addresses with anything but ASCII are kept as sent: lowercasing could turn a look-alike into a letter.
        let email = claims.email.map { $0.unicodeScalars.allSatisfy(\.isASCII) ? $0.lowercased() : $0 }
        if !settings.allowedEmailDomains.isEmpty {
            guard let email, claims.emailVerified == true, let domain = email.split(separator: "@").last.map(String.init),
                  settings.allowedEmailDomains.contains(domain) else {
                return .failure(SignInRefusal("email_domain_refused", "only people with a verified e-mail address in \(settings.allowedEmailDomains.joined(separator: ", ")) may sign in; the provider said \(email ?? "no e-mail")"))
            }
        }
        let raw: String?
        switch settings.nameClaim {
        case .preferredUsername: raw = claims.preferredUsername
        case .email:
            guard claims.emailVerified == true else {
                return .failure(SignInRefusal("email_not_verified", "names come from the e-mail claim, and the provider has not verified this person's e-mail address"))
            }
            raw = claims.email.flatMap { $0.split(separator: "@").first.map(String.init) }
        }
        guard let raw, !raw.isEmpty else {
            return .failure(SignInRefusal("missing_claim", "the ID token has no `\(settings.nameClaim.rawValue)` claim; add it to the scopes the provider releases (scopes asked: \(settings.scopes.joined(separator: " ")))"))
        }
        // Lowercasing is only safe on ASCII: the Kelvin sign (U+212A) lowercases to `k`, and a look-alike
        // letter could pose as another person.
        let name = raw.lowercased()
        guard raw.unicodeScalars.allSatisfy(\.isASCII), PolicyLoader.isValidName(name) else {
            return .failure(SignInRefusal("unusable_name", "the provider's `\(settings.nameClaim.rawValue)` '\(raw.prefix(80))' cannot be a Gatehouse name (up to 63 of a-z 0-9 . _ -, starting with a letter or digit); ask an admin to change `name_claim`"))
        }
        if let refusal = nameRefusal(name, policy: policy) { return .failure(refusal) }
        let providerGroups = claims.groups ?? []
        // Only an address the provider verified is kept: it is what links a Slack account to this person.
        return .success(ProviderPerson(issuer: claims.issuer, subject: claims.subject, principal: name,
                                       email: claims.emailVerified == true ? email : nil,
                                       groups: settings.policyGroups(forProviderGroups: providerGroups), providerGroups: providerGroups))
    }

    /// Names no person may sign in under: Gatehouse's own, and service accounts'.
    static func nameRefusal(_ name: String, policy: Policy) -> SignInRefusal? {
        if PolicyLoader.reservedPrincipals.contains(name) {
            return SignInRefusal("reserved_name", "'\(name)' is a name Gatehouse keeps for itself; this person cannot sign in under it")
        }
        if policy.principals[name]?.kind == .service {
            return SignInRefusal("service_account_name", "'\(name)' is a service account in the policy; a person cannot sign in as it")
        }
        return nil
    }

    /// The policy groups of a person signed in as `principal` (the name they are bound to): the
    /// provider's groups through the current mapping, plus those the policy file gives that name.
    /// Computed whenever they are needed, never stored: a changed mapping or file takes effect at once.
    public static func groups(principal: String, providerGroups: [String], policy: Policy) -> [String] {
        var groups = policy.identity.oidc?.policyGroups(forProviderGroups: providerGroups) ?? []
        for group in policy.principals[principal]?.groups ?? [] where !groups.contains(group) { groups.append(group) }
        return groups
    }

    /// Whether a person may be (or stay) bound to `principal`, and their policy groups; checked at
    /// every sign-in for the name they are bound to, not only the name they claim.
    public static func admit(principal: String, providerGroups: [String], settings: OIDCSettings, policy: Policy,
                             newBinding: Bool) -> Result<[String], SignInRefusal> {
        if let refusal = nameRefusal(principal, policy: policy) { return .failure(refusal) }
        // A name listed in the file carries the file's groups: only a provider that vouches for the
        // company's own domains may hand it to an account signing in for the first time.
        if policy.principals[principal] != nil, newBinding, settings.allowedEmailDomains.isEmpty {
            return .failure(SignInRefusal("listed_name_unprotected", "'\(principal)' is listed in the policy file; a provider account can take a listed name only when `identity.oidc.allowed_email_domains` limits who signs in"))
        }
        let groups = groups(principal: principal, providerGroups: providerGroups, policy: policy)
        guard !groups.isEmpty else {
            let seen = providerGroups.isEmpty ? "the token carries no `\(settings.groupsClaim)` claim" : "the provider's groups were \(providerGroups.prefix(20).joined(separator: ", "))"
            return .failure(SignInRefusal("no_policy_group", "\(principal) is in no Gatehouse group: \(seen), and none of them is mapped in `identity.oidc.groups`; ask an admin to add you to a mapped group at the provider"))
        }
        return .success(groups)
    }
}

/// Proof Key for Code Exchange (RFC 7636), S256.
public enum PKCE {
    /// A verifier: 51 characters from the unreserved set, 255 random bits.
    public static func makeVerifier() -> String { Identifier.make("v", bytes: 32) }

    public static func challenge(for verifier: String) -> String {
        Data(SHA256.hash(data: Data(verifier.utf8))).base64URLEncoded
    }
}

extension Data {
    /// Base64url without padding (RFC 4648 §5), as JOSE and PKCE write it.
    public var base64URLEncoded: String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
