import Foundation
import Yams

extension PolicyLoader.Reader {
    /// `identity: {oidc: {...}, bootstrap_admin: enabled|disabled}`.
    mutating func identity(_ node: Node) -> IdentitySettings {
        var settings = IdentitySettings()
        for (key, _, value) in entries(node, "identity", allowed: ["oidc", "bootstrap_admin"]) {
            switch key {
            case "oidc":
                settings.oidc = oidc(value)
            default:
                switch value.scalar?.string {
                case "enabled": settings.bootstrapAdmin = true
                case "disabled": settings.bootstrapAdmin = false
                default: error(value, "identity.bootstrap_admin must be `enabled` or `disabled`")
                }
            }
        }
        if !settings.bootstrapAdmin, settings.oidc == nil {
            error(node, "identity.bootstrap_admin is disabled but no `oidc` provider is configured: nobody could administer Gatehouse")
        }
        return settings
    }

    mutating func oidc(_ node: Node) -> OIDCSettings? {
        let keys = ["issuer", "client_id", "client_secret_env", "client_secret_file", "redirect_uri", "scopes", "name_claim",
                    "groups_claim", "groups", "allowed_email_domains", "session_max", "display_name", "device_flow"]
        var issuer: String?, clientID: String?, redirectURI: String?
        var secrets: [OIDCSettings.SecretSource] = []
        var rest: [(String, Node)] = []
        for (key, keyNode, value) in entries(node, "identity.oidc", allowed: keys) {
            switch key {
            case "issuer":
                issuer = string(value, "identity.oidc.issuer")
                if let text = issuer, !Self.isHTTPURL(text, allowHTTPOnLoopback: true) {
                    error(value, "identity.oidc.issuer must be the provider's https URL (http only on 127.0.0.1 or localhost), exactly as its discovery document states it")
                }
            case "client_id": clientID = string(value, "identity.oidc.client_id")
            case "client_secret_env":
                if let name = string(value, "identity.oidc.client_secret_env") { secrets.append(.environment(name)) }
            case "client_secret_file":
                if let path = string(value, "identity.oidc.client_secret_file") { secrets.append(.file(path)) }
            case "redirect_uri":
                redirectURI = string(value, "identity.oidc.redirect_uri")
                if let text = redirectURI, !(Self.isHTTPURL(text, allowHTTPOnLoopback: true) && text.hasSuffix("/auth/callback")) {
                    error(value, "identity.oidc.redirect_uri must be Gatehouse's own URL ending in /auth/callback, for example https://gatehouse.example.com/auth/callback (http only on 127.0.0.1 or localhost); register the same URI at the provider")
                }
            default:
                _ = keyNode
                rest.append((key, value))
            }
        }
        if issuer == nil { error(node, "identity.oidc needs `issuer:`, the provider's issuer URL") }
        if clientID == nil { error(node, "identity.oidc needs `client_id:`, the id the provider gave Gatehouse") }
        if redirectURI == nil { error(node, "identity.oidc needs `redirect_uri:`, Gatehouse's URL ending in /auth/callback as registered at the provider") }
        if secrets.count != 1 {
            error(node, secrets.isEmpty
                  ? "identity.oidc needs `client_secret_env:` (an environment variable) or `client_secret_file:` (a file) holding the client secret; never the secret itself"
                  : "identity.oidc takes one of `client_secret_env:` and `client_secret_file:`, not both")
        }
        guard let issuer, let clientID, let redirectURI, let secret = secrets.first, secrets.count == 1 else { return nil }
        var settings = OIDCSettings(issuer: issuer, clientID: clientID, clientSecret: secret, redirectURI: redirectURI)
        for (key, value) in rest {
            switch key {
            case "scopes":
                let scopes = stringList(value, "identity.oidc.scopes").map(\.0)
                settings.scopes = scopes.contains("openid") ? scopes : ["openid"] + scopes
            case "name_claim":
                if let text = value.scalar?.string, let claim = OIDCSettings.NameClaim(rawValue: text) {
                    settings.nameClaim = claim
                } else {
                    error(value, "identity.oidc.name_claim must be one of \(OIDCSettings.NameClaim.allCases.map(\.rawValue).joined(separator: ", "))")
                }
            case "groups_claim":
                if let claim = string(value, "identity.oidc.groups_claim") { settings.groupsClaim = claim }
            case "groups":
                for (providerGroup, _, targets) in entries(value, "identity.oidc.groups") {
                    var mapped: [String] = []
                    for (group, groupNode) in stringList(targets, "identity.oidc.groups.\(providerGroup)") {
                        checkName(group, groupNode, "group")
                        mapped.append(group)
                    }
                    settings.groupMap[providerGroup] = mapped
                }
            case "allowed_email_domains":
                settings.allowedEmailDomains = stringList(value, "identity.oidc.allowed_email_domains").map { $0.0.lowercased() }
            case "session_max":
                guard let span = duration(value, "identity.oidc.session_max") else { continue }
                if span.seconds > 7 * 86_400 || span.seconds < 300 {
                    error(value, "identity.oidc.session_max is \(span); it must be between 5m and 7d (people sign in again after it)")
                } else {
                    settings.sessionMax = span
                }
            case "device_flow":
                switch value.scalar?.string {
                case "enabled": settings.deviceFlow = true
                case "disabled": settings.deviceFlow = false
                default: error(value, "identity.oidc.device_flow must be `enabled` or `disabled` (the default): whether `gatehouse login --device` may be used")
                }
            default:
                if let name = string(value, "identity.oidc.display_name") { settings.displayName = String(name.prefix(60)) }
            }
        }
        if settings.nameClaim == .email, settings.allowedEmailDomains.isEmpty {
            warning(node, "identity.oidc.name_claim is email without allowed_email_domains: alice@one.example and alice@other.example would both be `alice` (the first to sign in keeps it); list your domains")
        }
        if settings.groupMap.isEmpty {
            warning(node, "identity.oidc.groups maps no provider group to a policy group: only people listed under `principals:` with groups can sign in")
        }
        return settings
    }

    static func isHTTPURL(_ text: String, allowHTTPOnLoopback: Bool) -> Bool {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty,
              url.query == nil, url.fragment == nil else { return false }
        if scheme == "https" { return true }
        return scheme == "http" && allowHTTPOnLoopback && ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host.lowercased())
    }
}
