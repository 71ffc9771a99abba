import Foundation
@testable import GatehouseApp
import GatehouseCore
@testable import GatehouseStore
import Logging
import SQLKit
import Testing

/// The sweeper prunes what is kept only for a while (notifications, Slack message references, expired
/// tokens) a month on, never what an open request still needs, and an approval whose token the store no
/// longer has stops counting (fail closed).
@Suite("Retention")
struct RetentionTests {
    static let policy = """
        version: 1
        principals:
          alice: {groups: [engineers]}
          bob: {groups: [dba]}
          carol: {groups: [dba]}
          dave: {groups: [dba]}
        admins: [dba]
        resources:
          prod-db:
            kind: generic
            roles:
              write: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 2h, allows: write}
              admin: {requesters: [engineers], approvers: [dba], approvals: 2, max_duration: 2h, allows: dangerous}
        pending_ttl: 60d
        """

    static func with(_ body: (UseCases, ManualClock, GatehouseStore, (String) async throws -> Caller) async throws -> Void) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gatehouse-retention-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let policyPath = folder.appendingPathComponent("policy.yaml").path
        try policy.write(toFile: policyPath, atomically: true, encoding: .utf8)
        var logger = Logger(label: "gatehouse-retention")
        logger.logLevel = .error
        let store = try await GatehouseStore.openSQLite(path: folder.appendingPathComponent("gatehouse.db").path, logger: logger)
        do {
            let clock = ManualClock(Date(timeIntervalSince1970: 1_800_000_000))
            let app = UseCases(store: store, policies: PolicyHolder(try PolicyLoader.loadValid(file: policyPath), path: policyPath),
                               clock: clock, logger: logger, tarpit: Tarpit(capacity: 0))
            _ = try await app.tokens.bootstrapAdmin(token: "retention-admin-token-0123456789")
            let admin = try await app.tokens.authenticate(bearer: "retention-admin-token-0123456789")
            let caller = { (name: String) async throws -> Caller in
                let (_, secret) = try await app.tokens.create(caller: admin, principal: name, description: nil)
                return try await app.tokens.authenticate(bearer: secret)
            }
            try await body(app, clock, store, caller)
        } catch {
            await store.close()
            throw error
        }
        await store.close()
    }

    /// With the default (a month) and with the retention `serve` may be given instead (a week here).
    @Test("a retention after its decision a request's notifications go at the next sweep; an open request's stay", arguments: [nil, 7])
    func sweepPrunes(days: Int?) async throws {
        let retention = days.map { TimeInterval($0 * 86_400) } ?? Housekeeping.retention
        let sweep = { (app: UseCases) in days == nil ? try await app.housekeeping.sweep() : try await app.housekeeping.sweep(retention: retention) }
        try await Self.with { app, clock, store, caller in
            let alice = try await caller("alice"), bob = try await caller("bob")
            let decided = try await app.desk.create(caller: alice, input: NewRequestInput(resource: "prod-db", role: "write", duration: "1h",
                                                                                         reason: "INC-1 fix the stuck orders")).view.request
            let open = try await app.desk.create(caller: alice, input: NewRequestInput(resource: "prod-db", role: "admin", duration: "1h",
                                                                                      reason: "INC-2 rebuild the orders index")).view.request
            _ = try await app.desk.decide(caller: bob, id: decided.id, decision: .approve, comment: nil)
            func told(_ id: String) async throws -> [String] {
                try await store.read { try await $0.notifiedRecipients(requestId: id, kinds: ["request"]) }
            }
            #expect(try await told(decided.id).isEmpty == false, "approvers were told about the request")
            #expect(try await told(open.id).isEmpty == false)

            clock.set(clock.now().addingTimeInterval(retention - 3600))
            _ = try await sweep(app)
            #expect(try await told(decided.id).isEmpty == false, "kept until the retention has passed")

            clock.set(clock.now().addingTimeInterval(7200))
            _ = try await sweep(app)
            #expect(try await told(decided.id).isEmpty, "pruned once the retention has passed")
            #expect(try await told(open.id).isEmpty == false, "the pending request's approvers are still known")
            #expect(try await store.read { try await !$0.retentionDue(before: clock.now().addingTimeInterval(-retention)) })
        }
    }

    @Test("the sweeper looks for rows to prune about hourly, and again at once while a round pruned a full batch")
    func schedule() {
        let schedule = RetentionSchedule()
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(schedule.isDue(at: t0))
        schedule.ran(at: t0, full: false)
        #expect(!schedule.isDue(at: t0.addingTimeInterval(600)))
        #expect(schedule.isDue(at: t0.addingTimeInterval(RetentionSchedule.interval)))
        #expect(schedule.isDue(at: t0.addingTimeInterval(-60)), "a clock set back does not stop it")
        schedule.ran(at: t0, full: true)
        #expect(schedule.isDue(at: t0.addingTimeInterval(1)))
    }

    @Test("an approval made with a token the store no longer has does not count")
    func missingTokenFailsClosed() async throws {
        try await Self.with { app, _, store, caller in
            let alice = try await caller("alice"), bob = try await caller("bob"), carol = try await caller("carol"), dave = try await caller("dave")
            let request = try await app.desk.create(caller: alice, input: NewRequestInput(resource: "prod-db", role: "admin", duration: "1h",
                                                                                         reason: "INC-3 rebuild the orders index")).view.request
            #expect(try await app.desk.decide(caller: bob, id: request.id, decision: .approve, comment: nil).request.state == .pending)
            // Bob's token is gone (as pruning removes a token a month after it expired).
            try await store.write { try await $0.db.raw("DELETE FROM tokens WHERE id = \(bind: bob.tokenId)").run() }
            #expect(try await app.desk.decide(caller: carol, id: request.id, decision: .approve, comment: nil).request.state == .pending,
                    "bob's approval no longer counts: carol's is the first that does")
            #expect(try await app.desk.decide(caller: dave, id: request.id, decision: .approve, comment: nil).request.state == .approved)
        }
    }

    @Test("a proxy session ends when its token expires, and when the store no longer has it (saying it is gone, not revoked)")
    func missingTokenEndsProxySession() async throws {
        try await Self.with { app, clock, store, caller in
            let alice = try await caller("alice"), bob = try await caller("bob")
            let request = try await app.desk.create(caller: alice, input: NewRequestInput(resource: "prod-db", role: "write", duration: "1h",
                                                                                         reason: "INC-4 backfill the orders table")).view.request
            #expect(try await app.desk.decide(caller: bob, id: request.id, decision: .approve, comment: nil).request.state == .approved)
            let identity = ProxyAuthority.ProxyIdentity(caller: alice, resource: "prod-db", sessionID: "s1", client: "127.0.0.1")
            guard case .granted = try await app.proxy.access(identity) else { Issue.record("alice's grant did not reach the proxy"); return }
            // The token expires (as a sign-in session does) while the grant still runs.
            let expiry = clock.now().unixMilliseconds
            try await store.write { try await $0.db.raw("UPDATE tokens SET expires_at = \(bind: expiry) WHERE id = \(bind: alice.tokenId)").run() }
            guard case let .ended(expired) = try await app.proxy.access(identity) else { Issue.record("the session outlived its token"); return }
            #expect(expired.contains("expired"), "\(expired)")
            try await store.write { try await $0.db.raw("DELETE FROM tokens WHERE id = \(bind: alice.tokenId)").run() }
            guard case let .ended(why) = try await app.proxy.access(identity) else { Issue.record("the session went on without its token"); return }
            #expect(why.contains("no longer known") && !why.contains("revoked"), "\(why)")
        }
    }
}
