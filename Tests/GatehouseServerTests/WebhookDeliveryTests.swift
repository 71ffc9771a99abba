import Crypto
import Foundation
import GatehouseCore
import GatehouseTestSupport
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Testing

/// A webhook endpoint on a loopback port, as a receiver following the Standard Webhooks
/// convention would run it: it verifies each signature, remembers message ids and processes
/// each id once (a repeat is answered 200 and dropped). It can fail the first attempts of every
/// message, or hold the first attempt of one message long enough to kill the sender meanwhile.
final class WebhookReceiver: Sendable {
    struct Call: Sendable {
        var id: String
        var timestamp: Int64
        var signatureValid: Bool
        var body: String
        var status: Int
        /// When the receiver read it.
        var arrived = Date()
    }

    actor State {
        var calls: [Call] = []
        /// Processed messages by id: what the receiver acted on, once each.
        var processed: [String: String] = [:]
        var attempts: [String: Int] = [:]
        var failFirst = 0
        var holdFirstAttemptOf: String?
        var holdSeconds = 0.0
        var holding: Set<String> = []

        func configure(failFirst: Int = 0, holdFirstAttemptOf event: String? = nil, holdSeconds: Double = 0) {
            self.failFirst = failFirst
            self.holdFirstAttemptOf = event
            self.holdSeconds = holdSeconds
        }

        /// What to answer, and how long to wait before answering.
        func arrive(_ call: Call, event: String?) -> (status: Int, hold: Double) {
            let attempt = attempts[call.id, default: 0] + 1
            attempts[call.id] = attempt
            var answered = call
            var hold = 0.0
            if !call.signatureValid {
                answered.status = 401
            } else if attempt <= failFirst {
                answered.status = 500
            } else {
                answered.status = 200
                if let wanted = holdFirstAttemptOf, event == wanted {
                    holdFirstAttemptOf = nil
                    holding.insert(call.id)
                    hold = holdSeconds
                }
                if processed[call.id] == nil { processed[call.id] = call.body }
            }
            calls.append(answered)
            return (answered.status, hold)
        }
    }

    let receiverState: State
    let key: SymmetricKey
    let secret: String
    private let server: LocalHTTPServer
    var port: Int { server.port }

    static func start() async throws -> WebhookReceiver {
        let secret = "whsec_" + Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let key = try StandardWebhooks.key(fromSecret: secret, endpoint: "test")
        let state = State()
        let router = Router()
        router.post("/hook") { request, _ -> Response in
            var request = request
            let body = try await request.collectBody(upTo: 1 << 20)
            let bytes = Array(buffer: body)
            let id = request.headers[.init("webhook-id")!] ?? ""
            let timestamp = Int64(request.headers[.init("webhook-timestamp")!] ?? "") ?? 0
            let signature = request.headers[.init("webhook-signature")!] ?? ""
            let valid = StandardWebhooks.verify(id: id, timestamp: timestamp, body: bytes, signatureHeader: signature, key: key)
            let text = String(decoding: bytes, as: UTF8.self)
            let event = (try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])?["type"] as? String
            let (status, hold) = await state.arrive(Call(id: id, timestamp: timestamp, signatureValid: valid, body: text, status: 0), event: event)
            if hold > 0 { try await Task.sleep(for: .seconds(hold)) }
            return Response(status: .init(code: status))
        }
        let server = await LocalHTTPServer.start(router, label: "webhook-receiver")
        return WebhookReceiver(state: state, key: key, secret: secret, server: server)
    }

    private init(state: State, key: SymmetricKey, secret: String, server: LocalHTTPServer) {
        self.key = key
        self.secret = secret
        self.server = server
        self.receiverState = state
    }

    func stop() async { await server.stop() }

    /// Waits until every id in `ids` was processed.
    func waitForProcessed(_ ids: Set<String>, within seconds: Double) async throws {
        let state = receiverState
        if await waitUntil(timeout: .seconds(seconds), interval: .milliseconds(100), { ids.isSubset(of: Set(await state.processed.keys)) }) { return }
        let processed = Set(await receiverState.processed.keys)
        throw TestFailure("not delivered within \(seconds) s: \(ids.subtracting(processed).sorted()); delivered: \(processed.sorted())")
    }
}

@Suite("Webhooks: signed, retried, exactly once across a restart", .serialized)
struct WebhookDeliveryTests {
    /// `timeout`: how long the sender waits for the receiver (a receiver in the test process can answer late on a
    /// loaded machine: a test that counts attempts gives it long).
    static func policy(receiver: WebhookReceiver, events: String, timeout: String = "2s") -> String {
        policy(port: receiver.port, events: events, timeout: timeout)
    }

    static func policy(port: Int, events: String, timeout: String = "2s") -> String {
        policy(webhooks: ["receiver: {url: \"http://127.0.0.1:\(port)/hook\", secret_env: TEST_WEBHOOK_SECRET, events: \(events), timeout: \(timeout)}"])
    }

    /// The test policy with these webhook endpoints (each `name: {...}`), retried after 1 s, then 2 s.
    static func policy(webhooks: [String]) -> String {
        TestServer.policyYAML + """

            notifications:
              base_url: http://127.0.0.1:9
              retry: {initial: 1s, max: 2s, attempts: 6}
              webhooks:

            """ + webhooks.map { "    \($0)\n" }.joined()
    }

    /// The message ids the audit log announces for these audit actions.
    static func expectedIDs(_ server: ServeProcess, actions: Set<String>) async throws -> Set<String> {
        let audit = try await server.listAudit(TestServer.adminToken, limit: 10000)
        let events = audit.json["events"] as? [[String: Any]] ?? []
        return Set(events.compactMap { event -> String? in
            guard let action = event["action"] as? String, actions.contains(action), let seq = event["seq"] as? Int,
                  let hash = event["hash"] as? String else { return nil }
            return "msg_\(seq)_\(hash.prefix(16))"
        })
    }

    @Test("a 500 is retried with backoff under the same id and a valid signature; the outbox records the attempts")
    func retriesAfterServerErrors() async throws {
        let receiver = try await WebhookReceiver.start()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gatehouse-webhooks-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let policyPath = folder.appendingPathComponent("policy.yaml").path
        try Self.policy(receiver: receiver, events: "[request.created, request.approved, grant.started]", timeout: "30s").write(toFile: policyPath, atomically: true, encoding: .utf8)
        await receiver.receiverState.configure(failFirst: 2)
        let server = try await ServeProcess.start(policyPath: policyPath, database: "sqlite:" + folder.appendingPathComponent("g.db").path,
                                                  folder: folder, name: "serve", environment: ["TEST_WEBHOOK_SECRET": receiver.secret])
        do {
            let t = try await server.tokens("alice", "bob")
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            #expect(try await server.approve(t["bob"]!, id).status == 200)
            // A denial is not subscribed to: it must not be sent.
            let other = try #require(try await server.request(t["alice"]!, resource: "prod-host", role: "operate").string("id"))
            _ = try await server.deny(t["bob"]!, other, comment: "no")
            let expected = try await Self.expectedIDs(server, actions: ["request.created", "request.approved", "grant.started"])
            #expect(expected.count == 4)
            try await receiver.waitForProcessed(expected, within: 40)
            try await Task.sleep(for: .seconds(1))

            let calls = await receiver.receiverState.calls
            #expect(Set(calls.map(\.id)) == expected, "only subscribed events are sent")
            for messageID in expected {
                let attempts = calls.filter { $0.id == messageID }
                #expect(attempts.map(\.status) == [500, 500, 200], "\(messageID): \(attempts.map(\.status))")
                #expect(attempts.allSatisfy { $0.signatureValid })
                #expect(Set(attempts.map(\.body)).count == 1, "every retry carries the same body")
                #expect(attempts.allSatisfy { abs(Double($0.timestamp) - Date().timeIntervalSince1970) < 120 })
            }
            let outbox = try await server.listDeliveries(TestServer.adminToken, limit: 100)
            let rows = outbox.json["deliveries"] as? [[String: Any]] ?? []
            #expect(rows.count == 4)
            #expect(rows.allSatisfy { $0["state"] as? String == "delivered" && $0["attempts"] as? Int == 3 }, "\(rows)")
            // The request message names who was told and links to the request page.
            let created = try #require(calls.first { $0.body.contains("\"type\":\"request.created\"") && $0.body.contains(id) })
            let object = try #require(try JSONSerialization.jsonObject(with: Data(created.body.utf8)) as? [String: Any])
            let data = try #require(object["data"] as? [String: Any])
            #expect(data["url"] as? String == "http://127.0.0.1:9/requests/\(id)")
            let recipients = (data["recipients"] as? [String])?.sorted()
            #expect(recipients == ["bob", "carol", "dave", "frank"])
        } catch {
            Issue.record("\(error)\nserver log:\n\(server.output)")
        }
        await server.stop()
        await receiver.stop()
        try? FileManager.default.removeItem(at: folder)
    }

    @Test("a server killed in the middle of a delivery sends it again after restart under the same id; every event is processed once")
    func exactlyOnceAcrossRestart() async throws {
        let receiver = try await WebhookReceiver.start()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gatehouse-webhooks-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let policyPath = folder.appendingPathComponent("policy.yaml").path
        try Self.policy(receiver: receiver, events: "[all]").write(toFile: policyPath, atomically: true, encoding: .utf8)
        // The first request.created message is answered only after 5 s: the sender dies first.
        await receiver.receiverState.configure(holdFirstAttemptOf: "request.created", holdSeconds: 5)
        let database = "sqlite:" + folder.appendingPathComponent("g.db").path
        let environment = ["TEST_WEBHOOK_SECRET": receiver.secret]
        let first = try await ServeProcess.start(policyPath: policyPath, database: database, folder: folder, name: "first", environment: environment)
        var second: ServeProcess?
        do {
            let t = try await first.tokens("alice", "bob")
            let id = try #require(try await first.request(t["alice"]!).string("id"))
            // Wait until that message is in flight, then queue more while it is.
            _ = await waitUntil(timeout: .seconds(30)) { !(await receiver.receiverState.holding.isEmpty) }
            let inFlight = try #require(await receiver.receiverState.holding.first)
            #expect(try await first.approve(t["bob"]!, id).status == 200)
            first.kill(SIGKILL)
            let killed = Date()

            second = try await ServeProcess.start(policyPath: policyPath, database: database, folder: folder, name: "second", environment: environment)
            let server = try #require(second)
            // Every copy the killed process sent was read by the receiver while the second one started.
            let restarted = Date()
            let other = try #require(try await server.request(t["alice"]!, resource: "prod-host", role: "operate").string("id"))
            _ = try await server.deny(t["bob"]!, other, comment: "not today")

            let announced: Set<String> = ["request.created", "request.approved", "request.denied", "grant.started"]
            let expected = try await Self.expectedIDs(server, actions: announced)
            #expect(expected.count == 5)
            #expect(expected.contains(inFlight))
            try await receiver.waitForProcessed(expected, within: 45)
            // The receiver acted on the held message when it arrived, but its answer went to a dead
            // process: the outbox still holds it until the claim runs out and it is sent again.
            var rows: [[String: Any]] = []
            for _ in 0..<300 {
                let outbox = try await server.listDeliveries(TestServer.adminToken, limit: 100)
                rows = outbox.json["deliveries"] as? [[String: Any]] ?? []
                if rows.count == expected.count, rows.allSatisfy({ $0["state"] as? String == "delivered" }) { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            try await Task.sleep(for: .seconds(1))

            let state = receiver.receiverState
            let processed = await state.processed
            let calls = await state.calls
            #expect(Set(processed.keys) == expected, "every event exactly once, no other")
            #expect(calls.allSatisfy { $0.signatureValid })
            // The message in flight at the kill was sent again, with the same id and body. Any other message
            // sent more than once is one whose attempt the sender itself saw fail (a loaded machine can make
            // the receiver miss the 2 s timeout): a retry, never a second copy it did not know about. The one
            // exception is the copy the killed process sent without living to record it (on a loaded machine
            // the approval can come after its first round, so messages after the held one may be in flight
            // too): at most one copy per message, read by the receiver before the second process started.
            let repeated = Dictionary(grouping: calls, by: \.id).filter { $0.value.count > 1 }
            #expect(repeated.keys.contains(inFlight), "\(repeated.mapValues { $0.count })")
            for (id, copies) in repeated {
                #expect(Set(copies.map(\.body)).count == 1, "\(id) was sent with different bodies")
                guard id != inFlight else { continue }
                let attempts = rows.first { $0["id"] as? String == id }?["attempts"] as? Int ?? 0
                let unrecorded = copies.contains { $0.arrived <= restarted } ? 1 : 0
                #expect(attempts + unrecorded >= copies.count,
                        "\(id) reached the receiver \(copies.count) times in \(attempts) attempts (killed at \(killed), \(unrecorded) copy before the restart)")
            }
            #expect(Set(rows.compactMap { $0["id"] as? String }) == expected)
            #expect(rows.allSatisfy { $0["state"] as? String == "delivered" })
            #expect(try await server.verifyAudit(TestServer.adminToken).json["ok"] as? Bool == true)
        } catch {
            Issue.record("\(error)\nfirst log:\n\(first.output)\nsecond log:\n\(second?.output ?? "")")
        }
        await first.stop()
        await second?.stop()
        await receiver.stop()
        try? FileManager.default.removeItem(at: folder)
    }

    @Test("an endpoint whose address refuses connections is recorded as such, not as a timeout")
    func refusedEndpoint() async throws {
        // A port this test holds without listening: connections are refused, and no other test's listener can take it.
        let (held, port) = try TestPorts.refusing()
        defer { close(held) }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gatehouse-webhooks-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let policyPath = folder.appendingPathComponent("policy.yaml").path
        try Self.policy(port: port, events: "[all]", timeout: "1s").write(toFile: policyPath, atomically: true, encoding: .utf8)
        let server = try await ServeProcess.start(policyPath: policyPath, database: "sqlite:" + folder.appendingPathComponent("g.db").path,
                                                  folder: folder, name: "refused",
                                                  environment: ["TEST_WEBHOOK_SECRET": "whsec_" + Data(repeating: 9, count: 32).base64EncodedString()])
        do {
            let t = try await server.tokens("alice")
            _ = try #require(try await server.request(t["alice"]!).string("id"))
            // Each attempt records its outcome; retries come every second or two. On a busy machine an attempt can
            // also end at the HTTP client's own deadline, or the one-second question to the address go unanswered
            // (then the attempt is a timeout, as before): some attempt says refused.
            let refused = "connection refused by 127.0.0.1:\(port)"
            var seen: Set<String> = []
            _ = try await waitUntil(timeout: .seconds(40), interval: .milliseconds(100)) {
                let rows = try await server.listDeliveries(TestServer.adminToken, limit: 100).json["deliveries"] as? [[String: Any]] ?? []
                seen.formUnion(rows.compactMap { $0["last_status"] as? String })
                return seen.contains(refused)
            }
            #expect(seen.contains(refused), "\(seen)")
        } catch {
            Issue.record("\(error)\nserver log:\n\(server.output)")
        }
        await server.stop()
        try? FileManager.default.removeItem(at: folder)
    }

    @Test("an endpoint that hangs up before answering, or takes the connection and never answers, is recorded as such")
    func hangUpAndSilence() async throws {
        // One address accepts each connection and closes it at once; the other never accepts (the kernel does).
        let (hangUp, hangUpPort) = try CLIReachTests.silentListener()
        let accepting = Thread {
            while true {
                let connection = accept(hangUp, nil, nil)
                guard connection >= 0 else { return }
                close(connection)
            }
        }
        accepting.start()
        let (silent, silentPort) = try CLIReachTests.silentListener()
        defer {
            shutdown(hangUp, Int32(SHUT_RDWR))
            close(hangUp)
            close(silent)
        }
        let folder = try TemporaryFolder.make("gatehouse-webhooks")
        defer { TemporaryFolder.remove(folder) }
        let policyPath = folder.appendingPathComponent("policy.yaml").path
        try Self.policy(webhooks: ["hangup: {url: \"http://127.0.0.1:\(hangUpPort)/hook\", secret_env: TEST_WEBHOOK_SECRET, events: [all], timeout: 2s}",
                                   "silent: {url: \"http://127.0.0.1:\(silentPort)/hook\", secret_env: TEST_WEBHOOK_SECRET, events: [all], timeout: 1s}"])
            .write(toFile: policyPath, atomically: true, encoding: .utf8)
        let server = try await ServeProcess.start(policyPath: policyPath, database: "sqlite:" + folder.appendingPathComponent("g.db").path,
                                                  folder: folder, name: "hangup",
                                                  environment: ["TEST_WEBHOOK_SECRET": "whsec_" + Data(repeating: 7, count: 32).base64EncodedString()])
        do {
            let t = try await server.tokens("alice")
            _ = try #require(try await server.request(t["alice"]!).string("id"))
            var seen: [String: Set<String>] = [:]
            _ = try await waitUntil(timeout: .seconds(40), interval: .milliseconds(100)) {
                let rows = try await server.listDeliveries(TestServer.adminToken, limit: 100).json["deliveries"] as? [[String: Any]] ?? []
                for row in rows {
                    guard let endpoint = row["endpoint"] as? String, let status = row["last_status"] as? String else { continue }
                    seen[endpoint, default: []].insert(status)
                }
                return seen["hangup"] != nil && seen["silent"] != nil
            }
            // Every outcome in words: none is an error type's name.
            #expect(seen["hangup"] == ["the endpoint closed the connection before a complete answer"], "\(seen)")
            #expect(seen["silent"] == ["no complete answer within 1s"], "\(seen)")
        } catch {
            Issue.record("\(error)\nserver log:\n\(server.output)")
        }
        await server.stop()
    }

    @Test("an endpoint that never answers holds only its own messages: another endpoint's retries and new messages go on meanwhile")
    func silentEndpointHoldsOnlyItsOwn() async throws {
        // The kernel takes the silent endpoint's connections and nothing ever answers: each of its attempts lasts
        // its whole 30 s timeout. The receiver fails every first attempt, so each of its messages needs a retry
        // (due a second later). Both endpoints get every event.
        let (silent, silentPort) = try CLIReachTests.silentListener()
        defer { close(silent) }
        let receiver = try await WebhookReceiver.start()
        await receiver.receiverState.configure(failFirst: 1)
        let folder = try TemporaryFolder.make("gatehouse-webhooks")
        defer { TemporaryFolder.remove(folder) }
        let policyPath = folder.appendingPathComponent("policy.yaml").path
        try Self.policy(webhooks: ["silent: {url: \"http://127.0.0.1:\(silentPort)/hook\", secret_env: TEST_WEBHOOK_SECRET, events: [all], timeout: 30s}",
                                   "receiver: {url: \"http://127.0.0.1:\(receiver.port)/hook\", secret_env: TEST_WEBHOOK_SECRET, events: [all], timeout: 5s}"])
            .write(toFile: policyPath, atomically: true, encoding: .utf8)
        let server = try await ServeProcess.start(policyPath: policyPath, database: "sqlite:" + folder.appendingPathComponent("g.db").path,
                                                  folder: folder, name: "silent", environment: ["TEST_WEBHOOK_SECRET": receiver.secret])
        do {
            let t = try await server.tokens("alice", "bob")
            let started = Date()
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            // The first message's retry, and a second message filed meanwhile, reach the receiver while the silent
            // endpoint's first attempt is still waiting out its 30 s (when a round waited for every delivery, the
            // receiver got nothing more until then).
            #expect(try await server.approve(t["bob"]!, id).status == 200)
            let expected = try await Self.expectedIDs(server, actions: ["request.created", "request.approved"])
            #expect(expected.count == 2)
            try await receiver.waitForProcessed(expected, within: 20)
            #expect(Date().timeIntervalSince(started) < 30, "the receiver's messages waited for the silent endpoint")
            let calls = await receiver.receiverState.calls
            for messageID in expected {
                #expect(calls.filter { $0.id == messageID }.map(\.status) == [500, 200], "\(messageID)")
            }
        } catch {
            Issue.record("\(error)\nserver log:\n\(server.output)")
        }
        await server.stop()
        await receiver.stop()
    }

    @Test("`policy check` reports an invalid webhook URL with its line")
    func policyCheck() async throws {
        let folder = try TemporaryFolder.make("gatehouse-webhooks")
        defer { TemporaryFolder.remove(folder) }
        let path = folder.appendingPathComponent("policy.yaml").path
        let yaml = TestServer.policyYAML + "\nnotifications:\n  webhooks:\n    siem: {url: \"htps//siem.example.com\", secret_env: S}\n"
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        let result = try await Command.run(try ServeProcess.binary().path, ["policy", "check", path])
        #expect(result.status == 1, "\(result)")
        let line = yaml.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains("htps//") }.map { $0 + 1 } ?? 0
        #expect(result.stderr.contains("\(line):") || result.stdout.contains("\(line):"), "\(result)")
        #expect((result.stderr + result.stdout).contains("url of webhook `siem`"), "\(result)")
    }
}
