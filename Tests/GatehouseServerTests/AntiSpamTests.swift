import Foundation
import GatehouseApp
import GatehouseCore
import GatehouseServer
import GatehouseStore
import Logging
import Testing

/// The anti-spam policy through the real HTTP API and SQLite store, with the test's clock.
@Suite("Anti-spam")
struct AntiSpamTests {
    static let users = (1...20).map { String(format: "u%02d", $0) }

    /// Limits as in the design, except the per-address limit (every test client is 127.0.0.1) and
    /// the tarpit for blocked principals (its own test turns it on).
    static func policy(_ antispam: String = "") -> String {
        """
        version: 1
        principals:
          alice: {groups: [engineers]}
          bob:   {groups: [engineers, dba]}
          carol: {groups: [dba]}
          dave:  {groups: [dba]}
          erin:  {groups: [security]}
          honest: {groups: [engineers]}
          bot:   {groups: [automation], kind: service}
        \(users.map { "  \($0): {groups: [engineers]}" }.joined(separator: "\n"))
        admins: [security]
        resources:
          prod-db:
            kind: postgres
            roles:
              read:  {requesters: [engineers, automation], approvals: 0, max_duration: 8h, allows: read}
              write: {requesters: [engineers, automation], approvers: [dba], approvals: 1, max_duration: 1h, allows: write}
          billing-api:
            kind: http
            roles:
              operate: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 1h, allows: write}
          reports-db:
            kind: postgres
            roles:
              read: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 1h, allows: read}
        pending_ttl: 24h
        antispam:
        \(antispam.isEmpty ? "  limits: {per_source_ip: {rate: 10000/h, burst: 1000}}" : antispam)
        \(antispam.contains("blocked_delay") ? "" : "  blocked_delay: off")
        """
    }

    func ids(_ reply: TestServer.Reply, _ key: String) -> [[String: Any]] {
        reply.json[key] as? [[String: Any]] ?? []
    }

    func notifications(_ server: TestServer, _ recipient: String) async throws -> [[String: Any]] {
        ids(try await server.listNotifications(TestServer.adminToken, recipient: recipient, limit: 1000), "notifications")
    }

    func auditActions(_ server: TestServer) async throws -> [String] {
        (try await server.listAudit(TestServer.adminToken, limit: 10000).json["events"] as? [[String: Any]] ?? [])
            .compactMap { $0["action"] as? String }
    }

    // MARK: scenarios

    @Test("(a) a bot files 1,000 requests in a minute: the burst reaches the store, approvers get their budget and one digest, the bot is blocked")
    func botFlood() async throws {
        try await TestServer.with(policy: Self.policy()) { server in
            let bot = try await server.token(for: "bot")
            var statuses: [Int: Int] = [:]
            var firstRefusal: TestServer.Reply?
            for index in 0..<1000 {
                let role = index % 2 == 0 ? "write" : "read"
                let reply = try await server.request(bot, role: role, duration: "\(10 + index % 50)m", reason: "deploy pipeline run \(index) needs database access")
                statuses[reply.status, default: 0] += 1
                if reply.status == 429, firstRefusal == nil { firstRefusal = reply }
                server.clock.advance(by: 0.06)
            }
            let stored = ids(try await server.listRequests(TestServer.adminToken, scope: .all, limit: 1000), "requests")
                .filter { $0["requester"] as? String == "bot" }
            #expect(stored.count <= 5, "\(stored.count) requests reached the store")
            #expect(stored.count >= 1)
            #expect((statuses[201] ?? 0) + (statuses[200] ?? 0) <= 5)
            // Blocking held the bot's waiting requests: no approver can grant them now.
            #expect(stored.allSatisfy { $0["state"] as? String != "pending" }, "\(stored.map { $0["state"] ?? "" })")
            // The first refusal says why and when; later ones (the bot is abusive, then blocked) do not.
            let refusal = try #require(firstRefusal)
            #expect(refusal.headers.first(name: "Retry-After").flatMap(Int.init) ?? 0 > 0)
            #expect(refusal.headers.first(name: "RateLimit-Policy")?.hasPrefix("\"") == true)
            #expect(refusal.headers.first(name: "RateLimit")?.contains(";r=0;t=") == true)
            #expect(statuses[403] ?? 0 > 900, "\(statuses)")
            for approver in ["bob", "carol", "dave"] {
                let inbox = try await notifications(server, approver)
                let immediate = inbox.filter { $0["kind"] as? String == "request" }.count
                let digests = inbox.filter { $0["kind"] as? String == "digest" }.count
                #expect(immediate <= 5 && digests <= 1, "\(approver): \(immediate) + \(digests) digests")
            }
            let blocked = ids(try await server.listPrincipals(TestServer.adminToken, blocked: true), "principals")
            #expect(blocked.contains { $0["principal"] as? String == "bot" })
            let after = try await server.request(bot, role: "read", reason: "one more after the block")
            #expect(after.status == 403)
            #expect(after.string("code") == "principal_blocked")
            #expect(try await server.check(bot, role: "read").string("decision") == "deny")
            let events = try await auditActions(server)
            #expect(events.contains("principal.blocked"))
            #expect(events.contains("request.limited"))
            // Refusals are audited once per limit and minute, not once per attempt.
            #expect(events.filter { $0 == "request.limited" }.count < 20)
            let metrics = try await server.send(.GET, "/metrics", token: nil)
            let text = String(decoding: metrics.body, as: UTF8.self)
            #expect(text.contains("gatehouse_antispam_total{outcome=\"blocked\",reason=\"score\"} 1"))
            #expect(text.contains("outcome=\"limited\""))
            #expect(try await server.verifyAudit(TestServer.adminToken).json["ok"] as? Bool == true)
        }
    }

    @Test("(b) 20 accounts file the same reason: they are quarantined, and an honest requester at the same time is not delayed")
    func campaign() async throws {
        try await TestServer.with(policy: Self.policy()) { server in
            var campaignIds: [String] = []
            var honestId: String?
            for (index, user) in Self.users.enumerated() {
                let token = try await server.token(for: user)
                let reply = try await server.request(token, reason: "Need to check customer records for the quarterly report")
                #expect(reply.status == 201, "\(user): \(reply.status) \(String(decoding: reply.body, as: UTF8.self))")
                campaignIds.append(try #require(reply.string("id")))
                server.clock.advance(by: 10)
                if index == 9 {
                    let honest = try await server.token(for: "honest")
                    let reply = try await server.request(honest, reason: "INC-7781 rebuild the orders index after the failed migration")
                    #expect(reply.status == 201)
                    #expect(reply.string("state") == "pending")
                    #expect(reply.json["approvals_required"] as? Int == 1)
                    honestId = reply.string("id")
                }
            }
            for id in campaignIds {
                let request = try await server.readRequest(TestServer.adminToken, id)
                #expect(request.string("state") == "quarantined", "\(id): \(request.string("state") ?? "?")")
            }
            let honest = try #require(honestId)
            #expect(try await server.readRequest(TestServer.adminToken, honest).string("state") == "pending")
            // Every approver heard about the honest request at once, not in a digest.
            for approver in ["bob", "carol", "dave"] {
                let inbox = try await notifications(server, approver)
                #expect(inbox.contains { $0["kind"] as? String == "request" && ($0["request_ids"] as? [String]) == [honest] }, "\(approver)")
            }
            // The reviewers see the campaign; approvers are not asked to decide it.
            let bob = try await server.token(for: "bob")
            let toApprove = ids(try await server.listRequests(bob, scope: .toApprove), "requests").compactMap { $0["id"] as? String }
            #expect(toApprove == [honest])
            // The requester learns only that it is held, not the score that held it.
            let own = try await server.readRequest(try await server.token(for: Self.users[12]), campaignIds[12])
            #expect(own.string("state_reason") == "held for review by the anti-spam policy")
            #expect(own.json["antispam"] == nil)
            let held = try await server.readRequest(TestServer.adminToken, campaignIds[12])
            let signals = ((held.json["antispam"] as? [String: Any])?["signals"] as? [[String: Any]] ?? []).compactMap { $0["signal"] as? String }
            #expect(signals.contains("shared_reason"))
            // A reviewer releases one (it goes to the approvers) and rejects another.
            let erin = try await server.token(for: "erin")
            let released = try await server.review(erin, campaignIds[0], .release, comment: "checked with u01")
            #expect(released.string("state") == "pending")
            let rejected = try await server.review(erin, campaignIds[1], .reject)
            #expect(rejected.string("state") == "denied")
            #expect(try await server.approve(bob, campaignIds[2]).string("code") == "quarantined")
            // Only reviewers review.
            #expect(try await server.review(bob, campaignIds[3], .release).status == 404)
        }
    }

    @Test("(b) 8 accounts file the same reason at the same moment: every one after the first sees the others (shared_reason)")
    func simultaneousCampaign() async throws {
        try await TestServer.with(policy: Self.policy()) { server in
            let users = Array(Self.users.prefix(8))
            var tokens: [String] = []
            for user in users { tokens.append(try await server.token(for: user)) }
            let filed = try await withThrowingTaskGroup(of: String?.self) { group in
                for token in tokens {
                    group.addTask { try await server.request(token, reason: "Need to check customer records for the quarterly report").string("id") }
                }
                return try await group.reduce(into: [String]()) { if let id = $1 { $0.append(id) } }
            }
            #expect(filed.count == 8)
            var sharing = 0
            for id in filed {
                let request = try await server.readRequest(TestServer.adminToken, id)
                let signals = ((request.json["antispam"] as? [String: Any])?["signals"] as? [[String: Any]] ?? []).compactMap { $0["signal"] as? String }
                if signals.contains("shared_reason") { sharing += 1 }
            }
            // Filings commit one after another: the first sees nobody, each later one at least the first.
            #expect(sharing == 7, "\(sharing) of 8 saw the others")
        }
    }

    @Test("(c) three denials in a row: the requester waits 10m, 20m, 40m; re-filing after a cancel does not reset it; an approval does")
    func denialCooldown() async throws {
        // Scores out of the way: this is about the cooldown alone.
        let policy = Self.policy("""
              limits: {per_source_ip: off, per_principal: off}
              score: {thresholds: {throttle: 100, extra_approval: 100, quarantine: 100, block: 100}}
            """)
        try await TestServer.with(policy: policy) { server in
            let t = try await server.tokens("alice", "bob")
            func denyNew(_ reason: String) async throws {
                let reply = try await server.request(t["alice"]!, reason: reason)
                #expect(reply.status == 201, "\(String(decoding: reply.body, as: UTF8.self))")
                let deny = try await server.send(.POST, "/v1/requests/\(reply.string("id") ?? "")/deny", token: t["bob"]!, json: ["comment": "no"])
                #expect(deny.string("state") == "denied")
            }
            func retryAfter() async throws -> Int? {
                let reply = try await server.request(t["alice"]!, reason: "INC-5 try once more")
                guard reply.status == 429 else { return nil }
                #expect(reply.headers.first(name: "RateLimit-Policy")?.hasPrefix("\"denial-cooldown\"") == true)
                #expect(reply.string("detail")?.contains("denied in a row") == true)
                return reply.headers.first(name: "Retry-After").flatMap(Int.init)
            }
            try await denyNew("INC-1 first attempt at the fix")
            #expect(try await retryAfter() == 600)
            // Another resource is not affected.
            #expect(try await server.request(t["alice"]!, resource: "billing-api", role: "operate", reason: "INC-1 unrelated work").status == 201)
            server.clock.advance(by: 600)
            // File, cancel, file again: the run of denials continues.
            let canceled = try await server.request(t["alice"]!, reason: "INC-2 second attempt at the fix")
            _ = try await server.send(.POST, "/v1/requests/\(canceled.string("id") ?? "")/cancel", token: t["alice"]!)
            try await denyNew("INC-2 second attempt, filed again")
            #expect(try await retryAfter() == 1200)
            server.clock.advance(by: 1199)
            #expect(try await retryAfter() == 1)
            server.clock.advance(by: 1)
            try await denyNew("INC-3 third attempt at the fix")
            #expect(try await retryAfter() == 2400)
            server.clock.advance(by: 2400)
            let approved = try await server.request(t["alice"]!, reason: "INC-4 fourth attempt at the fix")
            #expect(try await server.approve(t["bob"]!, approved.string("id") ?? "").string("state") == "approved")
            try await denyNew("INC-5 a new run starts")
            #expect(try await retryAfter() == 600)
        }
    }

    @Test("(d) an approver reports a request: requester blocked, grants revoked, waiting requests quarantined, reviewers told")
    func report() async throws {
        try await TestServer.with(policy: Self.policy()) { server in
            let t = try await server.tokens("alice", "carol", "erin")
            let read = try await server.request(t["alice"]!, role: "read", duration: "1h", reason: "INC-3 read the incident tables")
            #expect(read.string("state") == "approved")
            let write = try #require(try await server.request(t["alice"]!, reason: "INC-3 change the incident tables").string("id"))
            let other = try #require(try await server.request(t["alice"]!, resource: "billing-api", role: "operate", reason: "INC-3 replay the billing events").string("id"))
            #expect(try await server.check(t["alice"]!, role: "read").string("decision") == "allow")
            // The requester cannot report their own request, and nobody can report what they cannot see.
            #expect(try await server.report(t["alice"]!, write, comment: "looks odd").status == 403)
            let reply = try await server.report(t["carol"]!, write, comment: "alice is on leave; this is not her")
            #expect(reply.status == 200)
            #expect(reply.string("state") == "quarantined")
            #expect(try await server.readRequest(TestServer.adminToken, other).string("state") == "quarantined")
            #expect(try await server.check(t["alice"]!, role: "read").string("decision") == "deny")
            let grants = ids(try await server.listGrants(TestServer.adminToken, scope: .all), "grants")
            #expect(grants.allSatisfy { $0["state"] as? String == "revoked" })
            // A blocked principal can neither be approved nor report anyone.
            let bob = try await server.token(for: "bob")
            let bobs = try #require(try await server.request(bob, resource: "billing-api", role: "operate", reason: "INC-4 rotate the billing keys").string("id"))
            #expect(try await server.report(t["alice"]!, bobs, comment: "looks odd").string("code") == "principal_blocked")
            let refused = try await server.request(t["alice"]!, resource: "reports-db", role: "read", reason: "INC-3 one more thing")
            #expect(refused.status == 403)
            #expect(refused.string("code") == "principal_blocked")
            let events = try await auditActions(server)
            for action in ["request.reported", "principal.blocked", "grant.revoked", "request.quarantined"] {
                #expect(events.contains(action), "\(action)")
            }
            #expect(try await notifications(server, "erin").contains { $0["kind"] as? String == "report" })
            // Reported again (a second click, a retry, another approver): 409 saying so, nothing stored, nobody told again.
            let dave = try await server.token(for: "dave")
            let reportsBefore = try await notifications(server, "erin").filter { $0["kind"] as? String == "report" }.count
            let auditBefore = try await auditActions(server).count
            for reporter in [t["carol"]!, t["carol"]!, dave] {
                let again = try await server.report(reporter, write, comment: "alice is on leave; this is not her")
                #expect(again.status == 409 && again.string("code") == "already_reported", "\(again.json)")
            }
            #expect(try await notifications(server, "erin").filter { $0["kind"] as? String == "report" }.count == reportsBefore)
            #expect(try await auditActions(server).count == auditBefore)
            // Another of her requests reported is news: recorded and told, under the block already in force.
            #expect(try await server.report(t["carol"]!, other, comment: "and this one too").status == 200)
            #expect(try await notifications(server, "erin").filter { $0["kind"] as? String == "report" }.count == reportsBefore + 1)
            let after = try await auditActions(server)
            #expect(after.filter { $0 == "request.reported" }.count == 2 && after.filter { $0 == "principal.blocked" }.count == 1, "\(after)")
            // Only an admin unblocks; then alice can ask again.
            #expect(try await server.unblock(t["carol"]!, "alice").status == 403)
            #expect(try await server.unblock(TestServer.adminToken, "alice").status == 200)
            #expect(try await server.unblock(TestServer.adminToken, "alice").status == 409)
            #expect(try await server.request(t["alice"]!, resource: "reports-db", role: "read", reason: "INC-3 one more thing").status == 201)
            #expect(try await auditActions(server).contains("principal.unblocked"))
        }
    }

    @Test("a principal blocked by the score and unblocked by an admin is not blocked again for what they did before")
    func unblockStartsAfresh() async throws {
        try await TestServer.with(policy: Self.policy("""
              limits: {per_source_ip: off}
            """)) { server in
            let t = try await server.tokens("alice", "bob")
            let first = try #require(try await server.request(t["alice"]!, reason: "CHG-7 restart the app after the config change").string("id"))
            #expect(try await server.send(.POST, "/v1/requests/\(first)/deny", token: t["bob"]!, json: ["comment": "not during the freeze"]).status == 200)
            // Retries inside the denial cooldown: refused, each counted by the score, until the score blocks alice.
            func isBlocked() async throws -> Bool {
                let listed = try await server.send(.GET, "/v1/principals?blocked=true", token: TestServer.adminToken)
                return (listed.json["principals"] as? [[String: Any]] ?? []).contains { $0["principal"] as? String == "alice" }
            }
            var retries = 0
            while try await !isBlocked(), retries < 8 {
                let retry = try await server.request(t["alice"]!, reason: "CHG-7 restart the app after the config change")
                #expect(retry.status == 429)
                // The first says why and what retrying costs (later ones are the score's throttle, which says less).
                if retries == 0 {
                    #expect(retry.string("detail")?.contains("counts against you") == true, "\(String(decoding: retry.body, as: UTF8.self))")
                }
                retries += 1
            }
            #expect(try await isBlocked(), "not blocked after \(retries) retries")
            #expect(try await server.unblock(TestServer.adminToken, "alice").status == 200)
            // A fresh piece of work on another resource is filed as usual, not quarantined or blocked for the retries before.
            let fresh = try await server.request(t["alice"]!, resource: "billing-api", role: "operate",
                                                 reason: "CHG-12 rotate the billing API key after the leak")
            #expect(fresh.status == 201)
            #expect(fresh.string("state") == "pending")
            // The approvers' denial still holds its resource back for the cooldown.
            #expect(try await server.request(t["alice"]!, reason: "CHG-7 restart the app after the config change").status == 429)
        }
    }

    @Test("a blocked principal's requests are held back by the tarpit; other principals are answered meanwhile")
    func tarpit() async throws {
        try await TestServer.with(policy: Self.policy("""
              limits: {per_source_ip: off}
              blocked_delay: 3s
            """)) { server in
            let t = try await server.tokens("alice", "bob", "carol")
            let write = try #require(try await server.request(t["alice"]!, reason: "INC-3 change the incident tables").string("id"))
            #expect(try await server.report(t["carol"]!, write, comment: "looks odd").status == 200)
            // Four held requests from the blocked principal, then one from bob. Each of alice's is held at
            // least the 3 s delay; bob's is answered, not refused with them. (Only lower bounds on time: the suite
            // shares two cores with everything else it runs, so how fast bob is answered is not asserted.)
            let finished = try await withThrowingTaskGroup(of: (String, Int, Duration).self) { group in
                for index in 0..<4 {
                    group.addTask {
                        let start = ContinuousClock.now
                        let reply = try await server.request(t["alice"]!, resource: "reports-db", role: "read", reason: "INC-3 attempt \(index)")
                        return ("alice", reply.status, ContinuousClock.now - start)
                    }
                }
                group.addTask {
                    try await Task.sleep(for: .milliseconds(100))
                    let start = ContinuousClock.now
                    let reply = try await server.request(t["bob"]!, resource: "reports-db", role: "read", reason: "INC-5 read the report tables")
                    return ("bob", reply.status, ContinuousClock.now - start)
                }
                var order: [(String, Int, Duration)] = []
                for try await result in group { order.append(result) }
                return order
            }
            let bob = finished.filter { $0.0 == "bob" }, alice = finished.filter { $0.0 == "alice" }
            #expect(bob.count == 1 && bob.first?.1 == 201, "\(finished)")
            #expect(alice.count == 4)
            for held in alice {
                #expect(held.1 == 403)
                #expect(held.2 >= .milliseconds(2900), "answered after \(held.2)")
            }
            // Checks are decisions, not filings: a blocked principal's check is denied.
            #expect(try await server.check(t["alice"]!, role: "read").string("decision") == "deny")
        }
    }

    @Test("the tarpit holds at most its capacity; beyond it, answers go out at once")
    func tarpitCapacity() async throws {
        let tarpit = Tarpit(capacity: 2)
        // Holds of an hour: whenever the three start, two are held when the third comes. The one turned away
        // answers at once; cancelling the others (their clients gone) ends their holds.
        let held = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<3 { group.addTask { await tarpit.hold(seconds: 3600) } }
            var results: [Bool] = []
            if let first = await group.next() { results.append(first) }
            #expect(tarpit.occupancy == 2)
            group.cancelAll()
            for await result in group { results.append(result) }
            return results
        }
        #expect(held == [false, true, true], "\(held)")
        #expect(tarpit.occupancy == 0)
        #expect(await tarpit.hold(seconds: 0) == false)
    }

    @Test("(e) two stores on one SQLite file (shared mode) enforce one shared limit")
    func sharedLimit() async throws {
        let policy = Self.policy("""
              limits: {per_principal: {rate: 20/h, burst: 5}, per_source_ip: off}
              score: {thresholds: {throttle: 100, extra_approval: 100, quarantine: 100, block: 100}}
            """)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gatehouse-shared-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("gatehouse.db").path
        let policyPath = folder.appendingPathComponent("policy.yaml").path
        try policy.write(toFile: policyPath, atomically: true, encoding: .utf8)
        // An exclusive store refuses to share, and a shared one refuses an exclusive one.
        let first = try await GatehouseStore.open(url: "sqlite:\(path)?mode=shared")
        let second = try await GatehouseStore.open(url: "sqlite:\(path)?mode=shared")
        await #expect(throws: GatehouseError.self) { _ = try await GatehouseStore.open(url: "sqlite:\(path)") }
        let clock = ManualClock()
        let services = [first, second].map {
            UseCases(store: $0, policies: PolicyHolder(try! PolicyLoader.loadValid(file: policyPath), path: policyPath), clock: clock)
        }
        _ = try await services[0].tokens.bootstrapAdmin(token: TestServer.adminToken)
        let admin = try await services[0].tokens.authenticate(bearer: TestServer.adminToken)
        let (_, secret) = try await services[0].tokens.create(caller: admin, principal: "alice", description: nil)
        var accepted = 0
        do {
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<40 {
                    let service = services[index % 2]
                    group.addTask {
                        let caller = try await service.tokens.authenticate(bearer: secret)
                        // `read` needs no approval, so no two of these are "the identical pending request".
                        let input = NewRequestInput(resource: "prod-db", role: "read", duration: "\(10 + index)m", reason: "INC-\(index) distinct work item \(index)")
                        // Two stores on one file wait for each other through SQLite's busy timeout; on a loaded
                        // machine that can run out (503, nothing written): such an attempt is made again.
                        for _ in 0..<5 {
                            do {
                                return try await service.desk.create(caller: caller, input: input).created
                            } catch let error as GatehouseError where error.kind == .tooManyRequests {
                                return false
                            } catch let error as GatehouseError where error.kind == .unavailable {
                                continue
                            }
                        }
                        return false
                    }
                }
                for try await ok in group where ok { accepted += 1 }
            }
        } catch {
            await first.close()
            await second.close()
            throw error
        }
        #expect(accepted == 5, "\(accepted) accepted across two stores")
        #expect(try await services[1].audit.verifyChain().ok)
        await first.close()
        await second.close()
    }

    // MARK: limits one by one

    @Test("an identical pending request is returned with 200, not filed or notified again")
    func identicalPending() async throws {
        try await TestServer.with(policy: Self.policy()) { server in
            let alice = try await server.token(for: "alice")
            let first = try await server.request(alice, reason: "INC-8 fix the replica lag")
            #expect(first.status == 201)
            let again = try await server.request(alice, duration: "45m", reason: "INC-8 fix the replica lag, please")
            #expect(again.status == 200)
            #expect(again.string("id") == first.string("id"))
            #expect(try await notifications(server, "carol").count == 1)
        }
    }

    @Test("per-resource, per-address and pending caps refuse with 429 and name the limit")
    func limits() async throws {
        let policy = Self.policy("""
              limits: {per_principal: off, per_resource: {rate: 6/h, burst: 2}, per_source_ip: {rate: 60/h, burst: 4}, max_pending_per_principal: 3}
              score: {thresholds: {throttle: 100, extra_approval: 100, quarantine: 100, block: 100}}
            """)
        try await TestServer.with(policy: policy) { server in
            let t = try await server.tokens("alice", "bob", "honest")
            func file(_ who: String, _ resource: String, _ role: String, _ n: Int) async throws -> TestServer.Reply {
                try await server.request(t[who]!, resource: resource, role: role, duration: "\(10 + n)m", reason: "INC-\(n) work item \(n)")
            }
            // per-resource: two reads of prod-db at once (granted at once, so never "identical pending").
            #expect(try await file("alice", "prod-db", "read", 1).status == 201)
            #expect(try await file("alice", "prod-db", "read", 2).status == 201)
            let perResource = try await file("alice", "prod-db", "read", 3)
            #expect(perResource.status == 429)
            #expect(perResource.headers.first(name: "RateLimit-Policy") == "\"per-resource\";q=6;w=3600")
            #expect(perResource.headers.first(name: "Retry-After") == "600")
            // Another resource still works; then the address limit (4 at once from 127.0.0.1) refuses everyone there.
            #expect(try await file("alice", "billing-api", "operate", 4).status == 201)
            #expect(try await file("bob", "billing-api", "operate", 5).status == 201)
            let perAddress = try await file("honest", "reports-db", "read", 6)
            #expect(perAddress.status == 429)
            #expect(perAddress.headers.first(name: "RateLimit-Policy")?.hasPrefix("\"per-source-ip\"") == true)
            server.clock.advance(by: 3600)
            // Pending cap: alice has one pending (billing-api); two more fit, the fourth does not.
            #expect(try await file("alice", "reports-db", "read", 7).status == 201)
            #expect(try await file("alice", "prod-db", "write", 8).status == 201)
            let capped = try await file("alice", "prod-db", "read", 9)
            #expect(capped.status == 429, "\(String(decoding: capped.body, as: UTF8.self))")
            #expect(capped.headers.first(name: "RateLimit-Policy") == "\"pending\";q=3")
            #expect(capped.string("detail")?.contains("gatehouse cancel") == true)
            // Nothing refused was stored.
            let stored = ids(try await server.listRequests(TestServer.adminToken, scope: .all, limit: 1000), "requests")
            #expect(stored.count == 6)
        }
    }

    @Test("a throttled request reaches approvers only in a digest, and the requester waits out the throttle")
    func throttle() async throws {
        let policy = Self.policy("""
              limits: {per_source_ip: off}
              approver_notifications: {rate: 10/h, burst: 5}
            """)
        try await TestServer.with(policy: policy) { server in
            let alice = try await server.token(for: "alice")
            // new principal (+2) and a low-information reason (+2): throttle.
            let reply = try await server.request(alice, reason: "need access asap")
            #expect(reply.status == 201)
            #expect(reply.string("state") == "pending")
            #expect(reply.json["antispam"] == nil, "the requester does not see the score")
            let inbox = try await notifications(server, "carol")
            #expect(inbox.map { $0["kind"] as? String } == ["digest"])
            let next = try await server.request(alice, resource: "billing-api", role: "operate", reason: "INC-77 replay failed invoices")
            #expect(next.status == 429)
            #expect(next.headers.first(name: "RateLimit-Policy")?.hasPrefix("\"throttle\"") == true)
            let throttled = ids(try await server.listPrincipals(TestServer.adminToken, throttled: true), "principals")
            #expect(throttled.map { $0["principal"] as? String } == ["alice"])
            // The approver sees why.
            let carol = try await server.token(for: "carol")
            let seen = try await server.send(.GET, "/v1/requests/\(reply.string("id") ?? "")", token: carol)
            let spam = try #require(seen.json["antispam"] as? [String: Any])
            #expect(spam["action"] as? String == "throttle")
            #expect(spam["score"] as? Int == 4)
            server.clock.advance(by: 601)
            #expect(try await server.request(alice, resource: "billing-api", role: "operate", reason: "INC-77 replay failed invoices").status == 201)
        }
    }

    @Test("extra approval: a suspicious request needs one more approver than the policy says")
    func extraApproval() async throws {
        let policy = Self.policy("""
              limits: {per_source_ip: off}
              score: {weights: {low_information_reason: 6}}
            """)
        try await TestServer.with(policy: policy) { server in
            let t = try await server.tokens("alice", "carol", "dave")
            let reply = try await server.request(t["alice"]!, reason: "asdf")
            #expect(reply.json["approvals_required"] as? Int == 2)
            let id = try #require(reply.string("id"))
            #expect(try await server.approve(t["carol"]!, id).string("state") == "pending")
            #expect(try await server.approve(t["dave"]!, id).string("state") == "approved")
            #expect(try await auditActions(server).contains("request.extra_approval"))
        }
    }

    @Test("approver budget: beyond it, one digest collects the rest")
    func approverBudget() async throws {
        let policy = Self.policy("""
              limits: {per_source_ip: off, per_principal: off}
              approver_notifications: {rate: 1/h, burst: 2}
              score: {thresholds: {throttle: 100, extra_approval: 100, quarantine: 100, block: 100}}
            """)
        try await TestServer.with(policy: policy) { server in
            for user in Self.users.prefix(6) {
                let token = try await server.token(for: user)
                #expect(try await server.request(token, reason: "INC-1\(user) separate work by \(user)").status == 201)
            }
            let inbox = try await notifications(server, "carol")
            #expect(inbox.filter { $0["kind"] as? String == "request" }.count == 2)
            let digests = inbox.filter { $0["kind"] as? String == "digest" }
            #expect(digests.count == 1)
            #expect((digests.first?["request_ids"] as? [String])?.count == 4)
        }
    }

    @Test("anti-spam can be turned off; a 429 is never given then")
    func disabled() async throws {
        try await TestServer.with(policy: Self.policy("  enabled: false")) { server in
            let alice = try await server.token(for: "alice")
            for index in 0..<12 {
                #expect(try await server.request(alice, role: "read", duration: "\(10 + index)m", reason: "asdf").status == 201)
            }
        }
    }
}
