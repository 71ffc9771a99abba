import Foundation
import GatehouseCore
import GatehouseTestSupport
import GatehouseStore
import Logging
import Testing

@Suite("Moving a store from SQLite to PostgreSQL")
struct TransferTests {
    /// Exports a store into memory.
    static func export(_ store: GatehouseStore) async throws -> [String] {
        let lines = Shared([String]())
        _ = try await StoreTransfer.export(store) { line in lines.with { $0.append(line) } }
        return lines.with { $0 }
    }

    static func rowCounts(_ store: GatehouseStore) async throws -> [String: Int] {
        try await store.read { try await $0.rowCounts() }
    }

    @Test("a store with a few thousand audit events moves to PostgreSQL whole; its audit chain verifies there; bad files are refused without writing anything")
    func sqliteToPostgres() async throws {
        try await TestServer.with(store: .sqlite) { server in
            let t = try await server.tokens("alice", "bob", "carol", "deploy-bot")
            // Requests, approvals, denials, grants: a few thousand audit events.
            for index in 0..<700 {
                let reply = try await server.request(t["alice"]!, reason: "INC-\(index) rotate the \(index % 7) replica keys")
                let id = try #require(reply.string("id"), "\(reply.status)")
                _ = index % 5 == 0 ? try await server.deny(t["carol"]!, id, comment: "not now")
                                   : try await server.approve(t["bob"]!, id)
                server.clock.advance(by: 61)
            }
            // Then anti-spam state: limits hit, notifications, a reported (blocked) principal.
            try server.writePolicy(TestServer.policyYAML.replacingOccurrences(
                of: "antispam: {enabled: false}", with: "antispam: {limits: {per_principal: {rate: 20/h, burst: 2}}, blocked_delay: off}")
                + "\nbreak_glass: {enabled: true, requesters: [dba]}\nnotifications:\n  webhooks:\n    chat: {url: \"http://127.0.0.1:9/hook\", format: slack}\n",
                reload: true)
            // A break-glass use, and webhook messages queued for it (nothing delivers them here).
            try await server.service.outbox.queueMessages()
            let glass = try await server.send(.POST, "/v1/break-glass", token: t["bob"]!,
                                              json: ["resource": "prod-db", "role": "admin", "reason": "INC-1 primary down, failing over"])
            #expect(glass.status == 201)
            try await server.service.outbox.queueMessages()
            var last: String?
            for (resource, role) in [("billing-api", "operate"), ("prod-host", "operate"), ("prod-db", "admin"), ("prod-db", "write")] {
                let reply = try await server.request(t["alice"]!, resource: resource, role: role, reason: "CHG-77 deploy the billing release")
                last = reply.string("id") ?? last
            }
            let reported = try #require(last)
            #expect(try await server.report(t["bob"]!, reported, comment: "looks odd").status == 200)
            let source = server.service.store
            // A person bound from an identity provider (the table of issuer + subject bindings).
            try await source.write { session in
                try await session.insertIdentity(IdentityBinding(issuer: "https://login.example.com", subject: "248289761001", principal: "erin",
                                                                 email: "erin@example.com", groups: ["engineers"], firstSeen: Date(), lastSeen: Date()))
            }
            let events = try await server.auditCount()
            #expect(events > 1_900, "\(events) audit events")
            let exported = try await Self.export(source)
            let sourceCounts = try await Self.rowCounts(source)
            #expect(StoreTransfer.tables.allSatisfy { (sourceCounts[$0] ?? 0) > 0 }, "\(sourceCounts)")

            let folder = FileManager.default.temporaryDirectory
            let target = try await TestDatabase.fresh(.postgres, folder: folder)
            let store = try await target.open(logger: Logger(label: "transfer-test"))
            do {
                // Cut off, tampered with, or from a newer schema: refused, and nothing is written.
                let truncated = Array(exported.dropLast(10))
                await #expect(throws: GatehouseError.self) { _ = try await StoreTransfer.import(store, lines: truncated) }
                var tampered = exported
                let auditLine = try #require(tampered.firstIndex { $0.contains("\"table\":\"audit_events\"") && $0.contains("\"actor\":\"bob\"") })
                tampered[auditLine] = tampered[auditLine].replacingOccurrences(of: "\"actor\":\"bob\"", with: "\"actor\":\"mallory\"")
                do {
                    _ = try await StoreTransfer.import(store, lines: tampered)
                    Issue.record("a tampered audit chain was imported")
                } catch let error as GatehouseError {
                    #expect(error.code == "import_audit_broken")
                }
                // Without its head line (and the count made to match), the chain cannot be checked: refused.
                var headless = exported.filter { !$0.contains("\"table\":\"audit_head\"") }
                headless[headless.count - 1] = headless[headless.count - 1].replacingOccurrences(of: "\"rows\":\(exported.count - 2)", with: "\"rows\":\(exported.count - 3)")
                do {
                    _ = try await StoreTransfer.import(store, lines: headless)
                    Issue.record("an export without its chain head was imported")
                } catch let error as GatehouseError {
                    #expect(error.code == "import_audit_broken", "\(error.message)")
                }
                // A row repeated (the count made to match): refused, naming the line and why.
                var repeated = exported
                let tokenLine = try #require(repeated.firstIndex { $0.contains("\"table\":\"tokens\"") })
                repeated.insert(repeated[tokenLine], at: tokenLine + 1)
                repeated[repeated.count - 1] = repeated[repeated.count - 1].replacingOccurrences(of: "\"rows\":\(exported.count - 2)", with: "\"rows\":\(exported.count - 1)")
                do {
                    _ = try await StoreTransfer.import(store, lines: repeated)
                    Issue.record("a repeated row was imported")
                } catch let error as GatehouseError {
                    #expect(error.code == "import_row_invalid" && error.message.hasPrefix("line \(tokenLine + 2): the row repeats a key"), "\(error.message)")
                }
                // State rows edited apart from the (intact) audit log: a revoked grant brought back, a grant's expiry moved,
                // a token given to another principal. Each is refused, naming what the log says.
                func edited(_ table: String, _ marker: String, _ pattern: String, _ replacement: String, in source: [String]? = nil) throws -> [String] {
                    var lines = source ?? exported
                    let index = try #require(lines.firstIndex { $0.contains("\"table\":\"\(table)\"") && $0.contains(marker) }, "\(table) \(marker)")
                    let range = try #require(lines[index].range(of: pattern, options: .regularExpression), "\(pattern)")
                    lines[index].replaceSubrange(range, with: replacement)
                    return lines
                }
                for (lines, says) in [(try edited("grants", "\"end_reason\":\"revoked\"", "\"ended_at\":[0-9]+", "\"ended_at\":null"), "(grant.revoked) ended it"),
                                      (try edited("grants", "\"ended_at\":null", "\"expires_at\":[0-9]+", "\"expires_at\":4102444800000"), "with expiry 2100-01-01"),
                                      (try edited("tokens", "\"principal\":\"deploy-bot\"", "\"principal\":\"deploy-bot\"", "\"principal\":\"carol\""),
                                       "made it for deploy-bot"),
                                      // The bootstrap admin's flag moved from its token to deploy-bot's.
                                      (try edited("tokens", "\"principal\":\"deploy-bot\"", "\"is_bootstrap_admin\":0", "\"is_bootstrap_admin\":1",
                                                  in: try edited("tokens", "\"is_bootstrap_admin\":1", "\"is_bootstrap_admin\":1", "\"is_bootstrap_admin\":0")),
                                       "the bootstrap admin's")] {
                    do {
                        _ = try await StoreTransfer.import(store, lines: lines)
                        Issue.record("an edited state row was imported (\(says))")
                    } catch let error as GatehouseError {
                        #expect(error.code == "import_state_unaudited" && error.message.contains(says), "\(error.message)")
                    }
                }
                var newer = exported
                newer[0] = newer[0].replacingOccurrences(of: "\"schema_version\":", with: "\"schema_version\":99")
                await #expect(throws: GatehouseError.self) { _ = try await StoreTransfer.import(store, lines: newer) }
                #expect(try await Self.rowCounts(store).values.allSatisfy { $0 == 0 })

                let summary = try await StoreTransfer.import(store, lines: exported)
                #expect(summary.auditEvents == events)
                #expect(try await Self.rowCounts(store) == sourceCounts)
                let verification = try await store.read { try await $0.verifyAuditChain() }
                #expect(verification.ok && verification.eventsChecked == events)
                // Row for row the same: exported again from PostgreSQL, only the header's time differs.
                let again = try await Self.export(store)
                #expect(Array(again.dropFirst()) == Array(exported.dropFirst()))
                // A second import into the now-full database is refused.
                do {
                    _ = try await StoreTransfer.import(store, lines: exported)
                    Issue.record("imported twice")
                } catch let error as GatehouseError {
                    #expect(error.code == "import_target_not_empty")
                }
                // And the moved store keeps working: the chain grows from the imported head.
                try await store.write { session in
                    _ = try await session.appendAudit([AuditEntry(actor: "admin", action: "store.imported", subject: "test")], at: Date())
                }
                #expect(try await store.read { try await $0.verifyAuditChain() }.ok)
            } catch {
                await store.close()
                await target.drop()
                throw error
            }
            await store.close()
            await target.drop()
        }
    }
}
