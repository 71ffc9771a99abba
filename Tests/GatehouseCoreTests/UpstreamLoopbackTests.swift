import Foundation
import Testing
@testable import GatehouseCore

/// The proxy's upstream defaults to `prefer` TLS only when it is this machine; anywhere else, to
/// verified TLS. "This machine" is decided from the address, not from how a name begins; so is whether
/// the proxy's password may go as cleartext or md5.
@Suite("Upstream loopback")
struct UpstreamLoopbackTests {
    /// The proxy settings a policy with this `upstream` gives.
    static func proxy(host: String, _ upstreamExtra: String = "") throws -> ProxySettings {
        let yaml = """
            version: 1
            principals: {alice: {groups: [engineers]}}
            resources:
              prod-db:
                kind: postgres
                roles:
                  read: {requesters: [engineers], approvals: 0, max_duration: 1h, allows: read}
                proxy:
                  listen: 127.0.0.1:6432
                  upstream: {host: "\(host)", port: 5432, database: app, user: gatehouse_proxy, password_env: PROD_DB_PASSWORD\(upstreamExtra)}
            """
        let result = PolicyLoader.load(yaml: yaml)
        let policy = try #require(result.policy, "\(result.problems)")
        return try #require(policy.resources["prod-db"]?.proxy)
    }

    static func upstreamTLS(host: String) throws -> ProxySettings.UpstreamTLS {
        try proxy(host: host).upstreamTLS
    }

    @Test("cleartext and md5 only to this machine, a verified certificate, or with unverified_password: allow", arguments: [
        ("127.0.0.1", "prefer", "refuse", true), ("db.example.com", "verify-full", "refuse", true),
        ("db.example.com", "require", "refuse", false), ("db.example.com", "prefer", "refuse", false),
        ("127.db.example.com", "require", "refuse", false), ("db.example.com", "require", "allow", true),
    ])
    func weakPasswordRule(host: String, sslmode: String, unverified: String, allowed: Bool) throws {
        let proxy = try Self.proxy(host: host, ", sslmode: \(sslmode), unverified_password: \(unverified)")
        #expect(proxy.weakPasswordAllowed == allowed)
    }

    @Test("loopback: prefer", arguments: ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1"])
    func loopback(_ host: String) throws {
        #expect(try Self.upstreamTLS(host: host) == .prefer)
    }

    @Test("not loopback, whatever the name starts with: verified TLS", arguments: ["127.db.example.com", "127.0.0.1.evil.example", "127.0.0.256",
                                                                                   "db.example.com", "10.0.0.5", "1270.0.0.1", "127.0.0"])
    func remote(_ host: String) throws {
        #expect(try Self.upstreamTLS(host: host) == .verifyFull)
    }
}
