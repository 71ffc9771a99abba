import AsyncHTTPClient
import Crypto
import Foundation
import GatehouseCore
import GatehouseIdentity
import GatehouseTestSupport
import JWTKit
import Logging
import Testing

/// ID tokens that must not sign anyone in, verified the way a sign-in verifies them: against the
/// real provider's discovery document and JWKS. The forgeries are signed with the provider's own
/// private key (which an attacker would not have) so that each one fails for exactly one reason;
/// an untampered forgery passes, which shows the refusals are not for some other cause.
@Suite("ID tokens: hostile and broken ones are refused", .serialized)
struct IDTokenTests {
    struct Claims: JWTPayload {
        var iss: String
        var sub = "42"
        var aud: [String] = [TestProvider.clientID]
        var exp: Int
        var iat: Int
        var nbf: Int?
        var nonce: String? = "n_expected"
        var preferred_username = "erin"
        var groups = ["oncall"]
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    static func client(_ provider: TestProvider) -> OIDCClient {
        let settings = OIDCSettings(issuer: provider.issuer, clientID: TestProvider.clientID,
                                    clientSecret: .file(provider.clientSecretFile), redirectURI: "http://127.0.0.1:1/auth/callback")
        return OIDCClient(settings: settings, clientSecret: TestProvider.clientSecret, logger: Logger(label: "test"))
    }

    static func providerKid(_ provider: TestProvider) async throws -> String {
        let response = try await HTTPClient.shared.get(url: provider.issuer + "/.well-known/jwks.json").get()
        let object = try JSONSerialization.jsonObject(with: Data(buffer: try #require(response.body))) as? [String: Any]
        let keys = object?["keys"] as? [[String: Any]] ?? []
        return try #require(keys.first?["kid"] as? String)
    }

    static func sign(_ claims: Claims, pem: String, kid: String) async throws -> String {
        let keys = try await JWTKeyCollection().add(rsa: Insecure.RSA.PrivateKey(pem: pem), digestAlgorithm: .sha256, kid: JWKIdentifier(string: kid))
        return try await keys.sign(claims, kid: JWKIdentifier(string: kid))
    }

    static func encode(_ object: [String: Any]) throws -> String {
        try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]).base64URLEncoded
    }

    /// The refusal code `verify` gives, or "accepted".
    static func outcome(_ client: OIDCClient, _ token: String, nonce: String? = "n_expected") async -> String {
        do {
            _ = try await client.verify(idToken: token, nonce: nonce)
            return "accepted"
        } catch OIDCError.refused(let refusal) {
            return refusal.code
        } catch {
            return "error: \(error)"
        }
    }

    @Test("wrong audience, wrong issuer, expired, from the future, not yet valid, alg none, a critical header extension, HS256 with the public key, an unknown kid, a bad signature, a missing or wrong nonce")
    func hostileTokens() async throws {
        try await TestProvider.with { provider in
            let client = Self.client(provider)
            let kid = try await Self.providerKid(provider)
            let pem = provider.signingKeyPEM
            let now = Int(Date().timeIntervalSince1970)
            let good = Claims(iss: provider.issuer, exp: now + 300, iat: now)

            let control = try await Self.sign(good, pem: pem, kid: kid)
            #expect(await Self.outcome(client, control) == "accepted")
            let claims = try await client.verify(idToken: control, nonce: "n_expected")
            #expect(claims.groups == ["oncall"])
            #expect(claims.preferredUsername == "erin")

            var wrongAudience = good
            wrongAudience.aud = ["another-app"]
            #expect(await Self.outcome(client, try await Self.sign(wrongAudience, pem: pem, kid: kid)) == "wrong_audience")
            var wrongIssuer = good
            wrongIssuer.iss = "http://127.0.0.1:1/o"
            #expect(await Self.outcome(client, try await Self.sign(wrongIssuer, pem: pem, kid: kid)) == "wrong_issuer")
            var expired = good
            expired.exp = now - 120
            #expect(await Self.outcome(client, try await Self.sign(expired, pem: pem, kid: kid)) == "token_expired")
            var withinSkew = good
            withinSkew.exp = now - 20
            #expect(await Self.outcome(client, try await Self.sign(withinSkew, pem: pem, kid: kid)) == "accepted", "up to 60 s of clock skew is tolerated")
            var future = good
            future.iat = now + 600
            #expect(await Self.outcome(client, try await Self.sign(future, pem: pem, kid: kid)) == "token_from_future")
            var notYet = good
            notYet.nbf = now + 3600
            #expect(await Self.outcome(client, try await Self.sign(notYet, pem: pem, kid: kid)) == "token_not_yet_valid")
            notYet.nbf = now + 20
            #expect(await Self.outcome(client, try await Self.sign(notYet, pem: pem, kid: kid)) == "accepted", "nbf gets the same 60 s of skew")

            // Signed with nothing, or with HMAC keyed by public material.
            let payload = try Self.encode(["iss": provider.issuer, "sub": "42", "aud": TestProvider.clientID, "exp": now + 300, "iat": now,
                                           "nonce": "n_expected", "preferred_username": "erin", "groups": ["oncall"]])
            let none = try Self.encode(["alg": "none", "kid": kid, "typ": "JWT"]) + "." + payload + "."
            #expect(await Self.outcome(client, none) == "algorithm_refused")
            // An extension marked critical that Gatehouse does not implement (RFC 7515 4.1.11), the signature otherwise good.
            let signedParts = control.split(separator: ".")
            let critical = try Self.encode(["alg": "RS256", "kid": kid, "typ": "JWT", "crit": ["x-unknown"], "x-unknown": true])
            #expect(await Self.outcome(client, critical + "." + signedParts[1] + "." + signedParts[2]) == "malformed_token")
            // The classic confusion attack: HS256 keyed with the provider's public key (its PEM, and its JWKS document).
            let hsHeader = try Self.encode(["alg": "HS256", "kid": kid, "typ": "JWT"])
            let publicPEM = try await Command.run("/usr/bin/openssl", ["rsa", "-in", provider.folder + "/keys/signing.pem", "-pubout"])
            #expect(publicPEM.stdout.contains("BEGIN PUBLIC KEY"))
            let jwks = try await HTTPClient.shared.get(url: provider.issuer + "/.well-known/jwks.json").get()
            for material in [Data(publicPEM.stdout.utf8), Data(buffer: try #require(jwks.body))] {
                let mac = HMAC<SHA256>.authenticationCode(for: Data("\(hsHeader).\(payload)".utf8), using: SymmetricKey(data: material))
                #expect(await Self.outcome(client, "\(hsHeader).\(payload).\(Data(mac).base64URLEncoded)") == "algorithm_refused")
            }

            // A key the provider does not publish, and the provider's kid over another key's signature.
            let rogue = try await Command.run("/usr/bin/openssl", ["genrsa", "2048"])
            #expect(rogue.status == 0)
            #expect(await Self.outcome(client, try await Self.sign(good, pem: rogue.stdout, kid: "rogue-key")) == "unknown_key")
            #expect(await Self.outcome(client, try await Self.sign(good, pem: rogue.stdout, kid: kid)) == "bad_signature")

            // Nonce: missing, or another sign-in's.
            var noNonce = good
            noNonce.nonce = nil
            #expect(await Self.outcome(client, try await Self.sign(noNonce, pem: pem, kid: kid)) == "wrong_nonce")
            #expect(await Self.outcome(client, control, nonce: "n_other") == "wrong_nonce")

            // Not a JWT at all.
            #expect(await Self.outcome(client, "not.a.jwt") == "malformed_token")
            #expect(await Self.outcome(client, String(repeating: "a", count: 20_000)) == "malformed_token")
        }
    }

    @Test("the code exchange: without the PKCE verifier, or with another one, the provider refuses the code; with the right one it gives an ID token that verifies")
    func pkce() async throws {
        try await TestProvider.with { provider in
            try await provider.person("erin", groups: ["oncall"])
            let client = Self.client(provider)
            let redirect = "http://127.0.0.1:\(try TestPorts.free())/callback"
            func code(_ verifier: String) async throws -> String {
                let url = try await client.authorizationURL(state: "st_\(UUID().uuidString)", nonce: "n_expected",
                                                            codeChallenge: PKCE.challenge(for: verifier), redirectURI: redirect)
                let visit = try await provider.browse(url, as: "erin", stopAt: redirect)
                return try #require(URLComponents(string: visit.stoppedAt ?? "")?.queryItems?.first { $0.name == "code" }?.value)
            }
            func refusal(_ body: () async throws -> String) async -> String {
                do { _ = try await body(); return "accepted" } catch OIDCError.refused(let r) { return r.code } catch { return "\(error)" }
            }
            let verifier = PKCE.makeVerifier()
            let missing = try await code(verifier)
            #expect(await refusal { try await client.exchange(code: missing, verifier: "", redirectURI: redirect) } == "provider_refused_code")
            let other = try await code(verifier)
            #expect(await refusal { try await client.exchange(code: other, verifier: PKCE.makeVerifier(), redirectURI: redirect) } == "provider_refused_code")
            let good = try await code(verifier)
            let idToken = try await client.exchange(code: good, verifier: verifier, redirectURI: redirect)
            let claims = try await client.verify(idToken: idToken, nonce: "n_expected")
            #expect(claims.preferredUsername == "erin")
            #expect(claims.groups == ["oncall"])
            #expect(await refusal { try await client.exchange(code: good, verifier: verifier, redirectURI: redirect) } == "provider_refused_code", "a code works once")
        }
    }

    @Test("the provider rotates its signing key: tokens with the new kid verify (the keys are fetched again), the old kid still does while published")
    func keyRotation() async throws {
        try await TestProvider.with { provider in
            let client = Self.client(provider)
            let oldKid = try await Self.providerKid(provider)
            let now = Int(Date().timeIntervalSince1970)
            let good = Claims(iss: provider.issuer, exp: now + 300, iat: now)
            let oldToken = try await Self.sign(good, pem: provider.signingKeyPEM, kid: oldKid)
            #expect(await Self.outcome(client, oldToken) == "accepted")
            try await provider.rotateKey()
            let newKid = try await Self.providerKid(provider)
            #expect(newKid != oldKid)
            let newToken = try await Self.sign(good, pem: provider.signingKeyPEM, kid: newKid)
            #expect(await Self.outcome(client, newToken) == "accepted")
            #expect(await Self.outcome(client, oldToken) == "accepted")
        }
    }
}
