import Foundation
import GatehouseTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct ProxyTLSTests {
    @Test func signInOverTLSWithTheConfiguredCertificate() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("proxy-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let cert = folder.appendingPathComponent("cert.pem").path, key = folder.appendingPathComponent("key.pem").path
        let made = try await Command.run("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                                                              "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key, "-out", cert])
        #expect(made.status == 0, "\(made)")
        let harness = try await ProxyHarness.start(proxyExtra: "tls: {certificate: \(cert), key: \(key)}")
        defer { Task { await harness.stop() } }
        try await harness.grant("alice")
        let result = try await Command.run("/usr/bin/psql", ["-X", "-A", "-t", harness.conninfo(user: "alice", sslmode: "verify-full", extra: "sslrootcert=\(cert)")],
                                           environment: ["PGPASSWORD": harness.tokens["alice"]!], input: "\\conninfo\nSELECT count(*) FROM accounts;\n")
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.contains("SSL connection (protocol: TLSv1.3"), "\(result)")
        #expect(result.stdout.contains("10"), "\(result)")
        // A client that expects a certificate signed by someone else refuses this one.
        let other = folder.appendingPathComponent("other.pem").path
        _ = try await Command.run("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other",
                                                       "-keyout", folder.appendingPathComponent("other.key").path, "-out", other])
        let wrong = try await Command.run("/usr/bin/psql", ["-X", "-A", "-t", harness.conninfo(user: "alice", sslmode: "verify-full", extra: "sslrootcert=\(other)"), "-c", "SELECT 1"],
                                          environment: ["PGPASSWORD": harness.tokens["alice"]!])
        #expect(wrong.status != 0)
        #expect(wrong.stderr.contains("certificate verify failed"), "\(wrong)")
    }
}
