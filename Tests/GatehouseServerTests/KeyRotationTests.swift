import Crypto
import Foundation
import GatehouseCore
import GatehouseIdentity
import Hummingbird
import JWTKit
import Logging
import Testing

/// The provider's signing keys followed through the rotations providers really make, against a local
/// provider whose discovery document and key set (JWKS) the test changes: a new key under the same `kid`,
/// its one key without a `kid` replaced, a key withdrawn. (IDTokenTests covers a rotation to a new `kid`
/// with the real provider.)
@Suite("ID tokens: the provider's keys followed through rotation")
struct KeyRotationTests {
    /// Publishes a discovery document and whatever key set it is given, and counts the key set's fetches.
    final class KeyPublisher: Sendable {
        actor Published {
            var keys: [[String: String]] = []
            var fetches = 0
            var down = false
            func set(_ keys: [[String: String]]) { self.keys = keys }
            func setDown(_ down: Bool) { self.down = down }
            func fetched() -> [[String: String]]? { fetches += 1; return down ? nil : keys }
        }
        let published = Published()
        let server: LocalHTTPServer
        var issuer: String { "http://127.0.0.1:\(server.port)" }

        init() async {
            let published = published
            let router = Router()
            router.get("/.well-known/openid-configuration") { request, _ -> Response in
                let base = "http://\(request.head.authority ?? "")"
                return Self.json(["issuer": base, "authorization_endpoint": base + "/authorize", "token_endpoint": base + "/token",
                                  "jwks_uri": base + "/jwks", "id_token_signing_alg_values_supported": ["ES256"]])
            }
            router.get("/jwks") { _, _ -> Response in
                guard let keys = await published.fetched() else { return Response(status: .serviceUnavailable) }
                return Self.json(["keys": keys])
            }
            server = await LocalHTTPServer.start(router, label: "key-publisher")
        }

        static func json(_ object: [String: Any]) -> Response {
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: ByteBuffer(bytes: (try? JSONSerialization.data(withJSONObject: object)) ?? Data())))
        }
    }

    /// An ES256 key pair, published with or without a `kid`.
    struct Key {
        let secret = P256.Signing.PrivateKey()
        let kid: String?

        var published: [String: String] {
            let raw = secret.publicKey.rawRepresentation
            var jwk = ["kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
                       "x": Data(raw.prefix(32)).base64URLEncoded, "y": Data(raw.suffix(32)).base64URLEncoded]
            if let kid { jwk["kid"] = kid }
            return jwk
        }

        func sign(_ claims: IDTokenTests.Claims) async throws -> String {
            let signer = try ES256PrivateKey(pem: secret.pemRepresentation)
            let keys = await JWTKeyCollection().add(ecdsa: signer, kid: kid.map { JWKIdentifier(string: $0) })
            return try await keys.sign(claims, kid: kid.map { JWKIdentifier(string: $0) })
        }
    }

    static func with(_ body: (KeyPublisher, OIDCClient, Date) async throws -> Void) async throws {
        let publisher = await KeyPublisher()
        defer { Task { await publisher.server.stop() } }
        let settings = OIDCSettings(issuer: publisher.issuer, clientID: TestProvider.clientID, clientSecret: .file("/nonexistent"),
                                    redirectURI: "http://127.0.0.1:1/auth/callback")
        let client = OIDCClient(settings: settings, clientSecret: "unused", logger: Logger(label: "test"))
        try await body(publisher, client, Date())
    }

    /// The refusal code of `verify` at `now`, or "accepted".
    static func outcome(_ client: OIDCClient, _ token: String, at now: Date) async -> String {
        do {
            _ = try await client.verify(idToken: token, nonce: "n_expected", now: now)
            return "accepted"
        } catch OIDCError.refused(let refusal) {
            return refusal.code
        } catch {
            return "error: \(error)"
        }
    }

    /// The outcome at `now` of a token `key` signed then, for this provider.
    static func outcome(_ client: OIDCClient, signedBy key: Key, _ publisher: KeyPublisher, at now: Date) async -> String {
        let claims = IDTokenTests.Claims(iss: publisher.issuer, exp: Int(now.timeIntervalSince1970) + 3600, iat: Int(now.timeIntervalSince1970))
        do {
            return await outcome(client, try await key.sign(claims), at: now)
        } catch {
            return "error: \(error)"
        }
    }

    @Test("a new key under the same kid: the keys are fetched again once its signature fails, and it verifies")
    func newKeySameKid() async throws {
        try await Self.with { publisher, client, now in
            let first = Key(kid: "k1"), second = Key(kid: "k1")
            await publisher.published.set([first.published])
            #expect(await Self.outcome(client, signedBy: first, publisher, at: now) == "accepted")
            await publisher.published.set([second.published])
            let later = now.addingTimeInterval(2)
            #expect(await Self.outcome(client, signedBy: second, publisher, at: later) == "accepted")
            #expect(await publisher.published.fetches == 2)
            // The replaced key's tokens no longer verify.
            #expect(await Self.outcome(client, signedBy: first, publisher, at: later.addingTimeInterval(2)) == "bad_signature")
        }
    }

    @Test("the provider's one key without a kid replaced by another: its tokens verify")
    func unnamedKeyReplaced() async throws {
        try await Self.with { publisher, client, now in
            let first = Key(kid: nil), second = Key(kid: nil)
            await publisher.published.set([first.published])
            #expect(await Self.outcome(client, signedBy: first, publisher, at: now) == "accepted")
            await publisher.published.set([second.published])
            let later = now.addingTimeInterval(2)
            #expect(await Self.outcome(client, signedBy: second, publisher, at: later) == "accepted")
        }
    }

    @Test("a key the provider withdrew stops verifying once the fetched keys are older than their lifetime")
    func withdrawnKey() async throws {
        try await Self.with { publisher, client, now in
            let old = Key(kid: "k1"), current = Key(kid: "k2")
            await publisher.published.set([old.published, current.published])
            #expect(await Self.outcome(client, signedBy: old, publisher, at: now) == "accepted")
            await publisher.published.set([current.published])
            let past = now.addingTimeInterval(301)
            #expect(await Self.outcome(client, signedBy: old, publisher, at: past) == "unknown_key")
            #expect(await Self.outcome(client, signedBy: current, publisher, at: past) == "accepted")
        }
    }

    @Test("keys older than their lifetime still verify while the provider's key set cannot be fetched; an unknown kid then cannot")
    func providerDownKeepsKnownKeys() async throws {
        try await Self.with { publisher, client, now in
            let key = Key(kid: "k1"), other = Key(kid: "k2")
            await publisher.published.set([key.published])
            #expect(await Self.outcome(client, signedBy: key, publisher, at: now) == "accepted")
            await publisher.published.setDown(true)
            let later = now.addingTimeInterval(400)
            #expect(await Self.outcome(client, signedBy: key, publisher, at: later) == "accepted")
            #expect(await Self.outcome(client, signedBy: other, publisher, at: later.addingTimeInterval(2)).hasPrefix("error:"))
        }
    }

    @Test("a key replaced under its kid by one of another algorithm: fetched again, and the new key verifies")
    func newAlgorithmSameKid() async throws {
        try await Self.with { publisher, client, now in
            let first = Key(kid: "k1")
            let second = Key(kid: "k1")
            await publisher.published.set([first.published])
            #expect(await Self.outcome(client, signedBy: first, publisher, at: now) == "accepted")
            // The same kid now names a key declared for another algorithm than the tokens' (ES384): refused as such.
            var declared = second.published
            declared["alg"] = "ES384"
            await publisher.published.set([declared])
            let later = now.addingTimeInterval(2)
            #expect(await Self.outcome(client, signedBy: second, publisher, at: later) == "algorithm_refused")
            // Declared for the tokens' algorithm again: the next sign-in fetches it and verifies.
            await publisher.published.set([second.published])
            #expect(await Self.outcome(client, signedBy: second, publisher, at: later.addingTimeInterval(2)) == "accepted")
        }
    }

    @Test("signatures that fail and kids that are unknown fetch the keys at most once a second")
    func refetchesBounded() async throws {
        try await Self.with { publisher, client, now in
            let published = Key(kid: "k1"), forged = Key(kid: "k1"), unknown = Key(kid: "made-up")
            await publisher.published.set([published.published])
            #expect(await Self.outcome(client, signedBy: published, publisher, at: now) == "accepted")
            let later = now.addingTimeInterval(5)
            for _ in 0..<10 {
                #expect(await Self.outcome(client, signedBy: forged, publisher, at: later) == "bad_signature")
                #expect(await Self.outcome(client, signedBy: unknown, publisher, at: later) == "unknown_key")
            }
            #expect(await publisher.published.fetches == 2)
        }
    }
}
