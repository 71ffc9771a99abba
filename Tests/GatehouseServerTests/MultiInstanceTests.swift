import Foundation
import GatehouseCore
import GatehouseTestSupport
import Synchronization
import Testing

/// Several `gatehouse serve` processes on one PostgreSQL database, as behind a load balancer.
@Suite("Several instances on one PostgreSQL database", .serialized)
struct MultiInstanceTests {
    static let approvers = (1...5).map { "a\($0)" }
    static let requesters = (1...6).map { "e\($0)" }

    static func policy(antispam: String) -> String {
        """
        version: 1
        principals:
        \((approvers.map { "  \($0): {groups: [dba]}" } + requesters.map { "  \($0): {groups: [engineers]}" }).joined(separator: "\n"))
          bot: {groups: [engineers], kind: service}
          erin: {groups: [security]}
        admins: [security]
        resources:
        \((["prod-db"] + (1...40).map { "r\($0)" }).map { """
          \($0):
            kind: postgres
            roles:
              write: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 1h, allows: write}
        """ }.joined(separator: "\n"))
        pending_ttl: 1h
        antispam: \(antispam)
        """
    }

    /// Three instances on a fresh database; always stopped.
    static func cluster<T>(antispam: String, count: Int = 3, _ body: ([ServeProcess], URL) async throws -> T) async throws -> T {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gatehouse-multi-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let database = try await TestDatabase.fresh(.postgres, folder: folder)
        let policyPath = folder.appendingPathComponent("policy.yaml").path
        try policy(antispam: antispam).write(toFile: policyPath, atomically: true, encoding: .utf8)
        var instances: [ServeProcess] = []
        defer { try? FileManager.default.removeItem(at: folder) }
        do {
            // Started together: migrations and the bootstrap admin race, and must not trip over each other.
            instances = try await withThrowingTaskGroup(of: ServeProcess.self) { group in
                for index in 0..<count {
                    group.addTask { try await ServeProcess.start(policyPath: policyPath, database: database.url, folder: folder, name: "i\(index)") }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let result = try await body(instances, folder)
            for instance in instances { await instance.stop() }
            await database.drop()
            return result
        } catch {
            for instance in instances {
                await instance.stop()
                print("--- \(instance.baseURL)\n\(instance.output)")
            }
            await database.drop()
            throw error
        }
    }

    static func tokens(_ instance: ServeProcess, _ names: [String]) async throws -> [String: String] {
        var tokens: [String: String] = [:]
        for name in names { tokens[name] = try await instance.token(for: name) }
        return tokens
    }

    @Test("50 concurrent approvals of one request, spread over three instances, make exactly one grant")
    func oneGrant() async throws {
        try await Self.cluster(antispam: "{enabled: false}") { instances, _ in
            let t = try await Self.tokens(instances[0], Self.approvers + ["e1"])
            for round in 0..<3 {
                let id = try #require(try await instances[round % 3].request(t["e1"]!, resource: "r\(round + 1)").string("id"))
                let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                    for index in 0..<50 {
                        let approver = Self.approvers[index % Self.approvers.count]
                        group.addTask { try await instances[index % 3].approve(t[approver]!, id).status }
                    }
                    return try await group.reduce(into: [Int]()) { $0.append($1) }
                }
                #expect(statuses.filter { $0 == 200 }.count == 1, "\(statuses)")
                #expect(statuses.allSatisfy { $0 == 200 || $0 == 409 }, "\(statuses)")
                let grants = (try await instances[2].send(.GET, "/v1/grants?scope=all", token: TestServer.adminToken).json["grants"] as? [[String: Any]] ?? [])
                    .filter { $0["request_id"] as? String == id }
                #expect(grants.count == 1)
                let request = try await instances[1].send(.GET, "/v1/requests/\(id)", token: TestServer.adminToken)
                #expect(request.string("state") == "approved")
                #expect((request.json["approvals"] as? [Any])?.count == 1)
            }
            #expect(try await instances[0].send(.GET, "/v1/audit/verify", token: TestServer.adminToken).json["ok"] as? Bool == true)
        }
    }

    @Test("a principal's rate limit holds across instances: accepted requests never exceed burst plus rate")
    func sharedRateLimit() async throws {
        let antispam = """
            {blocked_delay: off, limits: {per_principal: {rate: 20/h, burst: 3}, per_resource: off, per_source_ip: off, max_pending_per_principal: off}, score: {thresholds: {throttle: 100, extra_approval: 100, quarantine: 100, block: 100}}}
            """
        try await Self.cluster(antispam: antispam) { instances, _ in
            let bot = try await instances[0].token(for: "bot")
            let started = ContinuousClock.now
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<40 {
                    group.addTask {
                        try await instances[index % 3].request(bot, resource: "r\(index + 1)", reason: "INC-\(index) nightly export run \(index)").status
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            let elapsed = ContinuousClock.now - started
            let allowed = 3 + Int((Double(elapsed.components.seconds) + 1) * 20 / 3600)
            let accepted = statuses.filter { $0 == 201 }.count
            #expect(accepted >= 1 && accepted <= allowed, "\(accepted) accepted, at most \(allowed) allowed: \(statuses)")
            #expect(statuses.filter { $0 == 429 }.count == 40 - accepted, "\(statuses)")
            let stored = (try await instances[1].send(.GET, "/v1/requests?scope=all&limit=1000", token: TestServer.adminToken).json["requests"] as? [Any] ?? [])
            #expect(stored.count == accepted)
        }
    }

    @Test("a mixed load over three instances, one killed with SIGKILL halfway: nothing acknowledged is lost and the audit chain verifies")
    func killedInstanceLosesNothing() async throws {
        try await Self.cluster(antispam: "{enabled: false}") { instances, _ in
            let t = try await Self.tokens(instances[0], Self.approvers + Self.requesters)
            struct Acknowledged: Sendable { var requests: [String] = []; var approvals: [String] = []; var checks = 0; var failures = 0; var refused: [Int] = [] }
            let acknowledged = Shared(Acknowledged())
            let dead = Shared(Set<Int>())
            let deadline = ContinuousClock.now + .seconds(4)
            let instance: @Sendable (Int) -> ServeProcess = { index in
                let live = (0..<3).filter { !dead.with { $0 }.contains($0) }
                return instances[live[index % live.count]]
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (worker, requester) in Self.requesters.enumerated() {
                    group.addTask {
                        var step = worker
                        while ContinuousClock.now < deadline {
                            step += 1
                            let target = instance(step)
                            do {
                                let reply = try await target.request(t[requester]!, resource: "r\(step % 40 + 1)", reason: "INC-\(step) load step")
                                guard reply.status == 201, let id = reply.string("id") else {
                                    acknowledged.with { $0.refused.append(reply.status) }
                                    continue
                                }
                                acknowledged.with { $0.requests.append(id) }
                                let approver = Self.approvers[step % Self.approvers.count]
                                let approval = try await instance(step + 1).approve(t[approver]!, id).status
                                acknowledged.with { approval == 200 ? $0.approvals.append(id) : $0.refused.append(approval) }
                                if try await target.check(t[requester]!, resource: "r\(step % 40 + 1)").status == 200 {
                                    acknowledged.with { $0.checks += 1 }
                                }
                            } catch {
                                // The killed instance: its connections fail; unacknowledged work may or may not have committed.
                                acknowledged.with { $0.failures += 1 }
                            }
                        }
                    }
                }
                group.addTask {
                    try await Task.sleep(for: .seconds(2))
                    dead.with { _ = $0.insert(2) }
                    instances[2].kill(SIGKILL)
                }
                try await group.waitForAll()
            }
            let done = acknowledged.with { $0 }
            #expect(done.requests.count > 20, "only \(done.requests.count) requests were acknowledged")
            #expect(done.approvals.count > 10)
            // Every answer was a success: instances never trip over each other (no 409, no 5xx).
            #expect(done.refused.isEmpty, "\(done.refused)")
            let survivor = instances[0]
            let stored = try await survivor.send(.GET, "/v1/requests?scope=all&limit=1000", token: TestServer.adminToken).json["requests"] as? [[String: Any]] ?? []
            let states = Dictionary(stored.compactMap { r in (r["id"] as? String).map { ($0, r["state"] as? String ?? "") } }, uniquingKeysWith: { a, _ in a })
            for id in done.requests { #expect(states[id] != nil, "acknowledged request \(id) is missing") }
            for id in done.approvals { #expect(states[id] == "approved", "acknowledged approval of \(id): state \(states[id] ?? "missing")") }
            let events = try await survivor.send(.GET, "/v1/audit?limit=10000", token: TestServer.adminToken).json["events"] as? [[String: Any]] ?? []
            let created = Set(events.filter { $0["action"] as? String == "request.created" }.compactMap { $0["subject"] as? String })
            let approved = Set(events.filter { $0["action"] as? String == "request.approved" }.compactMap { $0["subject"] as? String })
            #expect(Set(done.requests).isSubset(of: created))
            #expect(Set(done.approvals).isSubset(of: approved))
            let verify = try await instances[1].send(.GET, "/v1/audit/verify", token: TestServer.adminToken)
            #expect(verify.json["ok"] as? Bool == true, "\(verify.json)")
            // No request has two grants, whichever instances approved it.
            let grants = try await survivor.send(.GET, "/v1/grants?scope=all&limit=1000", token: TestServer.adminToken).json["grants"] as? [[String: Any]] ?? []
            let perRequest = Dictionary(grouping: grants, by: { $0["request_id"] as? String ?? "" })
            #expect(perRequest.values.allSatisfy { $0.count == 1 })
            #expect(grants.count == stored.filter { $0["state"] as? String == "approved" }.count)
        }
    }
}

/// A value several tasks update.
final class Shared<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
    func with<R>(_ body: (inout Value) -> R) -> R { value.withLock { body(&$0) } }
}

/// The database goes away under a running server and comes back.
@Suite("PostgreSQL outage")
struct PostgresOutageTests {
    /// Runs scripts/postgres-server.sh and returns what it printed. Spawned and reaped directly, on
    /// a thread of its own: the server the script starts outlives it, and Foundation's `Process`
    /// did not always see the script end then.
    static func script(_ arguments: [String]) async throws -> String {
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("pg-script-\(UUID().uuidString).out").path
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let scriptPath = ServeProcess.repositoryRoot.appendingPathComponent("scripts/postgres-server.sh").path
        let command = ([scriptPath] + arguments).map { "'\($0)'" }.joined(separator: " ") + " > '\(outputPath)' < /dev/null"
        let status: Int32 = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var pid: pid_t = 0
                let words: [String] = ["/bin/bash", "-c", command]
                var argv: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) }
                argv.append(nil)
                defer { argv.forEach { free($0) } }
                guard posix_spawn(&pid, "/bin/bash", nil, nil, argv, environ) == 0 else { return continuation.resume(returning: -1) }
                var status: Int32 = 0
                while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
                continuation.resume(returning: status)
            }
        }
        guard status == 0 else { throw TestFailure("postgres-server.sh \(arguments) failed (wait status \(status))") }
        return ((try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("the database stopped and restarted during a load: 503 while it is down, recovery by itself, the audit chain verifies")
    func outage() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gatehouse-outage-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let pgFolder = folder.appendingPathComponent("pg").path
        let url = try await Self.script(["start", pgFolder, "\(try ServeProcess.freePort())"])
        let policyPath = folder.appendingPathComponent("policy.yaml").path
        try MultiInstanceTests.policy(antispam: "{enabled: false}").write(toFile: policyPath, atomically: true, encoding: .utf8)
        // Requests wait at most two seconds for a database connection.
        let server = try await ServeProcess.start(policyPath: policyPath, database: url + "?connect_timeout=2", folder: folder, name: "serve")
        do {
            let alice = try await server.token(for: "e1")
            let approver = try await server.token(for: "a1")
            enum Phase: Sendable { case up, stopping, down, back }
            struct Seen: Sendable { var statuses: [String: [Int]] = [:]; var requests: [String] = []; var approvals: [String] = [] }
            let seen = Shared(Seen())
            let phase = Shared(Phase.up)
            let stop = Shared(false)
            let load = Task {
                var step = 0
                while !stop.with({ $0 }) {
                    step += 1
                    // Answers are filed under the phase they began and ended in ("transition" when those differ).
                    let began = phase.with { $0 }
                    let key = { let ended = phase.with { $0 }; return ended == began ? "\(began)" : "transition" }
                    do {
                        let reply = try await server.request(alice, resource: "r\(step % 40 + 1)", reason: "INC-\(step) outage drill")
                        seen.with { $0.statuses[key(), default: []].append(reply.status) }
                        if reply.status == 201, let id = reply.string("id") {
                            seen.with { $0.requests.append(id) }
                            let approval = try await server.approve(approver, id)
                            seen.with { $0.statuses[key(), default: []].append(approval.status) }
                            if approval.status == 200 { seen.with { $0.approvals.append(id) } }
                        }
                    } catch {
                        seen.with { $0.statuses[key(), default: []].append(-1) }
                    }
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
            try await Task.sleep(for: .seconds(1))
            // While the server is stopping an answer may be either; "down" starts once it has stopped.
            phase.with { $0 = .stopping }
            _ = try await Self.script(["stop", pgFolder])
            phase.with { $0 = .down }
            // Longer than the longest an answer can be held up when the database stops under a change
            // (2 s for a connection, then 4 × connect_timeout for a change that stopped getting answers).
            try await Task.sleep(for: .seconds(11))
            #expect(try await server.send(.GET, "/readyz", token: nil).status == 503)
            _ = try await Self.script(["restart-start", pgFolder])
            phase.with { $0 = .back }
            // It recovers by itself: no restart of gatehouse, no operator.
            var recovered = false
            for _ in 0..<150 where !recovered {
                recovered = try await server.send(.GET, "/readyz", token: nil).status == 200
                if !recovered { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(recovered)
            try await Task.sleep(for: .seconds(1))
            stop.with { $0 = true }
            await load.value
            let result = seen.with { $0 }
            let up = result.statuses["up"] ?? [], down = result.statuses["down"] ?? [], back = result.statuses["back"] ?? []
            let transition = (result.statuses["transition"] ?? []) + (result.statuses["stopping"] ?? [])
            #expect(transition.allSatisfy { [200, 201, 503].contains($0) }, "\(transition)")
            #expect(up.contains(201) && up.allSatisfy { $0 == 201 || $0 == 200 }, "\(up)")
            // While the database is down every answer is 503: never a 500, never a hang.
            #expect(down.contains(503), "\(down)")
            #expect(down.allSatisfy { $0 == 503 }, "\(down)")
            #expect(back.contains(201), "\(back)")
            #expect(back.allSatisfy { [200, 201, 503].contains($0) }, "\(back)")
            for id in result.requests {
                #expect(try await server.send(.GET, "/v1/requests/\(id)", token: TestServer.adminToken).status == 200, "\(id) was acknowledged but is missing")
            }
            for id in result.approvals {
                #expect(try await server.send(.GET, "/v1/requests/\(id)", token: TestServer.adminToken).string("state") == "approved")
            }
            let verify = try await server.send(.GET, "/v1/audit/verify", token: TestServer.adminToken)
            #expect(verify.json["ok"] as? Bool == true, "\(verify.json)")
            await server.stop()
            _ = try? await Self.script(["stop", pgFolder])
            try? FileManager.default.removeItem(at: folder)
        } catch {
            await server.stop()
            print(server.output)
            _ = try? await Self.script(["stop", pgFolder])
            try? FileManager.default.removeItem(at: folder)
            throw error
        }
    }
}
