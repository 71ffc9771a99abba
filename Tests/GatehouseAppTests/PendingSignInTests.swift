import Foundation
@testable import GatehouseApp
import GatehouseCore
import GatehouseStore
import Testing

/// Starting a sign-in needs no credentials, so the sign-ins under way are capped; at the cap the oldest give
/// way to the new one, and a flood of starts cannot keep anyone from signing in.
@Suite("Sign-ins under way")
struct PendingSignInTests {
    @Test("at the cap a new sign-in pushes out the oldest one under way instead of being refused")
    func oldestGiveWay() async throws {
        try await RetentionTests.with { app, clock, store, _ in
            func start(_ state: String) async throws {
                _ = try await app.signIns.storePending(lifetime: SignIns.pendingLifetime, cap: 3) { now, expiresAt in
                    PendingSignIn(stateHash: TokenSecret.hash(state), nonce: "n-\(state)", verifier: "v-\(state)", purpose: .web,
                                  redirectURI: "https://gatehouse.example/auth/callback", clientHash: nil, createdAt: now, expiresAt: expiresAt)
                }
                clock.advance(by: 1)
            }
            func underWay(_ state: String) async throws -> Bool {
                try await store.read { try await $0.pendingSignIn(stateHash: TokenSecret.hash(state)) } != nil
            }
            for state in ["s1", "s2", "s3"] { try await start(state) }
            for state in ["s1", "s2", "s3"] { #expect(try await underWay(state), "\(state)") }
            // Two more: the two oldest go, the three newest stay, and the count stays at the cap.
            try await start("s4")
            try await start("s5")
            #expect(try await underWay("s1") == false)
            #expect(try await underWay("s2") == false)
            for state in ["s3", "s4", "s5"] { #expect(try await underWay(state), "\(state)") }
            #expect(try await store.read { try await $0.pendingSignInCount() } == 3)
        }
    }

    @Test("the CLI's redirect address is http://127.0.0.1:PORT/callback in one spelling, with a port a listener can have")
    func loopbackRedirects() {
        for good in ["http://127.0.0.1:1/callback", "http://127.0.0.1:53682/callback", "http://127.0.0.1:65535/callback"] {
            #expect(SignIns.isLoopbackRedirect(good), "\(good)")
        }
        for bad in ["http://127.0.0.1:0/callback", "http://127.0.0.1:99999/callback", "http://127.0.0.1:080/callback",
                    "http://127.0.0.1:8080/callback/", "http://127.0.0.1:8080/%63allback", "http://127.0.0.1/callback",
                    "http://127.0.0.1:8080/callback?x=1", "http://127.0.0.1:8080/callback#x", "https://127.0.0.1:8080/callback",
                    "http://localhost:8080/callback", "http://u@127.0.0.1:8080/callback", "http://127.0.0.1:+80/callback",
                    "http://127.0.0.1:٨٠/callback", "http://127.0.0.1:8080/callback\n"] {
            #expect(!SignIns.isLoopbackRedirect(bad), "\(bad)")
        }
    }
}
