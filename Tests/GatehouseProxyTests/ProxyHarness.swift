import Foundation
import GatehouseTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A `gatehouse serve --proxy` process of the binary the test command built, guarding a fresh
/// database on the throwaway PostgreSQL server the test command started (`GATEHOUSE_TEST_POSTGRES`).
/// Clients are the real ones: `psql`, the `gatehouse` CLI, Python's psycopg.
final class ProxyHarness: @unchecked Sendable {
    static let adminToken = "proxy-test-admin-token-0123456789"
    static let upstreamPasswordVariable = "GATEHOUSE_TEST_UPSTREAM_PASSWORD"

    let folder: URL
    let httpPort: Int
    let proxyPort: Int
    let database: String
    let server: (host: String, port: Int, user: String, password: String, adminDatabase: String)
    let process: Command.Running
    private(set) var tokens: [String: String] = [:]

    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    static var binary: String { repositoryRoot.appendingPathComponent(".build/debug/gatehouse").path }

    static func postgresServer() throws -> (host: String, port: Int, user: String, password: String, adminDatabase: String) {
        guard let text = ProcessInfo.processInfo.environment["GATEHOUSE_TEST_POSTGRES"], let server = server(url: text) else {
            throw TestFailure("no PostgreSQL server for the proxy tests: run the suite with scripts/test.sh, which starts one and sets GATEHOUSE_TEST_POSTGRES")
        }
        return server
    }

    /// A server's parts from the URL `scripts/postgres-server.sh start` prints.
    static func server(url text: String) -> (host: String, port: Int, user: String, password: String, adminDatabase: String)? {
        guard let url = URLComponents(string: text.trimmingCharacters(in: .whitespacesAndNewlines)),
              let host = url.host, let user = url.user, let password = url.password else { return nil }
        return (host, url.port ?? 5432, user, password, String(url.path.dropFirst()))
    }

    /// The policy: alice and bob engineers, carol a DBA, erin security (admin). `prod-db` is guarded.
    static func policy(proxyPort: Int, server: (host: String, port: Int, user: String, password: String, adminDatabase: String),
                       database: String, proxyExtra: String, upstreamHost: String? = nil, upstreamExtra: String = "") -> String {
        """
        version: 1
        principals:
          alice: {groups: [engineers]}
          bob:   {groups: [engineers]}
          carol: {groups: [dba]}
          erin:  {groups: [security]}
        admins: [security]
        resources:
          prod-db:
            kind: postgres
            roles:
              read:  {requesters: [engineers], approvals: 0, max_duration: 8h, allows: read}
              write: {requesters: [engineers], approvals: 0, max_duration: 1h, allows: write}
              admin: {requesters: [engineers], approvals: 0, max_duration: 1h, allows: dangerous}
            actions: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 1h}
            proxy:
              listen: 127.0.0.1:\(proxyPort)
              upstream: {host: \(upstreamHost ?? server.host), port: \(server.port), database: \(database), user: \(server.user), password_env: \(upstreamPasswordVariable)\(upstreamExtra)}
        \(proxyExtra.split(separator: "\n").map { "      " + $0 }.joined(separator: "\n"))
        antispam: {enabled: false}
        """
    }

    /// Creates the database (a table `accounts` with ids 1 to 10, balance 100), writes the policy,
    /// starts the server and makes tokens for every principal.
    /// `server` is another PostgreSQL server than the test command's; `upstreamHost` another name for
    /// it in the policy; `upstreamExtra` more fields of the policy's `upstream` (", sslmode: ...").
    static func start(proxyExtra: String = "", server: (host: String, port: Int, user: String, password: String, adminDatabase: String)? = nil,
                      upstreamHost: String? = nil, upstreamExtra: String = "") async throws -> ProxyHarness {
        let server = try server ?? postgresServer()
        let database = "px_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("proxy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let created = try await Command.run("/usr/bin/psql", ["-X", "-v", "ON_ERROR_STOP=1", "-c", "CREATE DATABASE \(database)", directURL(server, server.adminDatabase)])
        guard created.status == 0 else { throw TestFailure("cannot create the test database: \(created)") }
        let setup = try await Command.run("/usr/bin/psql", ["-X", "-v", "ON_ERROR_STOP=1", directURL(server, database)], input: """
            CREATE TABLE accounts(id int PRIMARY KEY, balance int NOT NULL);
            INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 10) g;
            """)
        guard setup.status == 0 else { throw TestFailure("cannot fill the test database: \(setup)") }

        // A port found free can be taken by another test's listener before the server binds it: the server is
        // started again on other ports unless the one answering is this one (it knows the admin token).
        var started: ProxyHarness?
        for attempt in 1...3 {
            let proxyPort = try TestPorts.free(), httpPort = try TestPorts.free()
            let policyPath = folder.appendingPathComponent("policy.yaml").path
            try policy(proxyPort: proxyPort, server: server, database: database, proxyExtra: proxyExtra, upstreamHost: upstreamHost, upstreamExtra: upstreamExtra)
                .write(toFile: policyPath, atomically: true, encoding: .utf8)
            try? FileManager.default.removeItem(atPath: "\(folder.path)/gatehouse.db")
            let process = try Command.start(binary, ["serve", "--proxy", "--policy", policyPath, "--database", "sqlite:\(folder.path)/gatehouse.db",
                                                     "--port", "\(httpPort)", "--log-level", "warning"],
                                            environment: ["GATEHOUSE_ADMIN_TOKEN": adminToken, upstreamPasswordVariable: server.password])
            let harness = ProxyHarness(folder: folder, httpPort: httpPort, proxyPort: proxyPort, database: database, server: server, process: process)
            let listening = await waitUntil(timeout: .seconds(20), interval: .milliseconds(100)) {
                (TestPorts.isListening(proxyPort) && TestPorts.isListening(httpPort)) || !process.isRunning
            }
            if listening, process.isRunning, TestPorts.isListening(proxyPort),
               try await harness.cli(token: adminToken, ["whoami"]).status == 0, process.isRunning {
                started = harness
                break
            }
            let log = harness.log
            if attempt == 3 {
                await harness.stop()
                throw TestFailure("gatehouse serve --proxy did not start: \(log)")
            }
            await harness.stop(keepingData: true)
        }
        guard let harness = started else { throw TestFailure("gatehouse serve --proxy did not start") }
        for name in ["alice", "bob", "carol", "erin"] {
            let made = try await harness.cli(token: adminToken, ["token", "create", name, "--output", "json"])
            guard made.status == 0, let data = made.stdout.data(using: .utf8),
                  let json = try JSONSerialization.jsonObject(with: data) as? [String: Any], let token = json["token"] as? String else {
                throw TestFailure("token create \(name) failed: \(made)")
            }
            harness.tokens[name] = token
        }
        return harness
    }

    private init(folder: URL, httpPort: Int, proxyPort: Int, database: String,
                 server: (host: String, port: Int, user: String, password: String, adminDatabase: String), process: Command.Running) {
        self.folder = folder
        self.httpPort = httpPort
        self.proxyPort = proxyPort
        self.database = database
        self.server = server
        self.process = process
    }

    var log: String { process.output }

    static func directURL(_ server: (host: String, port: Int, user: String, password: String, adminDatabase: String), _ database: String) -> String {
        "postgresql://\(server.user):\(server.password)@\(server.host):\(server.port)/\(database)"
    }

    /// The gatehouse CLI against this server.
    func cli(token: String, _ arguments: [String]) async throws -> CommandResult {
        try await Command.run(Self.binary, arguments, environment: ["GATEHOUSE_URL": "http://127.0.0.1:\(httpPort)", "GATEHOUSE_TOKEN": token])
    }

    func cli(as principal: String, _ arguments: [String]) async throws -> CommandResult {
        try await cli(token: tokens[principal] ?? principal, arguments)
    }

    /// A libpq connection string to the proxy.
    func conninfo(user: String, sslmode: String = "disable", extra: String = "") -> String {
        "host=127.0.0.1 port=\(proxyPort) user=\(user) dbname=prod-db sslmode=\(sslmode) connect_timeout=10 \(extra)"
    }

    /// The same as a URL (drivers such as asyncpg take only this form).
    func url(user: String, sslmode: String = "disable") -> String {
        "postgresql://\(user)@127.0.0.1:\(proxyPort)/prod-db?sslmode=\(sslmode)"
    }

    /// psql through the proxy, signed in as `user` with `token` (default: the user's own token).
    func psql(_ user: String, token: String? = nil, sslmode: String = "disable", _ script: String) async throws -> CommandResult {
        try await Command.run("/usr/bin/psql", ["-X", "-A", "-t", "-v", "ON_ERROR_STOP=0", conninfo(user: user, sslmode: sslmode)],
                              environment: ["PGPASSWORD": token ?? tokens[user] ?? ""], input: script)
    }

    /// psql straight to the database, as the proxy's own user: to see what really happened.
    func direct(_ sql: String) async throws -> String {
        let result = try await Command.run("/usr/bin/psql", ["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql, Self.directURL(server, database)])
        guard result.status == 0 else { throw TestFailure("direct query failed: \(result)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Grants `principal` a role on prod-db at once (the test policy needs no approval for roles).
    @discardableResult
    func grant(_ principal: String, role: String = "read") async throws -> String {
        let result = try await cli(as: principal, ["request", "prod-db", "--role", role, "--for", "30m", "--reason", "INC-42 checking the accounts table", "--output", "json"])
        guard result.status == 0, let data = result.stdout.data(using: .utf8),
              let json = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TestFailure("request failed: \(result)")
        }
        guard let grant = (json["grant"] as? [String: Any])?["id"] as? String ?? json["grant_id"] as? String else {
            throw TestFailure("no grant in \(result.stdout)")
        }
        return grant
    }

    /// Events of the audit log with this action, as JSON objects.
    func audit(action: String) async throws -> [[String: Any]] {
        let result = try await cli(token: Self.adminToken, ["audit", "--output", "json", "--limit", "1000"])
        guard result.status == 0, let data = result.stdout.data(using: .utf8),
              let json = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let events = json["events"] as? [[String: Any]] else {
            throw TestFailure("audit failed: \(result)")
        }
        return events.filter { $0["action"] as? String == action }
    }

    /// Stops the server and drops its databases; `keepingData` stops only the server (to start it again).
    func stop(keepingData: Bool = false) async {
        await process.stop()
        guard !keepingData else { return }
        _ = try? await Command.run("/usr/bin/psql", ["-X", "-c", "DROP DATABASE IF EXISTS \(database) WITH (FORCE)", Self.directURL(server, server.adminDatabase)])
        try? FileManager.default.removeItem(at: folder)
    }
}
