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
        let result = PolicyLoader.load(yaml: yaml(host: host, upstreamExtra))
        let policy = try #require(result.policy, "\(result.problems)")
        return try #require(policy.resources["prod-db"]?.proxy)
    }

    /// A policy whose one proxy has this `upstream` host and more fields.
    static func yaml(host: String, _ upstreamExtra: String) -> String {
        """
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

    @Test("connection_check: enabled by default, disabled for an upstream that refuses the setting, nothing else")
    func connectionCheck() throws {
        #expect(try Self.proxy(host: "127.0.0.1").connectionCheck)
        #expect(try Self.proxy(host: "127.0.0.1", ", connection_check: enabled").connectionCheck)
        #expect(try Self.proxy(host: "127.0.0.1", ", connection_check: disabled").connectionCheck == false)
        let wrong = PolicyLoader.load(yaml: Self.yaml(host: "127.0.0.1", ", connection_check: off"))
        #expect(wrong.policy == nil)
        #expect(wrong.problems.contains { $0.message.contains("connection_check must be `enabled` (the default) or `disabled`") }, "\(wrong.problems)")
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

/// `sslrootcert` names the authorities the database's certificate is checked against; it is only
/// accepted where a certificate is checked.
@Suite("Upstream root certificates")
struct UpstreamRootCertificateTests {
    @Test func readWithVerifyModes() throws {
        let full = try UpstreamLoopbackTests.proxy(host: "10.0.0.5", ", sslmode: verify-full, sslrootcert: /etc/gatehouse/db-ca.pem")
        #expect(full.upstreamRootCertificates == "/etc/gatehouse/db-ca.pem")
        #expect(full.upstreamTLS == .verifyFull)
        // The default for a host that is not this machine is verify-full, so sslmode may be left out.
        let defaulted = try UpstreamLoopbackTests.proxy(host: "db.example.com", ", sslrootcert: /etc/gatehouse/db-ca.pem")
        #expect(defaulted.upstreamTLS == .verifyFull)
        let ca = try UpstreamLoopbackTests.proxy(host: "db.example.com", ", sslmode: verify-ca, sslrootcert: /etc/gatehouse/db-ca.pem")
        #expect(ca.upstreamTLS == .verifyCA)
        // verify-ca checks the chain, not the name: not enough to send a cleartext or md5 password.
        #expect(!ca.weakPasswordAllowed)
        #expect(try UpstreamLoopbackTests.proxy(host: "db.example.com").upstreamRootCertificates == nil)
    }

    @Test func verifyCANeedsItsOwnRoots() throws {
        let result = PolicyLoader.load(yaml: UpstreamLoopbackTests.yaml(host: "db.example.com", ", sslmode: verify-ca"))
        #expect(result.policy == nil)
        #expect(result.problems.contains { $0.message.contains("sslmode verify-ca needs sslrootcert") }, "\(result.problems)")
    }

    @Test("refused where no certificate is checked", arguments: ["require", "prefer", "disable"])
    func refusedWithoutVerification(_ mode: String) throws {
        let yaml = UpstreamLoopbackTests.yaml(host: "db.example.com", ", sslmode: \(mode), sslrootcert: /ca.pem")
        let result = PolicyLoader.load(yaml: yaml)
        #expect(result.policy == nil)
        let problem = try #require(result.problems.first)
        #expect(problem.description.contains("sslrootcert is used only to verify the database's certificate"), "\(result.problems)")
        #expect(problem.description.contains("sslmode \(mode)"), "\(result.problems)")
        #expect(problem.line == 10, "\(result.problems)")
    }
}
