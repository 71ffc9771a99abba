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

/// The proxy's side of TLS to the database, against a PostgreSQL server of its own that serves
/// certificates from a test authority: first one naming only the address 127.0.0.1, then one naming
/// only the name localhost.
@Suite(.serialized) struct UpstreamTLSTests {
    /// Makes `name`.pem/.key signed by `ca` (self-signed when nil) in `folder`.
    static func certificate(_ name: String, in folder: URL, ca: String?, altNames: String?) async throws -> (cert: String, key: String) {
        let cert = folder.appendingPathComponent("\(name).pem").path, key = folder.appendingPathComponent("\(name).key").path
        var arguments = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=\(name)", "-keyout", key, "-out", cert]
        if let altNames { arguments += ["-addext", "subjectAltName=\(altNames)"] }
        if let ca { arguments += ["-CA", ca + ".pem", "-CAkey", ca + ".key"] }
        let made = try await Command.run("/usr/bin/openssl", arguments)
        guard made.status == 0 else { throw TestFailure("openssl: \(made)") }
        return (cert, key)
    }

    static func postgresServer(_ arguments: [String], tls: (cert: String, key: String)? = nil) async throws -> String {
        try await RepositoryScript.run("postgres-server.sh", arguments, environment: tls.map { ["PG_SSL_CERT": $0.cert, "PG_SSL_KEY": $0.key] } ?? [:])
    }

    @Test func verifiedAgainstTheRootCertificateNamed() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("upstream-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let ca = try await Self.certificate("test-ca", in: folder, ca: nil, altNames: nil)
        let other = try await Self.certificate("other-ca", in: folder, ca: nil, altNames: nil)
        let caPath = folder.appendingPathComponent("test-ca").path
        let byAddress = try await Self.certificate("db-address", in: folder, ca: caPath, altNames: "IP:127.0.0.1")
        let byName = try await Self.certificate("db-name", in: folder, ca: caPath, altNames: "DNS:localhost")
        let data = folder.appendingPathComponent("pg").path
        let started = try await Self.postgresServer(["start", data], tls: byAddress)
        var failure: (any Error)?
        do {
            let postgres = try #require(ProxyHarness.server(url: started), "postgres-server.sh: \(started)")
            try await Self.sessions(postgres, data: data, ca: ca.cert, other: other.cert, nameCertificate: byName)
        } catch {
            failure = error
        }
        _ = try? await Self.postgresServer(["stop", data])
        try? FileManager.default.removeItem(at: folder)
        if let failure { throw failure }
    }

    static func sessions(_ postgres: (host: String, port: Int, user: String, password: String, adminDatabase: String), data: String,
                         ca: String, other: String, nameCertificate: (cert: String, key: String)) async throws {
        /// psql through a proxy with this upstream: the answer, or the error.
        func session(host: String, _ upstream: String) async throws -> CommandResult {
            let harness = try await ProxyHarness.start(server: postgres, upstreamHost: host, upstreamExtra: upstream)
            defer { Task { await harness.stop() } }
            try await harness.grant("alice")
            return try await harness.psql("alice", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();\nSELECT count(*) FROM accounts;\n")
        }

        // The certificate names 127.0.0.1: verify-full to that address checks the address against it
        // (no name can be sent in SNI for an address), and the session runs over TLS.
        let address = try await session(host: "127.0.0.1", ", sslmode: verify-full, sslrootcert: \(ca)")
        #expect(address.status == 0 && address.stdout == "t\n10\n", "\(address)")
        // Another authority's roots: refused, and the client is told why.
        let wrongRoots = try await session(host: "127.0.0.1", ", sslmode: verify-full, sslrootcert: \(other)")
        #expect(wrongRoots.stdout.isEmpty, "\(wrongRoots)")
        #expect(wrongRoots.stderr.contains("certificate is not signed by an authority Gatehouse trusts"), "\(wrongRoots)")

        // The store over the same TLS: `serve` starts with the right roots and refuses to with others.
        for (roots, starts) in [(ca, true), (other, false)] {
            let url = "postgres://\(postgres.user):\(postgres.password)@127.0.0.1:\(postgres.port)/\(postgres.adminDatabase)?sslmode=verify-full&sslrootcert=\(roots)"
            let (listening, log) = try await Self.serve(database: url)
            #expect(listening == starts, "\(log)")
            if !starts { #expect(log.contains("certificate is not signed by an authority Gatehouse trusts"), "\(log)") }
        }

        // Now a certificate that names only localhost.
        _ = try await Self.postgresServer(["reload", data], tls: nameCertificate)
        let name = try await session(host: "localhost", ", sslmode: verify-full, sslrootcert: \(ca)")
        #expect(name.status == 0 && name.stdout == "t\n10\n", "\(name)")
        // By address, the name cannot be checked and the address is not in the certificate: refused;
        // verify-ca checks the chain only, and accepts it.
        let unnamed = try await session(host: "127.0.0.1", ", sslmode: verify-full, sslrootcert: \(ca)")
        #expect(unnamed.stdout.isEmpty, "\(unnamed)")
        #expect(unnamed.stderr.contains("certificate does not name 127.0.0.1"), "\(unnamed)")
        let chainOnly = try await session(host: "127.0.0.1", ", sslmode: verify-ca, sslrootcert: \(ca)")
        #expect(chainOnly.status == 0 && chainOnly.stdout == "t\n10\n", "\(chainOnly)")
    }

    /// `gatehouse serve` on a PostgreSQL store: whether it came to listen, and what it logged.
    static func serve(database: String) async throws -> (Bool, String) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("serve-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let policy = folder.appendingPathComponent("policy.yaml").path
        let port = try TestPorts.free()
        try ProxyHarness.policy(proxyPort: try TestPorts.free(), server: ("127.0.0.1", 5432, "u", "p", "postgres"), database: "app", proxyExtra: "")
            .write(toFile: policy, atomically: true, encoding: .utf8)
        let process = try Command.start(ProxyHarness.binary, ["serve", "--policy", policy, "--database", database, "--port", "\(port)"])
        let listening = await waitUntil(timeout: .seconds(20), interval: .milliseconds(100)) { TestPorts.isListening(port) || !process.isRunning }
        let up = listening && process.isRunning && TestPorts.isListening(port)
        await process.stop()
        return (up, process.output)
    }

    /// A root certificate file that cannot be read stops the proxy from starting, with a message naming it.
    @Test func unreadableRootCertificatesStopTheStart() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("upstream-ca-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let notPEM = folder.appendingPathComponent("ca.pem").path
        try "not a certificate\n".write(toFile: notPEM, atomically: true, encoding: .utf8)
        for path in [notPEM, folder.appendingPathComponent("missing.pem").path] {
            do {
                let harness = try await ProxyHarness.start(upstreamExtra: ", sslmode: verify-full, sslrootcert: \(path)")
                await harness.stop()
                Issue.record("the proxy started with sslrootcert \(path)")
            } catch {
                #expect("\(error)".contains("cannot read the database's root certificates (sslrootcert) \(path)"), "\(error)")
            }
        }
    }
}
