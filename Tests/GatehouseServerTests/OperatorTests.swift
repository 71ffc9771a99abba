import AsyncHTTPClient
import Foundation
import GatehouseCore
import GatehouseTestSupport
import NIOCore
import NIOHTTP1
import Testing

/// What operators meet: `/metrics` read by Prometheus's own Python client, request ids, JSON logs,
/// settings from a file and the environment, a graceful stop under load, and the systemd unit.
@Suite("Operators: metrics, logs, settings, shutdown, service unit", .serialized)
struct OperatorTests {
    // MARK: /metrics

    /// `/metrics` parsed with prometheus_client's text parser (strict: a malformed exposition fails):
    /// family name → samples (name, labels, value).
    static func parse(_ text: String) async throws -> [String: [(name: String, labels: [String: String], value: Double)]] {
        let python = try await RepositoryScript.run("oidc-provider.sh", ["python"])
        let script = """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families
            out = {}
            for family in text_string_to_metric_families(sys.stdin.read()):
                out[family.name] = [{"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples]
            print(json.dumps(out))
            """
        let parsed = try await Command.run(python, ["-c", script], input: text)
        guard parsed.status == 0, let json = try JSONSerialization.jsonObject(with: Data(parsed.stdout.utf8)) as? [String: [[String: Any]]] else {
            throw TestFailure("prometheus_client could not parse /metrics: \(parsed)")
        }
        return json.mapValues { samples in
            samples.map { ($0["name"] as? String ?? "", $0["labels"] as? [String: String] ?? [:], ($0["value"] as? NSNumber)?.doubleValue ?? .nan) }
        }
    }

    static func value(_ families: [String: [(name: String, labels: [String: String], value: Double)]], _ sample: String,
                      _ labels: [String: String] = [:]) -> Double? {
        families.values.joined().first { found in found.name == sample && labels.allSatisfy { key, value in found.labels[key] == value } }?.value
    }

    @Test func metricsFromTheStartAndRequestIDs() async throws {
        try await TestServer.with { server in
            let first = try await server.send(.GET, "/metrics", token: nil)
            #expect(first.status == 200)
            let families = try await Self.parse(String(decoding: first.body, as: UTF8.self))
            #expect(Self.value(families, "gatehouse_build_info", ["version": BuildInfo.version]) == 1)
            let now = Date().timeIntervalSince1970
            #expect((Self.value(families, "process_resident_memory_bytes") ?? 0) > 1_000_000)
            #expect((Self.value(families, "process_virtual_memory_bytes") ?? 0) > 1_000_000)
            #expect((Self.value(families, "process_open_fds") ?? 0) > 2)
            #expect((Self.value(families, "process_max_fds") ?? 0) >= (Self.value(families, "process_open_fds") ?? .infinity))
            #expect((Self.value(families, "process_cpu_seconds_total") ?? -1) > 0)
            #expect(abs((Self.value(families, "process_start_time_seconds") ?? 0) - now) < 86_400, "the test process started today")
            // Every labelled series is there before its first event, at zero.
            for (sample, labels) in [("gatehouse_antispam_total", ["outcome": "limited", "reason": "per-principal"]),
                                     ("gatehouse_antispam_total", ["outcome": "quarantined", "reason": "burst"]),
                                     ("gatehouse_antispam_total", ["outcome": "blocked", "reason": "report"]),
                                     ("gatehouse_notifications_total", ["kind": "request"]),
                                     ("gatehouse_webhook_attempts_total", ["outcome": "failed"]),
                                     ("gatehouse_slack_interactions_total", ["outcome": "approved"]),
                                     ("gatehouse_proxy_sessions_total", ["outcome": "refused"]),
                                     ("gatehouse_proxy_statements_total", ["outcome": "refused"]),
                                     ("gatehouse_proxy_sessions_active", [:]),
                                     ("gatehouse_requests_waiting", ["state": "pending"]),
                                     ("gatehouse_requests_waiting", ["state": "quarantined"]),
                                     ("gatehouse_grants_active", [:]),
                                     ("gatehouse_outbox_queue_depth", [:]),
                                     ("gatehouse_outbox_oldest_age_seconds", [:]),
                                     ("gatehouse_http_request_duration_seconds_count", ["route": "/v1/check", "method": "POST"]),
                                     ("gatehouse_http_request_duration_seconds_count", ["route": "/v1/requests/{id}/approve", "method": "POST"])] {
                #expect(Self.value(families, sample, labels) == 0, "\(sample) \(labels)")
            }
            let health = try await server.health()
            #expect(health.string("version") == BuildInfo.version && health.string("status") == "ok")
            // Every answer carries its own request id, refusals included.
            let firstID = try #require(first.headers.first(name: "X-Request-Id"))
            let missing = try await server.send(.GET, "/nowhere", token: nil)
            let missingID = try #require(missing.headers.first(name: "X-Request-Id"))
            #expect(missing.status == 404 && !firstID.isEmpty && firstID != missingID)
            // A method the path does not take is counted under that path's route, not as a missing page.
            let wrongMethod = try await server.send(.DELETE, "/v1/requests/r-none/approve", token: nil)
            #expect(wrongMethod.status == 405)

            // Events move the series: a request waits, is approved, and its grant is in force.
            let tokens = try await server.tokens("alice", "carol")
            let filed = try await server.request(tokens["alice"]!)
            #expect(filed.status == 201)
            var current = try await Self.parse(String(decoding: try await server.send(.GET, "/metrics", token: nil).body, as: UTF8.self))
            #expect(Self.value(current, "gatehouse_requests_waiting", ["state": "pending"]) == 1)
            #expect(Self.value(current, "gatehouse_http_requests_total", ["route": "/v1/requests", "method": "POST", "status": "201"]) == 1)
            #expect(Self.value(current, "gatehouse_http_requests_total", ["route": "NotFound", "method": "GET", "status": "404"]) == 1)
            #expect(Self.value(current, "gatehouse_http_requests_total", ["route": "/v1/requests/{id}/approve", "method": "DELETE", "status": "405"]) == 1)
            #expect(Self.value(current, "gatehouse_http_requests_total", ["route": "NotFound", "method": "DELETE"]) == nil)
            #expect(Self.value(current, "gatehouse_http_request_duration_seconds_count", ["route": "/v1/requests", "method": "POST"]) == 1)
            let approved = try await server.approve(tokens["carol"]!, try #require(filed.string("id")))
            #expect(approved.status == 200)
            current = try await Self.parse(String(decoding: try await server.send(.GET, "/metrics", token: nil).body, as: UTF8.self))
            #expect(Self.value(current, "gatehouse_requests_waiting", ["state": "pending"]) == 0)
            #expect(Self.value(current, "gatehouse_grants_active") == 1)
            #expect(Self.value(current, "gatehouse_http_requests_total", ["route": "/v1/requests/{id}/approve", "method": "POST", "status": "200"]) == 1)
        }
    }

    // MARK: settings and logs

    static func folder(_ name: String) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }

    /// Writes the test policy into `folder` and returns its path.
    static func policy(in folder: URL) throws -> String {
        let path = folder.appendingPathComponent("policy.yaml").path
        try TestServer.policyYAML.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The JSON objects of a process's log, one per line; a line that is not one fails the test.
    static func jsonLines(_ output: String, sourceLocation: SourceLocation = #_sourceLocation) -> [[String: Any]] {
        output.split(separator: "\n").compactMap { line in
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object != nil, "not a JSON log line: \(line)", sourceLocation: sourceLocation)
            return object
        }
    }

    @Test func settingsFromAFileTheEnvironmentAndFlagsWithJSONLogs() async throws {
        let folder = try Self.folder("serve-config")
        defer { try? FileManager.default.removeItem(at: folder) }
        let policy = try Self.policy(in: folder)
        let (filePort, envPort, flagPort) = (try TestPorts.free(), try TestPorts.free(), try TestPorts.free())
        let config = folder.appendingPathComponent("gatehouse.yaml").path
        try """
            # settings of the test server
            policy: \(policy)
            database: sqlite:\(folder.path)/gatehouse.db
            port: \(filePort)
            log_format: json
            log_level: debug
            retention: 90d
            """.write(toFile: config, atomically: true, encoding: .utf8)

        // The file alone: its port, its store, JSON log lines with the request id of each request.
        let fromFile = try await ServeProcess.start(["--config", config], port: filePort, name: "config file")
        let whoami = try await fromFile.whoami(TestServer.adminToken)
        await fromFile.stop()
        #expect(whoami.status == 200)
        let id = try #require(whoami.headers.first(name: "X-Request-Id"))
        let lines = Self.jsonLines(fromFile.output)
        #expect(lines.allSatisfy { $0["time"] is String && $0["level"] is String && $0["message"] is String && $0["label"] as? String == "gatehouse" })
        #expect(lines.contains { $0["message"] as? String == "gatehouse listening" }, "\(fromFile.output)")
        let answered = lines.first { $0["request_id"] as? String == id }
        #expect(answered?["route"] as? String == "/v1/whoami" && answered?["status"] as? String == "200", "\(fromFile.output)")
        #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("gatehouse.db").path))

        // The environment wins over the file (GATEHOUSE_CONFIG names the file), a flag over both.
        let fromEnvironment = try await ServeProcess.start([], port: envPort, name: "environment",
                                                           environment: ["GATEHOUSE_CONFIG": config, "GATEHOUSE_PORT": "\(envPort)", "GATEHOUSE_LOG_FORMAT": "text"])
        await fromEnvironment.stop()
        #expect(!fromEnvironment.output.contains("{\""), "text log lines: \(fromEnvironment.output)")
        let fromFlag = try await ServeProcess.start(["--config", config, "--port", "\(flagPort)"], port: flagPort, name: "flag",
                                                    environment: ["GATEHOUSE_PORT": "\(envPort)"])
        await fromFlag.stop()
        #expect(!TestPorts.isListening(filePort) && !TestPorts.isListening(envPort))
    }

    /// Runs `gatehouse serve ARGUMENTS`, which should refuse to start: its exit status and stderr (a
    /// server that starts anyway is stopped and reported).
    static func refusedStart(_ arguments: [String], environment: [String: String] = [:]) async throws -> CommandResult {
        let running = try Command.start(try ServeProcess.binary().path, ["serve"] + arguments, environment: environment)
        let ended = await waitUntil(timeout: .seconds(15)) { !running.isRunning }
        if !ended { await running.stop() }
        let result = await Command.finish(running)
        #expect(ended, "serve \(arguments) started: \(result)")
        return result
    }

    @Test("a setting that cannot be used stops the start with where it is and what to write", arguments: [
        ("prot: 8080\n", "gatehouse.yaml:1: unknown setting `prot` (did you mean `port`?)"),
        ("port: 99999\n", "gatehouse.yaml:1: the port must be a number from 1 to 65535, not `99999`"),
        ("# comment\nlog_format: xml\n", "gatehouse.yaml:2: unknown log format `xml`; use text or json"),
        ("proxy: maybe\n", "gatehouse.yaml:1: `maybe` is not true or false"),
        ("port: [1, 2]\n", "gatehouse.yaml:1: `port` must be a single value"),
        ("- port\n", "the configuration must be a YAML mapping of settings"),
        ("retention: 12h\n", "gatehouse.yaml:1: the retention must be from 1d to 3650d, not `12h`"),
        ("retention: forever\n", "gatehouse.yaml:1: `forever` is not a duration like 30d or 90d"),
    ])
    func badConfigurationFile(text: String, message: String) async throws {
        let folder = try Self.folder("serve-bad-config")
        defer { try? FileManager.default.removeItem(at: folder) }
        let config = folder.appendingPathComponent("gatehouse.yaml").path
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        let result = try await Self.refusedStart(["--config", config])
        #expect(result.status == 2, "\(result)")
        #expect(result.stderr.contains(message), "\(result)")
    }

    @Test func badEnvironmentOrMissingFile() async throws {
        let badPort = try await Self.refusedStart([], environment: ["GATEHOUSE_PORT": "eighty"])
        #expect(badPort.status == 2 && badPort.stderr.contains("GATEHOUSE_PORT: the port must be a number from 1 to 65535, not `eighty`"), "\(badPort)")
        let badFormat = try await Self.refusedStart(["--log-format", "xml"])
        #expect(badFormat.status == 2 && badFormat.stderr.contains("--log-format: unknown log format `xml`"), "\(badFormat)")
        let longRetention = try await Self.refusedStart([], environment: ["GATEHOUSE_RETENTION": "4000d"])
        #expect(longRetention.status == 2 && longRetention.stderr.contains("GATEHOUSE_RETENTION: the retention must be from 1d to 3650d, not `4000d`"), "\(longRetention)")
        let zeroRetention = try await Self.refusedStart(["--retention", "0d"])
        #expect(zeroRetention.status == 2 && zeroRetention.stderr.contains("--retention: the retention must be from 1d to 3650d, not `0d`"), "\(zeroRetention)")
        // A mistake in the file stops the start even when a flag gives that setting this time.
        let folder = try Self.folder("serve-overridden")
        defer { try? FileManager.default.removeItem(at: folder) }
        let config = folder.appendingPathComponent("gatehouse.yaml").path
        try "port: abc\n".write(toFile: config, atomically: true, encoding: .utf8)
        let overridden = try await Self.refusedStart(["--config", config, "--port", "1"])
        #expect(overridden.status == 2 && overridden.stderr.contains("gatehouse.yaml:1: the port must be a number"), "\(overridden)")
        let badRetention = try await Self.refusedStart(["--retention", "a month"])
        #expect(badRetention.status == 2 && badRetention.stderr.contains("--retention: `a month` is not a duration like 30d or 90d"), "\(badRetention)")
        let missing = try await Self.refusedStart(["--config", "/nonexistent/gatehouse.yaml"])
        #expect(missing.status == 1 && missing.stderr.contains("cannot read the configuration file /nonexistent/gatehouse.yaml"), "\(missing)")
    }

    /// A webhook whose secret cannot sign would fail every delivery: serve says so and does not start.
    @Test("serve refuses to start when a webhook's secret is missing or not whsec_ and base64")
    func webhookSecretAtStart() async throws {
        let folder = try Self.folder("serve-webhook-secret")
        defer { try? FileManager.default.removeItem(at: folder) }
        let policy = folder.appendingPathComponent("policy.yaml").path
        try """
            version: 1
            principals: {alice: {groups: [engineers]}, bob: {groups: [dba]}}
            admins: [dba]
            resources:
              app: {kind: generic, roles: {read: {requesters: [engineers], approvals: 0, max_duration: 1h, allows: read}}}
            notifications:
              webhooks:
                hook: {url: "http://127.0.0.1:9/hook", secret_env: TEST_HOOK_SECRET}
            """.write(toFile: policy, atomically: true, encoding: .utf8)
        let database = "sqlite:" + folder.appendingPathComponent("g.db").path
        let malformed = try await Self.refusedStart(["--policy", policy, "--database", database, "--port", "\(try ServeProcess.freePort())"],
                                                    environment: ["TEST_HOOK_SECRET": "whsec_not*base64!!"])
        #expect(malformed.status == 1 && malformed.stderr.contains("notifications.webhooks") && malformed.stderr.contains("whsec_"), "\(malformed)")
        let missing = try await Self.refusedStart(["--policy", policy, "--database", database, "--port", "\(try ServeProcess.freePort())"])
        #expect(missing.status == 1 && missing.stderr.contains("TEST_HOOK_SECRET") && missing.stderr.contains("is not set"), "\(missing)")
    }

    /// An export reads a store that exists, and replaces its output only when it is whole: a mistyped
    /// database path makes no empty store and no empty "backup"; a failed export leaves an earlier file as it was.
    @Test("export: a database that is not there is an error, a failed export keeps the earlier file, a whole one replaces it; a port already taken is named at start")
    func exportKeepsEarlierFiles() async throws {
        let folder = try Self.folder("export")
        defer { try? FileManager.default.removeItem(at: folder) }
        let binary = try ServeProcess.binary().path
        let output = folder.appendingPathComponent("backup.jsonl").path
        let missing = folder.appendingPathComponent("nothere.db").path
        let typo = try await Command.run(binary, ["export", "--database", "sqlite:\(missing)", "-o", output])
        #expect(typo.status == 1 && typo.stderr.contains("there is no database at \(missing)"), "\(typo)")
        #expect(!FileManager.default.fileExists(atPath: missing) && !FileManager.default.fileExists(atPath: output))

        let database = folder.appendingPathComponent("gatehouse.db").path
        let policy = try Self.policy(in: folder)
        let server = try await ServeProcess.start(policyPath: policy, database: "sqlite:\(database)", folder: folder, name: "export")
        try "an earlier export\n".write(toFile: output, atomically: true, encoding: .utf8)
        let locked = try await Command.run(binary, ["export", "--database", "sqlite:\(database)", "-o", output])
        // A second server on the first one's port says so before it starts anything (no store is made).
        let second = folder.appendingPathComponent("second.db").path
        let taken = try await Self.refusedStart(["--policy", policy, "--database", "sqlite:\(second)", "--port", "\(server.port)"])
        #expect(taken.status == 1 && taken.stderr.contains("cannot listen on 127.0.0.1:\(server.port): something is already listening there"), "\(taken)")
        #expect(!taken.stderr.contains("store failure") && !FileManager.default.fileExists(atPath: second), "\(taken)")
        // A host that is no address, or not one of this machine's: said before the store is made too.
        for (host, said) in [("999.1.1.1", "its name cannot be resolved"), ("192.0.2.1", "is not an address of this machine")] {
            let refused = try await Self.refusedStart(["--policy", policy, "--database", "sqlite:\(second)", "--host", host, "--port", "\(try ServeProcess.freePort())"])
            #expect(refused.status == 1 && refused.stderr.contains(said), "\(refused)")
            #expect(!FileManager.default.fileExists(atPath: second), "\(refused)")
        }
        await server.stop()
        #expect(locked.status != 0, "the running server holds the file: \(locked)")
        #expect(try String(contentsOfFile: output, encoding: .utf8) == "an earlier export\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.contains(".partial-") }.isEmpty)

        let exported = try await Command.run(binary, ["export", "--database", "sqlite:\(database)", "-o", output])
        #expect(exported.status == 0, "\(exported)")
        let first = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n").first.map(String.init) ?? ""
        #expect(first.contains("\"format\""), "\(first)")
        let mode = try FileManager.default.attributesOfItem(atPath: output)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }

    // MARK: stopping

    /// `request --wait` while the server stops: the server answers the open poll as it stops (within the
    /// 2 s between its looks, not the poll's 25 s), and the CLI's next poll asks whether the address still
    /// answers before it asks the HTTP client, which retries a refused connection for a minute.
    @Test func aWaitingRequestLearnsAtOnceThatTheServerStopped() async throws {
        let folder = try Self.folder("serve-wait-stop")
        defer { try? FileManager.default.removeItem(at: folder) }
        let server = try await ServeProcess.start(policyPath: try Self.policy(in: folder), database: "sqlite:\(folder.path)/gatehouse.db",
                                                  folder: folder, name: "waited on")
        let alice = try await server.token(for: "alice")
        let waiting = try Command.start(try ServeProcess.binary().path,
                                        ["request", "prod-db", "--role", "write", "--for", "30m", "--reason", "INC-7 restore the orders table", "--wait"],
                                        environment: ["GATEHOUSE_URL": server.baseURL, "GATEHOUSE_TOKEN": alice])
        let polling = await waitUntil(timeout: .seconds(20)) { waiting.output.contains("waiting for 1 approval") }
        #expect(polling, "\(waiting.output)")
        // The poll is open by now (filed, printed, then asked), with most of its 25 s to go.
        try await Task.sleep(for: .seconds(3))
        let stopping = Date()
        server.kill(SIGTERM, wait: false)
        let ended = await waitUntil(timeout: .seconds(60)) { !waiting.isRunning }
        let seconds = Date().timeIntervalSince(stopping)
        if !ended { waiting.signal(SIGKILL, wait: true) }
        let result = await Command.finish(waiting)
        #expect(ended && result.status == 1 && result.stderr.contains("cannot reach Gatehouse at \(server.baseURL): connection refused"), "\(result)")
        // Without either end of this, 85 s (the poll's 25 s, then the client's minute of retries).
        #expect(seconds < 15, "took \(Int(seconds)) s")
        #expect(await waitUntil(timeout: .seconds(20)) { !server.running.isRunning })
        #expect(server.running.process.terminationStatus == 0, "\(server.output)")
    }

    /// SIGTERM while requests are being filed: the server stops accepting, finishes what it had
    /// started, and exits 0. No response is cut off midway, none is a 5xx, and every request it
    /// acknowledged (201) is in the store after a restart.
    @Test func sigtermUnderLoadLosesNothingAcknowledged() async throws {
        let folder = try Self.folder("serve-sigterm")
        defer { try? FileManager.default.removeItem(at: folder) }
        let policy = try Self.policy(in: folder)
        let database = "sqlite:\(folder.path)/gatehouse.db"
        let server = try await ServeProcess.start(policyPath: policy, database: database, folder: folder, name: "before SIGTERM")
        let alice = try await server.token(for: "alice")

        actor Tally {
            var acknowledged: [String] = []
            var cutOff: [String] = []
            var serverErrors: [Int] = []
            var notStarted = 0
            var stopping = false
            func stop() { stopping = true }
            func acknowledge(_ id: String) { acknowledged.append(id) }
            func cut(_ error: String) { cutOff.append(error) }
            func serverError(_ status: Int) { serverErrors.append(status) }
            func unanswered() { notStarted += 1 }
        }
        let tally = Tally()
        let url = server.baseURL + "/v1/requests"
        let sigterm = Task {
            // Some work acknowledged first, then the signal while the loops keep going.
            _ = await waitUntil(timeout: .seconds(20)) { await tally.acknowledged.count >= 40 }
            server.kill(SIGTERM, wait: false)
        }
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    var n = 0
                    while await !tally.stopping {
                        n += 1
                        var request = HTTPClientRequest(url: url)
                        request.method = .POST
                        request.headers.add(name: "Authorization", value: "Bearer \(alice)")
                        request.headers.add(name: "Content-Type", value: "application/json")
                        request.headers.add(name: "Connection", value: "close")
                        let body = ["resource": "prod-db", "role": "write", "duration": "30m", "reason": "INC-\(worker * 10_000 + n) drain test"]
                        request.body = .bytes(ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: body)))
                        let response: HTTPClientResponse
                        do {
                            response = try await TestHTTP.client.execute(request, timeout: .seconds(10))
                        } catch {
                            // No answer began: refused, or closed before a byte of an answer (not acknowledged).
                            await tally.unanswered()
                            if !server.running.isRunning { await tally.stop() }
                            continue
                        }
                        do {
                            let data = Data(buffer: try await response.body.collect(upTo: 1 << 20))
                            let status = Int(response.status.code)
                            if status == 201, let id = (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["id"] as? String {
                                await tally.acknowledge(id)
                            } else if status >= 500 {
                                await tally.serverError(status)
                            }
                        } catch {
                            await tally.cut("\(error)")
                        }
                    }
                }
            }
        }
        await sigterm.value
        let exited = await waitUntil(timeout: .seconds(20)) { !server.running.isRunning }
        #expect(exited, "gatehouse serve did not stop after SIGTERM")
        #expect(server.running.process.terminationStatus == 0, "\(server.output)")
        let acknowledged = await tally.acknowledged
        let (cutOff, serverErrors) = (await tally.cutOff, await tally.serverErrors)
        #expect(cutOff.isEmpty, "answers cut off midway: \(cutOff)")
        #expect(serverErrors.isEmpty, "5xx answers: \(serverErrors)")
        #expect(acknowledged.count >= 40)

        let again = try await ServeProcess.start(policyPath: policy, database: database, folder: folder, name: "after SIGTERM")
        var lost: [String] = []
        for id in acknowledged where try await again.readRequest(TestServer.adminToken, id).status != 200 {
            lost.append(id)
        }
        await again.stop()
        #expect(lost.isEmpty, "acknowledged but not stored: \(lost)")
    }

    // MARK: the service unit

    @Test func theSystemdUnitVerifiesAndItsConfigurationStarts() async throws {
        let folder = try Self.folder("systemd-unit")
        defer { try? FileManager.default.removeItem(at: folder) }
        let root = RepositoryScript.repositoryRoot
        let unit = try String(contentsOf: root.appendingPathComponent("deploy/gatehouse.service"), encoding: .utf8)
        for directive in ["DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "ReadWritePaths=/var/lib/gatehouse",
                          "ExecStart=/usr/local/bin/gatehouse serve --config /etc/gatehouse/gatehouse.yaml", "ExecReload=/bin/kill -HUP $MAINPID"] {
            #expect(unit.contains("\n" + directive + "\n"), "\(directive)")
        }
        // systemd checks that ExecStart names an executable: the binary the test command built.
        let path = folder.appendingPathComponent("gatehouse.service").path
        try unit.replacingOccurrences(of: "ExecStart=/usr/local/bin/gatehouse", with: "ExecStart=\(try ServeProcess.binary().path)")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let verify = try await Command.run("/usr/bin/systemd-analyze", ["verify", path])
        #expect(verify.status == 0 && verify.stderr.isEmpty && verify.stdout.isEmpty, "\(verify)")
        let security = try await Command.run("/usr/bin/systemd-analyze", ["security", "--offline=true", path])
        let exposure = (security.stdout + security.stderr).split(separator: "\n").first { $0.contains("Overall exposure level") }
            .flatMap { line in line.range(of: ": ").flatMap { line[$0.upperBound...].split(separator: " ").first }.flatMap { Double($0) } }
        #expect(try #require(exposure, "\(security)") <= 2.0, "\(security.stdout.suffix(400))")

        // The example settings file is one `serve` reads (its policy and store swapped for the test's).
        let port = try TestPorts.free()
        let example = try await ServeProcess.start(["--config", root.appendingPathComponent("deploy/gatehouse.yaml").path, "--policy", try Self.policy(in: folder),
                                                    "--database", "sqlite:\(folder.path)/gatehouse.db", "--port", "\(port)"], port: port, name: "example settings")
        await example.stop()
        #expect(Self.jsonLines(example.output).contains { $0["message"] as? String == "gatehouse listening" }, "the example logs JSON")
    }
}
