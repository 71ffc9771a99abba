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
                let grants = (try await instances[2].listGrants(TestServer.adminToken, scope: .all).json["grants"] as? [[String: Any]] ?? [])
                    .filter { $0["request_id"] as? String == id }
                #expect(grants.count == 1)
                let request = try await instances[1].readRequest(TestServer.adminToken, id)
                #expect(request.string("state") == "approved")
                #expect((request.json["approvals"] as? [Any])?.count == 1)
            }
            #expect(try await instances[0].verifyAudit(TestServer.adminToken).json["ok"] as? Bool == true)
        }
    }

    @Test("answers cached on one instance end with a write on another: a revoked grant and a revoked token are seen everywhere")
    func cachesFollowOtherInstances() async throws {
        try await Self.cluster(antispam: "{enabled: false}", count: 2) { instances, _ in
            let t = try await Self.tokens(instances[0], ["e1", "e2", "a1"])
            func grant(_ requester: String, _ resource: String) async throws -> String {
                let id = try #require(try await instances[0].request(t[requester]!, resource: resource).string("id"))
                return try #require(try await instances[0].approve(t["a1"]!, id).string("grant_id"))
            }
            let grantID = try await grant("e1", "r1")
            _ = try await grant("e2", "r2")
            // Instance 1 answers allow, then again (from its cache: no write since).
            for _ in 0..<3 { #expect(try await instances[1].check(t["e1"]!, resource: "r1").string("decision") == "allow") }
            for _ in 0..<3 { #expect(try await instances[1].check(t["e2"]!, resource: "r2").string("decision") == "allow") }
            // A revocation on instance 0 reaches instance 1's answers without anything written there.
            let revoked = try await instances[0].call(TestServer.adminToken) {
                try await $0.revokeGrant(path: .init(id: grantID), body: .json(.init(reason: "INC-9 leaving the team")))
            }
            #expect(revoked.status == 200)
            let denied = try await waitUntil(timeout: .seconds(10)) {
                try await instances[1].check(t["e1"]!, resource: "r1").string("decision") == "approval_required"
            }
            #expect(denied, "instance 1 still allows a grant revoked on instance 0")
            // The same for a token revoked on instance 0: instance 1 stops taking it.
            let tokens = try await instances[0].call(TestServer.adminToken) { try await $0.listTokens() }.json["tokens"] as? [[String: Any]] ?? []
            let e2Token = try #require(tokens.first { $0["principal"] as? String == "e2" }?["id"] as? String)
            #expect(try await instances[0].revokeToken(TestServer.adminToken, e2Token).status == 200)
            let refused = try await waitUntil(timeout: .seconds(10)) {
                try await instances[1].check(t["e2"]!, resource: "r2").status == 401
            }
            #expect(refused, "instance 1 still takes a token revoked on instance 0")
            // And what instance 1 answers after that is read again: a new grant on instance 0 is allowed there.
            _ = try await grant("e1", "r3")
            let allowed = try await waitUntil(timeout: .seconds(10)) {
                try await instances[1].check(t["e1"]!, resource: "r3").string("decision") == "allow"
            }
            #expect(allowed)
        }
    }

    @Test("a principal's rate limit holds across instances: accepted requests never exceed burst plus rate")
    func sharedRateLimit() async throws {
        let antispam = """
            {blocked_delay: off, limits: {per_principal: {rate: 20/h, burst: 3}, per_resource: off, per_source_ip: off, max_pending_per_principal: off}, score: {thresholds: {throttle: 100, extra_approval: 100, quarantine: 100, block: 100}}}
            """
        try await Self.cluster(antispam: antispam) { instances, _ in
            let bot = try await instances[0].token(for: "bot")
            // 40 requests at once take turns on one principal's rate-limit row, on two cores shared with
            // the rest of the suite: each may wait for all the others.
            for instance in instances { instance.requestTimeout = .seconds(40) }
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
            let stored = (try await instances[1].listRequests(TestServer.adminToken, scope: .all, limit: 1000).json["requests"] as? [Any] ?? [])
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
            // At least 4 s and 25 acknowledged requests (a loaded machine is slower), at most 40 s.
            let started = ContinuousClock.now
            let running: @Sendable () -> Bool = {
                let now = ContinuousClock.now
                return now < started + .seconds(40) && (now < started + .seconds(4) || acknowledged.with { $0.requests.count } < 25)
            }
            let instance: @Sendable (Int) -> ServeProcess = { index in
                let live = (0..<3).filter { !dead.with { $0 }.contains($0) }
                return instances[live[index % live.count]]
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (worker, requester) in Self.requesters.enumerated() {
                    group.addTask {
                        var step = worker
                        while running() {
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
                    // Halfway: after 2 s and once some work was acknowledged.
                    try await Task.sleep(for: .seconds(2))
                    _ = await waitUntil(timeout: .seconds(20)) { acknowledged.with { $0.requests.count } >= 12 }
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
            let stored = try await survivor.listRequests(TestServer.adminToken, scope: .all, limit: 1000).json["requests"] as? [[String: Any]] ?? []
            let states = Dictionary(stored.compactMap { r in (r["id"] as? String).map { ($0, r["state"] as? String ?? "") } }, uniquingKeysWith: { a, _ in a })
            for id in done.requests { #expect(states[id] != nil, "acknowledged request \(id) is missing") }
            for id in done.approvals { #expect(states[id] == "approved", "acknowledged approval of \(id): state \(states[id] ?? "missing")") }
            let events = try await survivor.listAudit(TestServer.adminToken, limit: 10000).json["events"] as? [[String: Any]] ?? []
            let created = Set(events.filter { $0["action"] as? String == "request.created" }.compactMap { $0["subject"] as? String })
            let approved = Set(events.filter { $0["action"] as? String == "request.approved" }.compactMap { $0["subject"] as? String })
            #expect(Set(done.requests).isSubset(of: created))
            #expect(Set(done.approvals).isSubset(of: approved))
            let verify = try await instances[1].verifyAudit(TestServer.adminToken)
            #expect(verify.json["ok"] as? Bool == true, "\(verify.json)")
            // No request has two grants, whichever instances approved it.
            let grants = try await survivor.listGrants(TestServer.adminToken, scope: .all, limit: 1000).json["grants"] as? [[String: Any]] ?? []
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
