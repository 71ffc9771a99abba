import Crypto
import Foundation
import Testing
@testable import GatehouseCore

@Suite("Standard Webhooks signing")
struct WebhookSigningTests {
    // The example of the Standard Webhooks specification (signature computed independently with
    // Python's hmac module: HMAC-SHA256 over `id.timestamp.body` under the base64-decoded secret).
    static let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    static let id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    static let timestamp: Int64 = 1_614_265_330
    static let body = Array(#"{"test": 2432232314}"#.utf8)

    @Test("the signature matches the specification's example")
    func knownAnswer() throws {
        let key = try StandardWebhooks.key(fromSecret: Self.secret, endpoint: "t")
        #expect(StandardWebhooks.signature(id: Self.id, timestamp: Self.timestamp, body: Self.body, key: key)
                == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    }

    @Test("verification accepts one of several signatures and refuses any change to id, time or body")
    func verification() throws {
        let key = try StandardWebhooks.key(fromSecret: Self.secret, endpoint: "t")
        let good = StandardWebhooks.signature(id: Self.id, timestamp: Self.timestamp, body: Self.body, key: key)
        #expect(StandardWebhooks.verify(id: Self.id, timestamp: Self.timestamp, body: Self.body, signatureHeader: "v1,bm90IGl0 " + good, key: key))
        #expect(!StandardWebhooks.verify(id: Self.id + "x", timestamp: Self.timestamp, body: Self.body, signatureHeader: good, key: key))
        #expect(!StandardWebhooks.verify(id: Self.id, timestamp: Self.timestamp + 1, body: Self.body, signatureHeader: good, key: key))
        #expect(!StandardWebhooks.verify(id: Self.id, timestamp: Self.timestamp, body: Self.body + [0x20], signatureHeader: good, key: key))
        let other = try StandardWebhooks.key(fromSecret: "whsec_" + Data(repeating: 7, count: 32).base64EncodedString(), endpoint: "t")
        #expect(!StandardWebhooks.verify(id: Self.id, timestamp: Self.timestamp, body: Self.body, signatureHeader: good, key: other))
    }

    @Test("secrets must be whsec_ and 24 to 64 bytes of base64", arguments: [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_" + Data(repeating: 1, count: 8).base64EncodedString(),
        "whsec_" + Data(repeating: 1, count: 65).base64EncodedString(), "",
    ])
    func badSecrets(_ secret: String) {
        #expect(throws: WebhookSecretError.self) { try StandardWebhooks.key(fromSecret: secret, endpoint: "siem") }
    }

    @Test("a secret named by an unset variable is reported with the variable's name")
    func missingVariable() {
        let endpoint = WebhookEndpoint(name: "siem", url: "https://x.example", secret: .environment("NOT_SET_ANYWHERE"))
        #expect(throws: WebhookSecretError.self) { try endpoint.signingKey(environment: [:]) }
        do { _ = try endpoint.signingKey(environment: [:]) } catch { #expect(error.message.contains("NOT_SET_ANYWHERE")) }
        #expect((try? endpoint.signingKey(environment: ["NOT_SET_ANYWHERE": Self.secret])) != nil)
    }

    @Test("retries back off exponentially up to the maximum, with at most 20 % jitter")
    func backoff() {
        let schedule = RetrySchedule(initial: TimeSpan(seconds: 5), maximum: TimeSpan(seconds: 60), attempts: 5)
        #expect(schedule.delay(afterAttempt: 1, jitter: 0) == 5)
        #expect(schedule.delay(afterAttempt: 2, jitter: 0) == 10)
        #expect(schedule.delay(afterAttempt: 4, jitter: 0) == 40)
        #expect(schedule.delay(afterAttempt: 5, jitter: 0) == 60)
        #expect(schedule.delay(afterAttempt: 30, jitter: 1) == 72)
    }
}
