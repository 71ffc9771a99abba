import Foundation
import GatehouseCore
@testable import GatehouseStore
import GatehouseTestSupport
import Logging
import SQLKit
import Synchronization
import Testing

/// The store's queries, each test run once on a SQLite file and once on a fresh database of the
/// throwaway PostgreSQL server: both stores must answer alike.
@Suite("Store queries on SQLite and PostgreSQL")
struct StoreQueryTests {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    /// A fresh store of `kind`, closed and removed after `body`.
    static func with(_ kind: TestDatabase.Kind, _ body: (GatehouseStore, TestDatabase) async throws -> Void) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gatehouse-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var logger = Logger(label: "gatehouse-store-test")
        logger.logLevel = .warning
        let database = try await TestDatabase.fresh(kind, folder: folder)
        let store = try await database.open(logger: logger)
        do {
            try await body(store, database)
        } catch {
            await store.close()
            await database.drop()
            try? FileManager.default.removeItem(at: folder)
            throw error
        }
        await store.close()
        await database.drop()
        try? FileManager.default.removeItem(at: folder)
    }

    static func request(_ id: String, state: RequestState = .pending, requester: String = "alice") -> AccessRequest {
        AccessRequest(id: id, requester: requester, resource: "prod-db", role: "write", duration: TimeSpan(seconds: 1800),
                      reason: "INC-1 fix it", ticket: "INC-1", state: state, approvalsRequired: 1, createdAt: t0,
                      pendingExpiresAt: t0.addingTimeInterval(86_400))
    }

    static func grant(_ id: String, expiresIn seconds: TimeInterval = 3600) -> Grant {
        Grant(id: id, requestId: "req_" + id, principal: "alice", resource: "prod-db", role: "write", allows: .write,
              startsAt: t0, expiresAt: t0.addingTimeInterval(seconds))
    }

    /// Keeps every log message, with its metadata, at every level.
    final class CapturedLog: Sendable {
        let lines = Mutex<[String]>([])
        var text: String { lines.withLock { $0.joined(separator: "\n") } }

        struct Handler: LogHandler {
            let log: CapturedLog
            var metadata: Logger.Metadata = [:]
            var logLevel: Logger.Level = .trace
            subscript(metadataKey key: String) -> Logger.Metadata.Value? {
                get { metadata[key] }
                set { metadata[key] = newValue }
            }
            func log(event: LogEvent) {
                let all = metadata.merging(event.metadata ?? [:]) { $1 }
                log.lines.withLock { $0.append("\(event.level) \(event.message) \(all)") }
            }
        }
    }

    @Test("at the most verbose log level, no statement's bound values are logged: a sign-in's verifier and nonce stay out of the log",
          arguments: TestDatabase.Kind.allCases)
    func boundValuesNeverLogged(kind: TestDatabase.Kind) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gatehouse-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let captured = CapturedLog()
        var logger = Logger(label: "gatehouse-store-test") { _ in CapturedLog.Handler(log: captured) }
        logger.logLevel = .trace
        let database = try await TestDatabase.fresh(kind, folder: folder)
        let store = try await database.open(logger: logger)
        let verifier = "v_" + String(repeating: "7q", count: 24), nonce = "n_" + String(repeating: "k3", count: 16)
        let pending = PendingSignIn(stateHash: "h_state", nonce: nonce, verifier: verifier, purpose: .web, redirectURI: "http://127.0.0.1:1/cb",
                                    clientHash: nil, createdAt: Self.t0, expiresAt: Self.t0.addingTimeInterval(600))
        do {
            try await store.write { try await $0.insertPendingSignIn(pending) }
            #expect(try await store.write { try await $0.takePendingSignIn(stateHash: "h_state") }?.verifier == verifier)
        } catch {
            await store.close()
            await database.drop()
            throw error
        }
        await store.close()
        await database.drop()
        let text = captured.text
        #expect(text.contains("applied schema migration"), "the store's own messages are still logged")
        #expect(!text.contains(verifier) && !text.contains(nonce))
    }

    @Test("a request reads back as written, and a state change happens once (compare and set)", arguments: TestDatabase.Kind.allCases)
    func requestCompareAndSet(kind: TestDatabase.Kind) async throws {
        try await Self.with(kind) { store, _ in
            let written = Self.request("req_1")
            try await store.write { try await $0.insertRequest(written) }
            #expect(try await store.read { try await $0.request(id: "req_1") } == written)
            var approved = written
            approved.state = .approved
            approved.decidedBy = "bob"
            approved.decidedAt = Self.t0.addingTimeInterval(60)
            var refused = written
            refused.state = .denied
            let (approvedNow, deniedNow) = (approved, refused)
            #expect(try await store.write { try await $0.updateRequest(approvedNow, from: .pending) })
            // The second change still expects `pending`: it finds the request approved and changes nothing.
            #expect(try await store.write { try await $0.updateRequest(deniedNow, from: .pending) } == false)
            #expect(try await store.read { try await $0.request(id: "req_1") }?.state == .approved)
        }
    }

    @Test("a grant ends once; open and expired grants are found by time", arguments: TestDatabase.Kind.allCases)
    func grants(kind: TestDatabase.Kind) async throws {
        try await Self.with(kind) { store, _ in
            try await store.write { session in
                try await session.insertRequest(Self.request("req_grt_long", state: .approved))
                try await session.insertRequest(Self.request("req_grt_short", state: .approved))
                try await session.insertGrant(Self.grant("grt_long"))
                try await session.insertGrant(Self.grant("grt_short", expiresIn: 60))
            }
            let open = try await store.read { try await $0.openGrants(principal: "alice", resource: "prod-db") }
            #expect(Set(open.map(\.id)) == ["grt_long", "grt_short"])
            let expired = try await store.read { try await $0.expiredOpenGrants(now: Self.t0.addingTimeInterval(120), limit: 10) }
            #expect(expired.map(\.id) == ["grt_short"])
            let released = try GrantLifecycle.release(Self.grant("grt_long"), by: "alice", now: Self.t0.addingTimeInterval(10))
            #expect(try await store.write { try await $0.endGrant(released) })
            #expect(try await store.write { try await $0.endGrant(released) } == false)
            #expect(try await store.read { try await $0.grant(id: "grt_long") }?.endReason == .released)
        }
    }

    @Test("grants in force list newest first, page by page, without ended or expired ones; SQLite walks them in order, never sorting them all",
          arguments: TestDatabase.Kind.allCases)
    func grantsInForce(kind: TestDatabase.Kind) async throws {
        try await Self.with(kind) { store, _ in
            let now = Self.t0.addingTimeInterval(3_600)
            // Ten grants a minute apart in start; every third has ended, the oldest two are past their expiry.
            try await store.write { session in
                for n in 0..<10 {
                    let start = Self.t0.addingTimeInterval(Double(n) * 60)
                    var grant = Grant(id: "grt_\(n)", requestId: "req_grt_\(n)", principal: "p\(n % 3)", resource: "prod-db", role: "write",
                                      allows: .write, startsAt: start, expiresAt: n < 2 ? now.addingTimeInterval(-1) : now.addingTimeInterval(3_600))
                    try await session.insertRequest(Self.request("req_grt_\(n)", state: .approved))
                    try await session.insertGrant(grant)
                    if n % 3 == 0 {
                        grant = try GrantLifecycle.release(grant, by: grant.principal, now: start.addingTimeInterval(1))
                        _ = try await session.endGrant(grant)
                    }
                }
            }
            var listed: [String] = []
            var cursor: PageCursor?
            repeat {
                let filter = StoreSession.GrantFilter(activeAt: now, before: cursor, limit: 2)
                let page = try await store.read { try await $0.grants(filter) }
                #expect(page.count <= 2)
                listed += page.map(\.id)
                cursor = page.count == 2 ? page.last.map { PageCursor(at: $0.startsAt, id: $0.id) } : nil
            } while cursor != nil
            #expect(listed == ["grt_8", "grt_7", "grt_5", "grt_4", "grt_2"])
            let mine = try await store.read { try await $0.grants(.init(principal: "p2", activeAt: now)) }
            #expect(mine.map(\.id) == ["grt_8", "grt_5", "grt_2"])
            guard kind == .sqlite else { return }
            for filter in [StoreSession.GrantFilter(activeAt: now), .init(activeAt: now, before: PageCursor(at: now, id: "grt_5"))] {
                let query = StoreSession.grantsQuery(filter)
                let plan = try await store.read { session in
                    try await session.db.raw("EXPLAIN QUERY PLAN " + query).all().map { try $0.decode(column: "detail", as: String.self) }
                }
                #expect(plan.contains { $0.contains("grants_open_by_start") }, "plan: \(plan)")
                #expect(!plan.contains { $0.contains("TEMP B-TREE") }, "plan: \(plan)")
            }
        }
    }

    @Test("an optional column: NULL reads as nil, a value as itself, a column the query lacks is an error (never a NULL)",
          arguments: TestDatabase.Kind.allCases)
    func optionalColumns(kind: TestDatabase.Kind) async throws {
        try await Self.with(kind) { store, _ in
            try await store.read { session in
                let row = try #require(try await session.db.raw("SELECT CAST(7 AS BIGINT) AS present, CAST(NULL AS BIGINT) AS empty").first())
                #expect(try row.decodeOptional(column: "present", as: Int64.self) == 7)
                #expect(try row.decodeOptional(column: "empty", as: Int64.self) == nil)
                #expect(throws: GatehouseError.self) { try row.decodeOptional(column: "revoked_at", as: Int64.self) }
            }
        }
    }

    @Test("rate-limit state: a key never seen has no TAT; setting it twice keeps the last; several keys read and written in one statement each", arguments: TestDatabase.Kind.allCases)
    func rateLimitState(kind: TestDatabase.Kind) async throws {
        try await Self.with(kind) { store, _ in
            #expect(try await store.read { try await $0.rateLimitTAT(key: "p:alice") } == nil)
            try await store.write { try await $0.setRateLimitTAT(key: "p:alice", tat: 1_000) }
            try await store.write { try await $0.setRateLimitTAT(key: "p:alice", tat: 2_000) }
            #expect(try await store.read { try await $0.rateLimitTAT(key: "p:alice") } == 2_000)
            // Several keys in one statement each way: the ones never seen are absent, a key asked twice answers once.
            try await store.write { try await $0.setRateLimitTATs(["p:alice": 3_000, "r:alice/prod-db": 4_000, "ip:127.0.0.1": 5_000]) }
            try await store.write { try await $0.setRateLimitTATs([:]) }
            let tats = try await store.read { try await $0.rateLimitTATs(keys: ["r:alice/prod-db", "p:alice", "p:nobody", "p:alice", "ip:127.0.0.1"]) }
            #expect(tats == ["p:alice": 3_000, "r:alice/prod-db": 4_000, "ip:127.0.0.1": 5_000])
            #expect(try await store.read { try await $0.rateLimitTATs(keys: []) }.isEmpty)
        }
    }

    @Test("the audit chain links across transactions, and an edited row breaks it", arguments: TestDatabase.Kind.allCases)
    func auditChain(kind: TestDatabase.Kind) async throws {
        try await Self.with(kind) { store, database in
            #expect(try await store.read { try await $0.auditHead(withHashAt: 1) } == nil, "an empty log has no head")
            for i in 0..<3 {
                _ = try await store.write { session in
                    try await session.appendAudit([AuditEntry(actor: "alice", action: .requestCreated, subject: "req_\(i)"),
                                                   AuditEntry(actor: "system", action: .grantStarted, subject: "grt_\(i)")],
                                                  at: Self.t0.addingTimeInterval(Double(i)))
                }
            }
            let verified = try await store.read { try await $0.verifyAuditChain() }
            #expect(verified.ok)
            #expect(verified.eventsChecked == 6)
            // The head and one event's hash in one statement (what the memory of recent requests is anchored by).
            let events = try await store.read { try await $0.auditEvents(.init(limit: 10)) }
            for seq: Int64 in [2, 6, 7, 0] {
                let found = try #require(try await store.read { try await $0.auditHead(withHashAt: seq) })
                #expect(found.head.seq == 6 && found.head.hash == events.last?.hash)
                #expect(found.hashAt == events.first { $0.seq == seq }?.hash, "seq \(seq)")
            }
            try await database.tamper("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
            let broken = try await store.read { try await $0.verifyAuditChain() }
            #expect(!broken.ok)
            #expect(broken.brokenAt == 3)
        }
    }

    @Test("the newest events cut off with the head moved to match verify alone; an anchor kept elsewhere finds the cut and a rewrite", arguments: TestDatabase.Kind.allCases)
    func auditAnchors(kind: TestDatabase.Kind) async throws {
        try await Self.with(kind) { store, database in
            for i in 0..<3 {
                _ = try await store.write { session in
                    try await session.appendAudit([AuditEntry(actor: "alice", action: .requestCreated, subject: "req_\(i)")], at: Self.t0.addingTimeInterval(Double(i)))
                }
            }
            let whole = try await store.read { try await $0.verifyAuditChain() }
            let head = try #require(whole.head)
            #expect(whole.ok && head.seq == 3 && head.hash.count == 64)
            let webhookID = try #require(AuditChain.Anchor("msg_3_" + head.hash.prefix(16)))
            #expect(try await store.read { try await $0.verifyAuditChain(anchors: [head, webhookID]) }.ok)
            // Two statements: the newest event gone, the head set to the one before. Alone, the chain verifies.
            try await database.tamper("DELETE FROM audit_events WHERE seq = 3")
            try await database.tamper("UPDATE audit_head SET seq = 2, hash = (SELECT hash FROM audit_events WHERE seq = 2)")
            #expect(try await store.read { try await $0.verifyAuditChain() }.ok)
            for anchor in [head, webhookID] {
                let cut = try await store.read { try await $0.verifyAuditChain(anchors: [anchor]) }
                #expect(!cut.ok && cut.brokenAt == 3 && cut.problem?.contains("event 3, recorded elsewhere, is no longer in the log") == true, "\(cut)")
            }
            // An anchor whose event is there with another hash: rewritten from there on.
            let rewritten = try await store.read { try await $0.verifyAuditChain(anchors: [AuditChain.Anchor(seq: 2, hash: String(repeating: "0", count: 16))]) }
            #expect(!rewritten.ok && rewritten.brokenAt == 2 && rewritten.problem?.contains("no longer has the hash recorded elsewhere") == true, "\(rewritten)")
            for bad in ["3", "3:abc", "0:" + head.hash, "msg_3", "x:" + head.hash, "3:" + String(repeating: "g", count: 16)] {
                #expect(AuditChain.Anchor(bad) == nil, "\(bad)")
            }
            // Two anchors giving one event different hashes cannot both hold: the verification fails, neither is dropped.
            let second = try #require(try await store.read { try await $0.auditEvents(.init(limit: 10)) }.first { $0.seq == 2 }?.hash)
            let conflicting = try await store.read { try await $0.verifyAuditChain(anchors: try AuditChain.Anchor.parse(["2:" + second, "2:" + String(repeating: "0", count: 16)])) }
            #expect(!conflicting.ok && conflicting.brokenAt == 2, "\(conflicting)")
            let agreeing = try AuditChain.Anchor.parse(["2:" + second, "msg_2_" + second.prefix(16)])
            #expect(try await store.read { try await $0.verifyAuditChain(anchors: agreeing) }.ok, "a hash and its beginning agree")
        }
    }

    @Test("an audit event with a NUL or unusual Unicode in its text reads back as hashed: the chain verifies on both stores", arguments: TestDatabase.Kind.allCases)
    func auditTextReadsBack(kind: TestDatabase.Kind) async throws {
        try await Self.with(kind) { store, _ in
            // The text a contract fuzzer once got into an audit event through POST /v1/check.
            let odd = "\u{A5}zU\u{14}\u{318AF}\u{CB}%\u{E9}\u{70421}.$=\u{E481E}\u{DA}X\u{A3}\u{0}\u{99}D\u{83}"
            _ = try await store.write { session in
                try await session.appendAudit([AuditEntry(actor: "alice", action: .actionChecked, subject: "x\u{0}y", resource: odd,
                                                          details: ["text": "a\u{0}b", "k\u{0}": "e\u{301}"])], at: Self.t0)
            }
            let verified = try await store.read { try await $0.verifyAuditChain() }
            #expect(verified.ok, "\(verified)")
        }
    }

    @Test("a row with a state this version does not know is an error, never a guessed default", arguments: TestDatabase.Kind.allCases)
    func unknownState(kind: TestDatabase.Kind) async throws {
        try await Self.with(kind) { store, database in
            try await store.write { try await $0.insertRequest(Self.request("req_1")) }
            try await database.tamper("UPDATE requests SET state = 'frozen' WHERE id = 'req_1'")
            do {
                _ = try await store.read { try await $0.request(id: "req_1") }
                Issue.record("a request in state 'frozen' was read")
            } catch let error as GatehouseError {
                #expect(error.code == "store_broken_row")
                #expect(error.message.contains("'frozen'"))
                #expect(error.message.contains("state"))
            }
        }
    }

    @Test("a webhook message is claimed by one round at a time until its lease runs out", arguments: TestDatabase.Kind.allCases)
    func deliveryClaims(kind: TestDatabase.Kind) async throws {
        try await Self.with(kind) { store, _ in
            let message = WebhookDelivery(id: "msg_1_abc", endpoint: "ops", event: "request.created", body: "{}", createdAt: Self.t0,
                                          nextAttemptAt: Self.t0)
            #expect(try await store.write { try await $0.enqueueDelivery(message) })
            // Queued twice (a restart re-reads the log): still one message.
            #expect(try await store.write { try await $0.enqueueDelivery(message) } == false)
            let first = try await store.write { try await $0.claimDueDeliveries(now: Self.t0, until: Self.t0.addingTimeInterval(30), limit: 10) }
            #expect(first.map(\.id) == ["msg_1_abc"])
            let second = try await store.write { try await $0.claimDueDeliveries(now: Self.t0.addingTimeInterval(5), until: Self.t0.addingTimeInterval(35), limit: 10) }
            #expect(second.isEmpty)
            let afterLease = try await store.write { try await $0.claimDueDeliveries(now: Self.t0.addingTimeInterval(31), until: Self.t0.addingTimeInterval(61), limit: 10) }
            #expect(afterLease.map(\.id) == ["msg_1_abc"])

            // Queued and claimed at once (the outbox's own round): no other round takes it until the lease runs out.
            var fresh = message
            fresh.id = "msg_2_def"
            let queued = fresh
            #expect(try await store.write { try await $0.enqueueDelivery(queued, claimedUntil: Self.t0.addingTimeInterval(30)) })
            #expect(try await store.write { try await $0.enqueueDelivery(queued, claimedUntil: Self.t0.addingTimeInterval(30)) } == false,
                    "a message already queued is not queued (or claimed) again")
            #expect(try await store.read { try await $0.deliveriesDue(now: Self.t0.addingTimeInterval(10)) } == false)
            #expect(try await store.write { try await $0.claimDueDeliveries(now: Self.t0.addingTimeInterval(10), until: Self.t0.addingTimeInterval(40), limit: 10) }.isEmpty)
            let released = try await store.write { try await $0.claimDueDeliveries(now: Self.t0.addingTimeInterval(62), until: Self.t0.addingTimeInterval(90), limit: 10) }
            #expect(Set(released.map(\.id)) == ["msg_1_abc", "msg_2_def"])
        }
    }

    @Test("a round's messages are queued, claimed and recorded a statement per hundred, each as if alone", arguments: TestDatabase.Kind.allCases)
    func deliveryBatches(kind: TestDatabase.Kind) async throws {
        try await Self.with(kind) { store, _ in
            @Sendable func message(_ n: Int, endpoint: String = "ops") -> WebhookDelivery {
                WebhookDelivery(id: "msg_\(n)", endpoint: endpoint, event: "request.created", body: "{\"n\":\(n)}", createdAt: Self.t0,
                                nextAttemptAt: Self.t0)
            }
            #expect(try await store.write { try await $0.enqueueDelivery(message(7)) })
            // 250 messages (three statements), one of them already queued and one listed twice; the first 120 claimed.
            let batch = (0..<250).map { n in (delivery: message(n), claimedUntil: n < 120 ? Self.t0.addingTimeInterval(30) : nil) }
                + [(delivery: message(3), claimedUntil: nil), (delivery: message(3, endpoint: "audit"), claimedUntil: nil)]
            let queued = try await store.write { try await $0.enqueueDeliveries(batch) }
            #expect(queued.map(\.key) == (0..<250).filter { $0 != 7 }.map { message($0).key } + [message(3, endpoint: "audit").key])
            let due = try await store.write { try await $0.claimDueDeliveries(now: Self.t0, until: Self.t0.addingTimeInterval(60), limit: 500) }
            #expect(Set(due.map(\.key)) == Set(([7] + Array(120..<250)).map { message($0).key } + [message(3, endpoint: "audit").key]),
                    "the claimed ones are not due; the rest are, once each")
            #expect(try await store.write { try await $0.claimDueDeliveries(now: Self.t0, until: Self.t0.addingTimeInterval(60), limit: 500) }.isEmpty)

            // Recorded together: delivered, retried (every optional column empty) and given up; one recorded delivered before stays so.
            var delivered = due.first { $0.id == "msg_7" }!
            delivered.attempts = 1
            delivered.deliveredAt = Self.t0
            delivered.lastStatus = "HTTP 200"
            let first = delivered
            try await store.write { try await $0.recordAttempts([first]) }
            let outcomes = due.enumerated().map { index, d -> WebhookDelivery in
                var updated = d
                updated.attempts = d.attempts + 1
                switch index % 3 {
                case 0: updated.deliveredAt = Self.t0.addingTimeInterval(1); updated.lastStatus = "HTTP 204"
                case 1: updated.nextAttemptAt = Self.t0.addingTimeInterval(600)
                default: updated.failedAt = Self.t0.addingTimeInterval(2); updated.lastStatus = "HTTP 500"
                }
                return updated
            }
            // Listed twice in one round, as delivered and as to be retried: the delivery counts, whatever the order.
            var retried = outcomes.first { $0.deliveredAt != nil && $0.id != "msg_7" }!
            retried.deliveredAt = nil
            retried.nextAttemptAt = Self.t0.addingTimeInterval(900)
            let twice = retried
            try await store.write { try await $0.recordAttempts([twice] + outcomes + [twice]) }
            let stored = Dictionary(uniqueKeysWithValues: try await store.read { try await $0.deliveries(limit: 1000) }.map { ($0.key, $0) })
            #expect(stored.count == 251)
            for outcome in outcomes where outcome.id != "msg_7" {
                #expect(stored[outcome.key] == outcome, "\(outcome.key)")
            }
            #expect(stored[first.key] == first, "a message recorded delivered is not recorded again")
            #expect(try await store.read { try await $0.deliveriesDue(now: Self.t0.addingTimeInterval(29)) } == false,
                    "the recorded ones are released (retried later), the ones claimed when queued still held")
            let afterClaims = try await store.write { try await $0.claimDueDeliveries(now: Self.t0.addingTimeInterval(31), until: Self.t0.addingTimeInterval(90), limit: 500) }
            #expect(Set(afterClaims.map(\.key)) == Set((0..<120).filter { $0 != 7 }.map { message($0).key }))
            let retries = try await store.write { try await $0.claimDueDeliveries(now: Self.t0.addingTimeInterval(600), until: Self.t0.addingTimeInterval(630), limit: 500) }
            #expect(Set(retries.map(\.key)) == Set(outcomes.filter { $0.nextAttemptAt > Self.t0 }.map(\.key) + afterClaims.map(\.key)),
                    "the retried ones are due at their time (with those whose claim ran out), the delivered and given-up ones never")
        }
    }

    @Test("queries run on every outbox round, sweep, filing or sign-in reach their rows through an index, not by reading a table that only grows (SQLite plans)")
    func indexedPlans() async throws {
        let delivery = WebhookDelivery(id: "msg_1", endpoint: "ops", event: "request.created", body: "{}", createdAt: Self.t0, nextAttemptAt: Self.t0)
        try await Self.with(.sqlite) { store, _ in
            // (query, the index it must use, whether it may sort: only what one request's notifications hold)
            let queries: [(SQLQueryString, String, Bool)] = [
                (StoreSession.notifiedRecipientsQuery(requestId: "req_1", kinds: ["request"]), "notifications_by_request", true),
                (StoreSession.digestsDueQuery(createdBefore: Self.t0, limit: 100), "notifications_digests_open", false),
                (StoreSession.oldRefusalQuery(before: Self.t0), "refusals_by_time", false),
                (StoreSession.grantsQuery(.init(principal: "alice", activeAt: Self.t0)), "grants_open_by_principal_start", false),
                (StoreSession.pruneDeliveriesQueries(before: Self.t0)[0], "webhook_deliveries_due", false),
                (StoreSession.pruneDeliveriesQueries(before: Self.t0)[1], "webhook_deliveries_due", false),
                (StoreSession.deleteWebSessionsQuery(tokenId: "tok_1"), "web_sessions_by_token", false),
                (StoreSession.pruneWebSessionsQuery(now: Self.t0), "web_sessions_by_expiry", false),
                (StoreSession.retentionDueQueries(before: Self.t0)[0], "notifications_by_time", false),
                (StoreSession.retentionDueQueries(before: Self.t0)[1], "slack_messages_by_time", false),
                (StoreSession.retentionDueQueries(before: Self.t0)[2], "tokens_by_expiry", false),
                (StoreSession.pruneRetainedQueries(before: Self.t0, limit: 1_000).notifications, "notifications_by_time", false),
                (StoreSession.pruneRetainedQueries(before: Self.t0, limit: 1_000).slackMessages, "slack_messages_by_time", false),
                (StoreSession.pruneRetainedQueries(before: Self.t0, limit: 1_000).tokens, "tokens_by_expiry", false),
                (StoreSession.auditEventsQuery(.init(resource: "prod-db", afterSeq: 10)), "audit_by_resource", false),
                (StoreSession.auditEventsQuery(.init(resource: "prod-db", newestFirst: true)), "audit_by_resource", false),
                (StoreSession.auditEventsQuery(.init(action: "grant.revoked", newestFirst: true)), "audit_by_action", false),
                (StoreSession.auditEventsQuery(.init(afterSeq: 10, action: "grant.revoked")), "audit_by_action", false),
                // A round's claims and outcomes: each row found by its key (the list of keys itself is read through).
                (StoreSession.claimQuery([delivery, delivery], until: Self.t0), "sqlite_autoindex_webhook_deliveries_1", false),
                (StoreSession.recordAttemptsQuery([delivery, delivery]), "sqlite_autoindex_webhook_deliveries_1", false),
            ]
            for (query, index, sorts) in queries {
                let plan = try await store.read { session in
                    try await session.db.raw("EXPLAIN QUERY PLAN " + query).all().map { try $0.decode(column: "detail", as: String.self) }
                }
                #expect(plan.contains { $0.contains(index) }, "expected \(index); plan: \(plan)")
                let scans = plan.filter { $0.hasPrefix("SCAN") && $0 != "SCAN v" && !$0.contains("VALUES CLAUSE") && !$0.contains("CONSTANT ROW") }
                #expect(scans.isEmpty && !plan.contains { !sorts && $0.contains("TEMP B-TREE") }, "plan: \(plan)")
            }
        }
    }

    @Test("retention: rows of requests decided before the cut, rows of no request made before it, and tokens expired before it go; oldest first, a batch at a time", arguments: TestDatabase.Kind.allCases)
    func retention(kind: TestDatabase.Kind) async throws {
        try await Self.with(kind) { store, _ in
            let old = Self.t0, cut = Self.t0.addingTimeInterval(86_400), recent = Self.t0.addingTimeInterval(2 * 86_400)
            try await store.write { session in
                // (id, state, decided at): req_late was open for long and decided after the cut.
                for (id, state, decided) in [("req_done", RequestState.approved, Optional(old)), ("req_open", .pending, nil), ("req_held", .quarantined, nil),
                                             ("req_new", .denied, Optional(recent)), ("req_late", .expired, Optional(recent))] {
                    var request = Self.request(id, state: state)
                    request.decidedAt = decided
                    try await session.insertRequest(request)
                }
                func note(_ id: String, _ kind: OutboxNotification.Kind, _ requests: [String], at: Date, sent: Date? = nil) async throws {
                    try await session.insertNotification(OutboxNotification(id: id, recipient: "bob", kind: kind, requestIds: requests, summary: "s",
                                                                            createdAt: at, sentAt: sent))
                }
                try await note("n_done", .request, ["req_done"], at: old)            // goes
                try await note("n_open", .request, ["req_open"], at: old)            // kept: its request is pending
                try await note("n_held", .report, ["req_held"], at: old)             // kept: quarantined is still open
                try await note("n_new", .request, ["req_new"], at: recent)           // kept: newer than the cut
                try await note("n_late", .request, ["req_late"], at: old)            // kept: decided after the cut
                try await note("n_digest_sent", .digest, ["req_done", "req_open"], at: old, sent: old)  // goes: sent
                try await note("n_digest_open", .digest, ["req_done"], at: old)      // kept: not sent yet
                try await note("n_gone", .breakGlass, [], at: old)                   // goes: no request
                for (request, at) in [("req_done", old), ("req_open", old), ("req_new", recent), ("req_late", old)] {
                    for channel in ["C1", "C2", "C3"] {
                        try await session.insertSlackMessage(SlackMessageRef(requestId: request, channel: channel, ts: "1.\(channel)"), at: at)
                    }
                }
                for (id, expires) in [("tok_expired", Optional(old)), ("tok_live", Optional(recent)), ("tok_forever", nil), ("tok_approved_open", Optional(old))] {
                    try await session.insertToken(TokenRecord(id: id, principal: "erin", description: nil, isBootstrapAdmin: false, createdAt: old,
                                                              createdBy: "erin", revokedAt: nil, kind: expires == nil ? .api : .session, expiresAt: expires),
                                                  hash: "hash-" + id)
                }
                // An approval of the pending request made with a token that has since expired: kept, so its standing can be judged.
                try await session.insertApproval(Approval(requestId: "req_open", approver: "erin", decision: .approve, comment: nil, at: old,
                                                          tokenId: "tok_approved_open"))
            }
            #expect(try await store.read { try await $0.retentionDue(before: cut) })
            #expect(try await store.read { try await !$0.retentionDue(before: old) }, "nothing is older than the oldest row")
            // A batch of two rows per table: the oldest go first, and a batch bounds every table.
            let first = try await store.write { try await $0.pruneRetained(before: cut, limit: 2) }
            #expect(first == .init(notifications: 2, slackMessages: 2, tokens: 1), "\(first)")
            let rest = try await store.write { try await $0.pruneRetained(before: cut, limit: 1_000) }
            #expect(rest == .init(notifications: 1, slackMessages: 1, tokens: 0), "\(rest)")
            #expect(try await store.write { try await $0.pruneRetained(before: cut, limit: 1_000) }.total == 0)
            #expect(try await store.read { try await !$0.retentionDue(before: cut) })
            let notes = try await store.read { try await $0.notifications(recipient: nil, limit: 100) }.map(\.id).sorted()
            #expect(notes == ["n_digest_open", "n_held", "n_late", "n_new", "n_open"])
            #expect(try await store.read { try await $0.slackMessages(requestId: "req_done") }.isEmpty)
            for request in ["req_open", "req_new", "req_late"] {
                #expect(try await store.read { try await $0.slackMessages(requestId: request) }.count == 3, "\(request)")
            }
            #expect(try await store.read { try await $0.tokens(includeRevoked: true) }.map(\.id).sorted() == ["tok_approved_open", "tok_forever", "tok_live"])
        }
    }

    @Test("migrations may run past the statement time limit and the store's watchdog; other writes may not", arguments: TestDatabase.Kind.allCases)
    func longMigrations(kind: TestDatabase.Kind) async throws {
        try await Self.with(kind) { store, database in
            guard case let .postgres(url) = database else {
                #expect(try await store.migrationWrite { try await $0.db.raw("SELECT 1 AS one").first()?.decode(column: "one", as: Int.self) } == 1)
                return
            }
            // connect_timeout=1: the watchdog answers a write that has not ended 5 s (1 + 4 x 1) after its start.
            var logger = Logger(label: "gatehouse-store-test")
            logger.logLevel = .critical
            let quick = try await GatehouseStore.open(url: url + (url.contains("?") ? "&" : "?") + "connect_timeout=1", logger: logger)
            @Sendable func timeout(_ session: StoreSession) async throws -> String? {
                try await session.db.raw("SHOW statement_timeout").first()?.decode(column: "statement_timeout", as: String.self)
            }
            do {
                let migrated = try await quick.migrationWrite { session in
                    try await session.db.raw("SELECT pg_sleep(6)").run()
                    return try await timeout(session)
                }
                #expect(migrated == "0", "no statement limit inside a migration")
                // 10 s: the watchdog's 5 s may come late on a loaded machine, yet before the statement ends.
                let cut = await #expect(throws: GatehouseError.self) {
                    try await quick.write { try await $0.db.raw("SELECT pg_sleep(10)").run() }
                }
                #expect(cut?.code == ErrorCode.storeOutcomeUnknown, "an ordinary write that long is answered by the watchdog")
                // The statement the watchdog answered is still running and holds the writer: end it.
                try await database.tamper("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(10)' AND pid <> pg_backend_pid()")
                #expect(try await quick.write { try await timeout($0) } == "15s", "the limit is back for every other transaction")
            } catch {
                await quick.close()
                throw error
            }
            await quick.close()
        }
    }

    @Test("sign-in: sessions keep kind, expiry, groups, issuer and subject; an identity binds one name; a sign-in under way is taken once; approvals keep their token", arguments: TestDatabase.Kind.allCases)
    func signIn(kind: TestDatabase.Kind) async throws {
        try await Self.with(kind) { store, _ in
            let session = TokenRecord(id: "ses_1", principal: "erin", description: "web sign-in", isBootstrapAdmin: false, createdAt: Self.t0,
                                      createdBy: "erin", revokedAt: nil, kind: .session, expiresAt: Self.t0.addingTimeInterval(3600),
                                      groups: ["engineers", "leads"], issuer: "https://login.example.com", subject: "248289761001")
            try await store.write { try await $0.insertToken(session, hash: "hash-1") }
            #expect(try await store.read { try await $0.token(id: "ses_1") } == session)
            #expect(try await store.read { try await $0.liveSessions(now: Self.t0) }.map(\.id) == ["ses_1"])
            #expect(try await store.read { try await $0.liveSessions(now: Self.t0.addingTimeInterval(3600)) }.isEmpty, "an ended session is not live")
            try await store.write { try await $0.revokeToken(id: "ses_1", by: "admin", at: Self.t0) }
            #expect(try await store.read { try await $0.token(id: "ses_1") }?.revokedBy == "admin")

            let binding = IdentityBinding(issuer: "https://login.example.com", subject: "248289761001", principal: "erin", email: "erin@example.com",
                                          groups: ["engineers"], firstSeen: Self.t0, lastSeen: Self.t0)
            try await store.write { try await $0.insertIdentity(binding) }
            var other = binding
            other.subject = "999"
            let taken = other
            await #expect(throws: (any Error).self) { try await store.write { try await $0.insertIdentity(taken) } }
            try await store.write { try await $0.touchIdentity(issuer: binding.issuer, subject: binding.subject, email: "e@example.com",
                                                               groups: ["leads"], at: Self.t0.addingTimeInterval(60)) }
            let read = try await store.read { try await $0.identities() }
            #expect(read.count == 1 && read[0].groups == ["leads"] && read[0].email == "e@example.com")
            #expect(try await store.read { try await $0.identity(principal: "erin") }?.subject == "248289761001")

            let pending = PendingSignIn(stateHash: "state-1", nonce: "n", verifier: "v", purpose: .cli, redirectURI: "http://127.0.0.1:5/callback",
                                        clientHash: "c", createdAt: Self.t0, expiresAt: Self.t0.addingTimeInterval(600))
            try await store.write { try await $0.insertPendingSignIn(pending) }
            #expect(try await store.read { try await $0.pendingSignInCount() } == 1)
            #expect(try await store.read { try await $0.pendingSignIn(stateHash: "state-1") } == pending)
            #expect(try await store.write { try await $0.takePendingSignIn(stateHash: "state-1") } == pending)
            #expect(try await store.write { try await $0.takePendingSignIn(stateHash: "state-1") } == nil, "a state is used once")

            try await store.write { try await $0.insertRequest(Self.request("req_9")) }
            let approval = Approval(requestId: "req_9", approver: "bob", decision: .approve, comment: nil, at: Self.t0, tokenId: "tok_7")
            try await store.write { try await $0.insertApproval(approval) }
            #expect(try await store.read { try await $0.approvals(requestId: "req_9") } == [approval])
        }
    }
}
