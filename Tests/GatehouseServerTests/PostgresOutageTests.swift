import Foundation
import GatehouseCore
import GatehouseTestSupport
import Synchronization
import Testing

/// The database goes away under a running server and comes back.
@Suite("PostgreSQL outage")
struct PostgresOutageTests {
    static func script(_ arguments: [String]) async throws -> String {
        try await RepositoryScript.run("postgres-server.sh", arguments)
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
            enum Phase: Sendable { case up, stopping, down, starting, back }
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
            // Until a request was taken while the database is up (a loaded machine can be slow to answer the first).
            _ = await waitUntil(timeout: .seconds(30), interval: .milliseconds(50)) { seen.with { $0.statuses["up"]?.contains(201) ?? false } }
            // While the server is stopping an answer may be either; "down" starts once it has stopped.
            phase.with { $0 = .stopping }
            _ = try await Self.script(["stop", pgFolder])
            phase.with { $0 = .down }
            // Longer than the longest an answer can be held up when the database stops under a change
            // (2 s for a connection, then 4 × connect_timeout for a change that stopped getting answers).
            try await Task.sleep(for: .seconds(11))
            #expect(try await server.ready().status == 503)
            // On a loaded machine the request under way when the database stopped can end in this phase's
            // first seconds, and the next one (two seconds for a connection) after it: wait for one that began
            // and ended while the database was down.
            let answeredWhileDown = await waitUntil(timeout: .seconds(40), interval: .milliseconds(100)) {
                seen.with { !($0.statuses["down"] ?? []).isEmpty }
            }
            #expect(answeredWhileDown, "no request began and ended while the database was down")
            // While the database starts an answer may be either; "back" starts once the script has seen it up.
            phase.with { $0 = .starting }
            _ = try await Self.script(["restart-start", pgFolder])
            phase.with { $0 = .back }
            // It recovers by itself: no restart of gatehouse, no operator.
            var recovered = false
            for _ in 0..<150 where !recovered {
                recovered = try await server.ready().status == 200
                if !recovered { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(recovered)
            // The load goes on until a request begun after the restart was taken (or 30 s passed).
            _ = await waitUntil(timeout: .seconds(30), interval: .milliseconds(100)) {
                seen.with { $0.statuses["back"]?.contains(201) ?? false }
            }
            stop.with { $0 = true }
            await load.value
            let result = seen.with { $0 }
            let up = result.statuses["up"] ?? [], down = result.statuses["down"] ?? [], back = result.statuses["back"] ?? []
            let transition = (result.statuses["transition"] ?? []) + (result.statuses["stopping"] ?? []) + (result.statuses["starting"] ?? [])
            #expect(transition.allSatisfy { [200, 201, 503].contains($0) }, "\(transition)")
            #expect(up.contains(201) && up.allSatisfy { $0 == 201 || $0 == 200 }, "\(up)")
            // While the database is down every answer is 503: never a 500, never a hang.
            #expect(down.contains(503), "\(down)")
            #expect(down.allSatisfy { $0 == 503 }, "\(down)")
            #expect(back.contains(201), "\(back)")
            #expect(back.allSatisfy { [200, 201, 503].contains($0) }, "\(back)")
            for id in result.requests {
                #expect(try await server.readRequest(TestServer.adminToken, id).status == 200, "\(id) was acknowledged but is missing")
            }
            for id in result.approvals {
                #expect(try await server.readRequest(TestServer.adminToken, id).string("state") == "approved")
            }
            let verify = try await server.verifyAudit(TestServer.adminToken)
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
