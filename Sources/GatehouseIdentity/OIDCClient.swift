import AsyncHTTPClient
import Foundation
import GatehouseCore
import JWTKit
import Logging
import NIOCore
import NIOFoundationCompat
import Synchronization

/// What went wrong talking to the provider, or with what it sent.
public enum OIDCError: Error, Sendable, CustomStringConvertible {
    /// The provider could not be reached or answered nonsense: nothing is known about the person.
    case providerUnavailable(String)
    /// The provider answered, and the answer (or the token) is not acceptable.
    case refused(SignInRefusal)

    public var description: String {
        switch self {
        case .providerUnavailable(let message): message
        case .refused(let refusal): refusal.message
        }
    }
}

/// Gatehouse as an OpenID Connect relying party (a confidential client): discovery, the
/// authorization URL, the code exchange, and verifying ID tokens against the provider's JWKS.
/// Discovery and keys are cached; an unknown `kid` fetches the keys again (the provider rotated them).
public final class OIDCClient: Sendable {
    public let settings: OIDCSettings
    let clientSecret: String
    let http: HTTPClient
    let logger: Logger
    private let cache = Mutex(Cache())

    struct Cache {
        var discovery: Discovery?
        var discoveredAt: Date?
        var keys: [String: JWK] = [:]
        var unnamedKeys: [JWK] = []
        var keysFetchedAt: Date?

        /// The key a token's `kid` names; without one, the provider's only key.
        func key(_ kid: String?) -> JWK? {
            if let kid { return keys[kid] }
            let all = Array(keys.values) + unnamedKeys
            return all.count == 1 ? all[0] : nil
        }
    }

    /// The fields of the discovery document Gatehouse uses.
    public struct Discovery: Decodable, Sendable {
        public var issuer: String
        public var authorizationEndpoint: String
        public var tokenEndpoint: String
        public var jwksURI: String
        public var signingAlgorithms: [String]?
        public var codeChallengeMethods: [String]?
        public var deviceAuthorizationEndpoint: String?
        public var userinfoEndpoint: String?

        enum CodingKeys: String, CodingKey {
            case deviceAuthorizationEndpoint = "device_authorization_endpoint"
            case userinfoEndpoint = "userinfo_endpoint"
            case issuer
            case authorizationEndpoint = "authorization_endpoint"
            case tokenEndpoint = "token_endpoint"
            case jwksURI = "jwks_uri"
            case signingAlgorithms = "id_token_signing_alg_values_supported"
            case codeChallengeMethods = "code_challenge_methods_supported"
        }
    }

    /// Asymmetric algorithms only: `none` and the HMAC family are never accepted for ID tokens.
    static let asymmetric: Set<String> = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
    static let discoveryLifetime: TimeInterval = 3600
    /// An unknown `kid` or a signature that does not verify fetches the keys again at most this often (a flood
    /// of made-up kids cannot hammer the provider).
    static let keyRefreshInterval: TimeInterval = 1
    /// Keys fetched longer ago are fetched again before they are used: a key the provider stopped publishing
    /// stops verifying within this time, as OpenID Connect Core 10.1.1 expects of rotation.
    static let keyLifetime: TimeInterval = 300

    /// Reads the client secret from the environment or file the policy names; fails with what to do.
    public static func clientSecret(_ source: OIDCSettings.SecretSource, environment: [String: String]) throws -> String {
        switch source {
        case .environment(let name):
            guard let value = environment[name], !value.isEmpty else {
                throw OIDCError.providerUnavailable("identity.oidc.client_secret_env names \(name), which is not set; export the client secret the provider gave Gatehouse in \(name)")
            }
            return value
        case .file(let path):
            let text: String
            do { text = try TextFile.read(path) } catch {
                throw OIDCError.providerUnavailable("identity.oidc.client_secret_file \(path) cannot be read (\(error.why)); put the client secret the provider gave Gatehouse in it")
            }
            let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !value.isEmpty else {
                throw OIDCError.providerUnavailable("identity.oidc.client_secret_file \(path) is empty; put the client secret the provider gave Gatehouse in it")
            }
            return value
        }
    }

    /// Idle connections to the provider are dropped after a few seconds: a sign-in never goes out
    /// on a kept-alive connection the provider is closing at that moment.
    public static let defaultHTTP: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(4))
        configuration.redirectConfiguration = .disallow
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    public init(settings: OIDCSettings, clientSecret: String, http: HTTPClient = OIDCClient.defaultHTTP, logger: Logger) {
        self.settings = settings
        self.clientSecret = clientSecret
        self.http = http
        self.logger = logger
    }

    // MARK: discovery and keys

    public func discovery(now: Date = Date()) async throws -> Discovery {
        if let cached = cache.withLock({ c in c.discoveredAt.map { now.timeIntervalSince($0) < Self.discoveryLifetime } == true ? c.discovery : nil }) {
            return cached
        }
        let url = settings.issuer.hasSuffix("/") ? settings.issuer + ".well-known/openid-configuration" : settings.issuer + "/.well-known/openid-configuration"
        let data = try await get(url, what: "the discovery document")
        let document: Discovery
        do { document = try JSONDecoder().decode(Discovery.self, from: data) } catch {
            throw OIDCError.providerUnavailable("the provider's discovery document at \(url) is not valid OpenID Connect discovery JSON")
        }
        guard document.issuer == settings.issuer else {
            throw OIDCError.providerUnavailable("the provider says its issuer is \(document.issuer), but identity.oidc.issuer is \(settings.issuer); they must be identical")
        }
        cache.withLock { c in
            c.discovery = document
            c.discoveredAt = now
        }
        return document
    }

    /// The provider's key for `kid` (its only key when the token names none) from the keys fetched within
    /// `keyLifetime`; the keys are fetched again when they are older, or when none fits.
    func signingKey(kid: String?, now: Date) async throws -> JWK? {
        let (found, fetchedAt) = cache.withLock { ($0.key(kid), $0.keysFetchedAt) }
        if let found, let fetchedAt, now.timeIntervalSince(fetchedAt) < Self.keyLifetime { return found }
        do {
            _ = try await refreshKeys(now: now)
        } catch {
            // The provider's key set cannot be read just now: a key it published before still verifies (the token
            // itself came from the provider's token endpoint a moment ago).
            guard let found else { throw error }
            logger.warning("the provider's key set could not be fetched again; using the keys fetched before", metadata: ["error": "\(error)"])
            return found
        }
        return cache.withLock { $0.key(kid) }
    }

    /// Fetches the provider's key set, unless it was fetched within `keyRefreshInterval`; whether it did.
    func refreshKeys(now: Date) async throws -> Bool {
        if let fetchedAt = cache.withLock({ $0.keysFetchedAt }), abs(now.timeIntervalSince(fetchedAt)) < Self.keyRefreshInterval { return false }
        let discovery = try await discovery(now: now)
        let data = try await get(discovery.jwksURI, what: "the signing keys (JWKS)")
        guard let set = try? JSONDecoder().decode(KeySet.self, from: data) else {
            throw OIDCError.providerUnavailable("the provider's key set at \(discovery.jwksURI) is not a JWKS document")
        }
        cache.withLock { c in
            c.keys = [:]
            c.unnamedKeys = []
            for key in set.keys.compactMap(\.key) {
                if let id = key.keyIdentifier?.string { c.keys[id] = key } else { c.unnamedKeys.append(key) }
            }
            c.keysFetchedAt = now
        }
        return true
    }

    struct KeySet: Decodable {
        var keys: [TolerantKey]
    }

    /// A key of a type jwt-kit does not know (or an encryption key) is skipped, not fatal.
    struct TolerantKey: Decodable {
        var key: JWK?
        init(from decoder: any Decoder) throws { key = try? JWK(from: decoder) }
    }

    // MARK: the flow

    /// Where to send the person: the provider's authorization endpoint with PKCE (S256), state and nonce.
    public func authorizationURL(state: String, nonce: String, codeChallenge: String, redirectURI: String) async throws -> String {
        let discovery = try await discovery()
        if let methods = discovery.codeChallengeMethods, !methods.contains("S256") {
            throw OIDCError.providerUnavailable("the provider does not offer PKCE with S256 (it offers \(methods.joined(separator: ", "))); Gatehouse requires it")
        }
        guard var components = URLComponents(string: discovery.authorizationEndpoint) else {
            throw OIDCError.providerUnavailable("the provider's authorization endpoint \(discovery.authorizationEndpoint) is not a URL")
        }
        components.queryItems = (components.queryItems ?? []) + [
            URLQueryItem(name: "response_type", value: "code"),
            URLQueryItem(name: "client_id", value: settings.clientID),
            URLQueryItem(name: "redirect_uri", value: redirectURI),
            URLQueryItem(name: "scope", value: settings.scopes.joined(separator: " ")),
            URLQueryItem(name: "state", value: state),
            URLQueryItem(name: "nonce", value: nonce),
            URLQueryItem(name: "code_challenge", value: codeChallenge),
            URLQueryItem(name: "code_challenge_method", value: "S256"),
        ]
        // `+` in a query value means a space to form decoders; spell it out.
        components.percentEncodedQuery = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
        guard let url = components.string else { throw OIDCError.providerUnavailable("cannot build the authorization URL") }
        return url
    }

    /// Trades the authorization code for tokens at the token endpoint (client_secret_basic, with the
    /// PKCE verifier) and returns the ID token.
    public func exchange(code: String, verifier: String, redirectURI: String) async throws -> String {
        let discovery = try await discovery()
        let (status, object) = try await postForm(discovery.tokenEndpoint, [
            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirectURI), ("code_verifier", verifier),
        ], what: "the token endpoint")
        guard status == 200 else { throw Self.tokenEndpointRefusal(status: status, object: object, what: "code exchange") }
        guard let idToken = object["id_token"] as? String else {
            throw OIDCError.refused(SignInRefusal("missing_id_token", "the provider returned no ID token; is `openid` among identity.oidc.scopes and is OpenID Connect enabled for this client?"))
        }
        return idToken
    }

    // MARK: the device authorization grant (RFC 8628)

    /// What the person is shown to sign in from another device.
    public struct DeviceAuthorization: Sendable {
        public var deviceCode: String
        public var userCode: String
        public var verificationURI: String
        public var verificationURIComplete: String?
        public var expiresIn: TimeInterval
        public var interval: Int
    }

    public enum DevicePoll: Sendable {
        case pending
        case slowDown
        case signedIn(IDTokenClaims)
    }

    /// Asks the provider for a device code and a user code.
    public func startDevice() async throws -> DeviceAuthorization {
        let discovery = try await discovery()
        guard let endpoint = discovery.deviceAuthorizationEndpoint else {
            throw OIDCError.refused(SignInRefusal("device_flow_unavailable", "the identity provider does not offer the device authorization grant; run `gatehouse login` without --device on a machine with a browser"))
        }
        let (status, object) = try await postForm(endpoint, [("client_id", settings.clientID), ("scope", settings.scopes.joined(separator: " "))],
                                                  what: "the device authorization endpoint")
        guard status == 200, let deviceCode = object["device_code"] as? String, let userCode = object["user_code"] as? String,
              let uri = object["verification_uri"] as? String else {
            throw Self.tokenEndpointRefusal(status: status, object: object, what: "device authorization")
        }
        return DeviceAuthorization(deviceCode: deviceCode, userCode: userCode, verificationURI: uri,
                                   verificationURIComplete: object["verification_uri_complete"] as? String,
                                   expiresIn: (object["expires_in"] as? NSNumber)?.doubleValue ?? 600,
                                   interval: max(1, (object["interval"] as? NSNumber)?.intValue ?? 5))
    }

    /// Asks the provider whether the person has approved the device sign-in. The ID token, when the
    /// provider gives one, is verified like any other; otherwise the claims come from the provider's
    /// userinfo endpoint, called with the access token over the same connection to the issuer.
    public func pollDevice(deviceCode: String, now: Date = Date()) async throws -> DevicePoll {
        let discovery = try await discovery()
        let (status, object) = try await postForm(discovery.tokenEndpoint, [
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("device_code", deviceCode), ("client_id", settings.clientID),
        ], what: "the token endpoint")
        if status != 200 {
            switch object["error"] as? String {
            case "authorization_pending": return .pending
            case "slow_down": return .slowDown
            case "access_denied": throw OIDCError.refused(SignInRefusal("device_denied", "the sign-in was refused at the identity provider"))
            case "expired_token": throw OIDCError.refused(SignInRefusal("device_expired", "the code expired before anyone entered it; run `gatehouse login --device` again"))
            default: throw Self.tokenEndpointRefusal(status: status, object: object, what: "device sign-in")
            }
        }
        if let idToken = object["id_token"] as? String {
            return .signedIn(try await verify(idToken: idToken, nonce: nil, now: now))
        }
        guard let accessToken = object["access_token"] as? String, let userinfo = discovery.userinfoEndpoint else {
            throw OIDCError.refused(SignInRefusal("missing_id_token", "the provider returned neither an ID token nor a userinfo endpoint for the device sign-in"))
        }
        var request = HTTPClientRequest(url: userinfo)
        request.headers.add(name: "Authorization", value: "Bearer \(accessToken)")
        request.headers.add(name: "Accept", value: "application/json")
        let (infoStatus, data) = try await send(request, what: "the userinfo endpoint")
        guard infoStatus == 200, var payload = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw OIDCError.refused(SignInRefusal("userinfo_refused", "the provider's userinfo endpoint answered \(infoStatus)"))
        }
        // Userinfo is the issuer's own answer about this access token: it names no issuer, audience or times.
        payload["iss"] = settings.issuer
        payload["aud"] = settings.clientID
        payload["iat"] = now.timeIntervalSince1970
        payload["exp"] = now.timeIntervalSince1970 + 60
        guard let claims = Self.claims(payload: payload, groupsClaim: settings.groupsClaim) else {
            throw OIDCError.refused(SignInRefusal("missing_claim", "the provider's userinfo has no `sub`"))
        }
        if let refusal = SignInRules.checkClaims(claims, issuer: settings.issuer, clientID: settings.clientID, nonce: nil, now: now) {
            throw OIDCError.refused(refusal)
        }
        return .signedIn(claims)
    }

    func postForm(_ url: String, _ fields: [(String, String)], what: String) async throws -> (Int, [String: Any]) {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/json")
        let credentials = Data("\(Self.formEncode(settings.clientID)):\(Self.formEncode(clientSecret))".utf8).base64EncodedString()
        request.headers.add(name: "Authorization", value: "Basic \(credentials)")
        request.body = .bytes(ByteBuffer(string: fields.map { "\($0.0)=\(Self.formEncode($0.1))" }.joined(separator: "&")))
        let (status, data) = try await send(request, what: what)
        return (status, (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:])
    }

    static func tokenEndpointRefusal(status: Int, object: [String: Any], what: String) -> OIDCError {
        let error = object["error"] as? String ?? "HTTP \(status)"
        let detail = (object["error_description"] as? String).map { ": \($0.prefix(200))" } ?? ""
        switch error {
        case "invalid_client":
            return .refused(SignInRefusal("provider_refused_client", "the provider refused Gatehouse's client credentials (invalid_client\(detail)); check identity.oidc.client_id and the client secret"))
        case "invalid_grant":
            return .refused(SignInRefusal("provider_refused_code", "the provider refused the sign-in code (invalid_grant\(detail)): it was used already, expired, or does not match this sign-in; start again"))
        default:
            return .refused(SignInRefusal("provider_refused", "the provider refused the \(what) (\(error)\(detail))"))
        }
    }

    /// Verifies an ID token's signature against the provider's keys and its claims against this
    /// sign-in (issuer, audience, expiry, issue time, nonce).
    public func verify(idToken: String, nonce: String?, now: Date = Date()) async throws -> IDTokenClaims {
        let parts = idToken.split(separator: ".", omittingEmptySubsequences: false)
        guard idToken.utf8.count <= 16_384, parts.count == 3, let headerData = Self.base64URLDecode(String(parts[0])),
              let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw OIDCError.refused(SignInRefusal("malformed_token", "the ID token is not a signed JWT"))
        }
        // RFC 7515 4.1.11: extensions marked critical must be understood, and Gatehouse understands none.
        if let critical = header["crit"] {
            throw OIDCError.refused(SignInRefusal("malformed_token", "the ID token's header marks extensions as critical (\(String(describing: critical).prefix(80))), which Gatehouse does not implement"))
        }
        let alg = header["alg"] as? String ?? "none"
        let discovery = try await discovery(now: now)
        let announced = Set(discovery.signingAlgorithms ?? ["RS256"])
        guard Self.asymmetric.contains(alg), announced.contains(alg) else {
            throw OIDCError.refused(SignInRefusal("algorithm_refused", "the ID token is signed with \(alg); only asymmetric algorithms the provider announces are accepted (\(announced.intersection(Self.asymmetric).sorted().joined(separator: ", ")))"))
        }
        let kid = header["kid"] as? String
        guard let key = try await signingKey(kid: kid, now: now) else {
            throw OIDCError.refused(SignInRefusal("unknown_key", "the ID token names signing key \(kid ?? "(none)"), which the provider does not publish"))
        }
        if await !Self.verifies(idToken, key: key, algorithm: alg) {
            // The provider may have put a new key under the same kid (or replaced its one unnamed key, or changed
            // its algorithm) since the keys were fetched: fetch them once more before refusing.
            guard try await refreshKeys(now: now), let again = cache.withLock({ $0.key(kid) }) else { throw Self.refusal(key, alg: alg) }
            guard await Self.verifies(idToken, key: again, algorithm: alg) else { throw Self.refusal(again, alg: alg) }
        }
        guard let payloadData = Self.base64URLDecode(String(parts[1])),
              let payload = try? JSONSerialization.jsonObject(with: payloadData) as? [String: Any],
              let claims = Self.claims(payload: payload, groupsClaim: settings.groupsClaim) else {
            throw OIDCError.refused(SignInRefusal("missing_claim", "the ID token lacks iss, sub, aud, exp or iat"))
        }
        if let refusal = SignInRules.checkClaims(claims, issuer: settings.issuer, clientID: settings.clientID, nonce: nonce, now: now) {
            throw OIDCError.refused(refusal)
        }
        return claims
    }

    /// Why a token that does not verify with `key` is refused: its algorithm does not fit the key, or its signature.
    static func refusal(_ key: JWK, alg: String) -> OIDCError {
        keyFits(key, algorithm: alg)
            ? .refused(SignInRefusal("bad_signature", "the ID token's signature does not verify with the provider's key"))
            : .refused(SignInRefusal("algorithm_refused", "the ID token's algorithm \(alg) does not fit the provider's key \(key.keyIdentifier?.string ?? "")"))
    }

    /// Whether `token`'s signature verifies with `key` under `algorithm` (never with a key that does not fit it).
    static func verifies(_ token: String, key: JWK, algorithm: String) async -> Bool {
        guard keyFits(key, algorithm: algorithm) else { return false }
        do {
            var pinned = key
            pinned.algorithm = JWK.Algorithm(rawValue: algorithm)
            // jwt-kit files keys by kid; a provider's single key without one gets a name of ours.
            if pinned.keyIdentifier == nil { pinned.keyIdentifier = JWKIdentifier(string: "gatehouse-unnamed-key") }
            let keys = try await JWTKeyCollection().add(jwk: pinned)
            _ = try await keys.verify(token, as: SignatureOnly.self)
            return true
        } catch {
            return false
        }
    }

    static func keyFits(_ key: JWK, algorithm: String) -> Bool {
        if let declared = key.algorithm?.rawValue, declared != algorithm { return false }
        switch algorithm.prefix(2) {
        case "RS", "PS": return key.keyType == .rsa
        case "ES": return key.keyType == .ecdsa
        default: return key.keyType == .octetKeyPair
        }
    }

    // MARK: HTTP

    func get(_ url: String, what: String) async throws -> Data {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Accept", value: "application/json")
        let (status, data) = try await send(request, what: what)
        guard status == 200 else { throw OIDCError.providerUnavailable("the provider answered \(status) for \(what) at \(url)") }
        return data
    }

    func send(_ request: HTTPClientRequest, what: String) async throws -> (Int, Data) {
        do {
            let response = try await http.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 20)
            return (Int(response.status.code), Data(buffer: body))
        } catch let error as OIDCError {
            throw error
        } catch {
            logger.warning("identity provider unreachable", metadata: ["url": "\(request.url)", "error": "\(error)"])
            throw OIDCError.providerUnavailable("the identity provider cannot be reached for \(what) (\(request.url)); try again shortly, sessions already open keep working")
        }
    }

    static func formEncode(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    static func base64URLDecode(_ text: String) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}

/// jwt-kit checks the signature only; the claims are read and checked by Gatehouse (`SignInRules`).
struct SignatureOnly: JWTPayload {
    init() {}
    init(from decoder: any Decoder) throws {}
    func encode(to encoder: any Encoder) throws {}
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

extension OIDCClient {
    /// The claims Gatehouse reads, from the (already verified) payload. Nil when a required one is missing.
    static func claims(payload: [String: Any], groupsClaim: String) -> IDTokenClaims? {
        func number(_ key: String) -> Double? { (payload[key] as? NSNumber)?.doubleValue }
        let audience: [String]? = (payload["aud"] as? String).map { [$0] } ?? (payload["aud"] as? [Any])?.compactMap { $0 as? String }
        guard let iss = payload["iss"] as? String, let sub = payload["sub"] as? String, let audience, !audience.isEmpty,
              let exp = number("exp"), let iat = number("iat") else { return nil }
        var verified: Bool?
        if let flag = payload["email_verified"] as? Bool { verified = flag } else if let text = payload["email_verified"] as? String { verified = text == "true" }
        var groups: [String]?
        if let list = payload[groupsClaim] as? [Any] { groups = list.compactMap { $0 as? String } } else if let one = payload[groupsClaim] as? String { groups = [one] }
        return IDTokenClaims(issuer: iss, subject: sub, audience: audience, authorizedParty: payload["azp"] as? String,
                             expiresAt: Date(timeIntervalSince1970: exp), issuedAt: Date(timeIntervalSince1970: iat),
                             notBefore: number("nbf").map { Date(timeIntervalSince1970: $0) }, nonce: payload["nonce"] as? String, preferredUsername: payload["preferred_username"] as? String,
                             email: payload["email"] as? String, emailVerified: verified, groups: groups)
    }
}
