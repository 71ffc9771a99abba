import Foundation
@testable import GatehouseApp
import GatehouseCore
import GatehouseStore
import GatehouseTestSupport
import Logging
import Testing

/// The spam score reads a principal's own history from the memory of recent requests once that memory
/// follows the store: what it reads must be what the store answers, whichever instance filed, decided,
/// canceled, held or expired the requests in between.
@Suite("Own history from memory, two instances on one store")
struct OwnHistoryTests {
    static let policy = """
        version: 1
        principals:
          alice: {groups: [engineers]}
          erin:  {groups: [engineers]}
          bob:   {groups: [dba]}
          carol: {groups: [dba, security]}
        admins: [security]
        resources:
          prod-db:
            kind: postgres
            roles:
              read:  {requesters: [engineers], approvals: 0, max_duration: 8h, allows: read}
              write: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 1h, allows: write}
              admin: {requesters: [engineers], approvers: [dba], approvals: 2, max_duration: 1h, allows: dangerous}
        pending_ttl: 2m
        antispam:
          limits:
            per_principal: {rate: 100000/h, burst: 10000}
            per_resource: {rate: 100000/h, burst: 10000}
            per_source_ip: {rate: 100000/h, burst: 10000}
            max_pending_per_principal: 1000
          reviewers: [security]
          blocked_delay: off
          denial_cooldown: {base: 5s, max: 10s}
          throttle_cooldown: 5s
          # Scored, but never acted on: one principal filing every few seconds would be held, and an identical
          # request held is answered instead of filed. Requests are held here by reports.
          score: {thresholds: {throttle: 500, extra_approval: 500, quarantine: 500, block: 1000}}
        """

    @Test("random filings, decisions, cancels, releases and expiries on either instance: each filing's own history (and others' requests) equals a fresh read of the store, and most come from memory",
          arguments: TestDatabase.Kind.allCases)
    func followsTheStore(kind: TestDatabase.Kind) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gatehouse-own-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let policyPath = folder.appendingPathComponent("policy.yaml").path
        try Self.policy.write(toFile: policyPath, atomically: true, encoding: .utf8)
        var logger = Logger(label: "gatehouse-own-history")
        logger.logLevel = .error
        let database = try await TestDatabase.fresh(kind, folder: folder)
        // Two processes share a SQLite file only in shared mode; each PostgreSQL instance has its own pool.
        func open() async throws -> GatehouseStore {
            guard case .sqlite(let path) = database else { return try await database.open(logger: logger) }
            return try await GatehouseStore.openSQLite(path: path, writeWait: .seconds(25), shared: true, logger: logger)
        }
        let first = try await open()
        let second: GatehouseStore
        do { second = try await open() } catch {
            await first.close()
            throw error
        }
        let clock = ManualClock(Date(timeIntervalSince1970: 1_800_000_000))
        let instances = try [first, second].map {
            UseCases(store: $0, policies: PolicyHolder(try PolicyLoader.loadValid(file: policyPath), path: policyPath),
                     clock: clock, logger: logger, tarpit: Tarpit(capacity: 0))
        }
        do {
            try await Self.run(instances, clock: clock)
        } catch {
            await first.close()
            await second.close()
            await database.drop()
            throw error
        }
        await first.close()
        await second.close()
        await database.drop()
    }

    static func run(_ instances: [UseCases], clock: ManualClock) async throws {
        _ = try await instances[0].tokens.bootstrapAdmin(token: "own-history-admin-token-0123456789")
        let admin = try await instances[0].tokens.authenticate(bearer: "own-history-admin-token-0123456789")
        var callers: [String: Caller] = [:]
        for name in ["alice", "erin", "bob", "carol"] {
            let (_, secret) = try await instances[0].tokens.create(caller: admin, principal: name, description: nil)
            callers[name] = try await instances[0].tokens.authenticate(bearer: secret)
        }
        var generator = SplitMix64(state: 20_261_204)
        let reasons = ["INC-1 fix the stuck orders", "INC-2 rebuild the index", "INC-3 rotate the replica", "CHG-9 apply the migration"]
        var hits = 0, probes = 0, filed = 0, fullHits = 0, longest = 0, reports = 0, refusals: [String] = []
        for step in 0..<500 {
            let app = instances.randomElement(using: &generator)!
            clock.set(clock.now().addingTimeInterval(Double(Int.random(in: 1...8, using: &generator))))
            if step % 100 == 99 {
                // A pause longer than the memory's 30 s: it is filled again from the store; what waited expires.
                clock.set(clock.now().addingTimeInterval(300))
                _ = try await app.housekeeping.sweep()
            }
            let open = try await app.store.read { try await $0.requests(.init(states: [.pending, .quarantined], limit: 1000)) }
            switch Int.random(in: 0..<20, using: &generator) {
            case 0..<12:
                // Mostly alice, so that her history passes the 100 the score looks at.
                let requester = ["alice", "alice", "alice", "erin"].randomElement(using: &generator)!
                // Mostly read, granted at once: an identical request still waiting would be answered instead of filed.
                let role = ["read", "read", "read", "read", "read", "write", "admin"].randomElement(using: &generator)!
                let input = NewRequestInput(resource: "prod-db", role: role, duration: "30m",
                                            reason: reasons.randomElement(using: &generator)! + " (step \(step))")
                do {
                    if try await app.desk.create(caller: callers[requester]!, input: input).created { filed += 1 }
                } catch let error as GatehouseError where error.kind == .tooManyRequests || error.kind == .forbidden {
                    // A hard limit or a block refused it: that is the score at work, not this test's concern.
                    refusals.append(error.refusal?.policy ?? error.code)
                }
            case 12..<15 where !open.isEmpty:
                let request = open.randomElement(using: &generator)!
                let approver = ["bob", "carol"].randomElement(using: &generator)!
                if request.state == .quarantined {
                    _ = try? await app.desk.review(caller: callers["carol"]!, id: request.id, release: Bool.random(using: &generator), comment: "looked at it")
                } else {
                    _ = try? await app.desk.decide(caller: callers[approver]!, id: request.id, decision: Bool.random(using: &generator) ? .approve : .deny,
                                                   comment: "ok")
                }
            case 15 where !open.isEmpty:
                let request = open.randomElement(using: &generator)!
                _ = try? await app.desk.cancel(caller: callers[request.requester]!, id: request.id)
            case 16 where !open.isEmpty && reports < 3:
                // A report blocks the requester and holds their waiting requests; an admin lifts the block.
                let request = open.randomElement(using: &generator)!
                if (try? await app.desk.report(caller: callers["bob"]!, id: request.id, comment: "not theirs to touch")) != nil {
                    reports += 1
                    _ = try await app.principals.unblock(caller: admin, principal: request.requester)
                }
            default:
                _ = try await app.housekeeping.sweep()
            }
            // What the next filing of one of them would read, on either instance.
            let probe = instances.randomElement(using: &generator)!
            let requester = ["alice", "erin"].randomElement(using: &generator)!
            let snapshot = try await AntiSpamTransaction.others(of: requester, context: probe.context)
            let (kept, own, others, fresh, freshOthers) = try await probe.store.write { session in
                let policy = probe.policies.policy
                let now = probe.clock.now()
                let tx = AntiSpamTransaction(session: session, policy: policy, now: now, requester: requester, metrics: NoMetrics())
                // As `history(others:)` reads them.
                let since = Date(unixMilliseconds: now.addingTimeInterval(-TimeInterval(policy.antiSpam.windows.history.seconds)).unixMilliseconds)
                let others = try await tx.others(snapshot, ownSince: since)
                let kept = others.followed.flatMap {
                    $0.memory.own(requester, since: since, limit: AntiSpamTransaction.ownCompared, seq: $0.seq, generation: $0.generation, at: now)
                }
                let own = try await tx.ownHistory(since: since, followed: others.followed)
                let fresh = try await session.pastRequests(requester: requester, since: since, limit: AntiSpamTransaction.ownCompared)
                let sharedSince = Date(unixMilliseconds: now.addingTimeInterval(-TimeInterval(policy.antiSpam.windows.sharedReason.seconds)).unixMilliseconds)
                let freshOthers = try await session.othersRequests(excluding: requester, since: sharedSince, limit: AntiSpamTransaction.othersCompared)
                return (kept, own, others.requests, fresh, freshOthers)
            }
            probes += 1
            if kept != nil { hits += 1 }
            #expect(own == fresh, "step \(step): own history of \(requester)")
            #expect(others.map(\.id) == freshOthers.map(\.id), "step \(step): others' requests")
            if kept != nil, fresh.count == AntiSpamTransaction.ownCompared { fullHits += 1 }
            longest = max(longest, fresh.count)
        }
        #expect(filed > 220, "refused: \(Dictionary(grouping: refusals, by: { $0 }).mapValues(\.count))")
        // Every way a request changes took place between the filings.
        let stored = try await instances[0].store.read { try await $0.requests(.init(limit: 10_000)) }
        let states = Set(stored.map(\.state))
        #expect(states.isSuperset(of: [.approved, .denied, .canceled, .expired]), "\(states)")
        let audit = try await instances[0].store.read { try await $0.auditEvents(.init(limit: 10_000)) }.map(\.action)
        #expect(audit.contains(AuditAction.requestQuarantined.rawValue) && (audit.contains(AuditAction.requestReleased.rawValue)
                || audit.contains(AuditAction.requestRejected.rawValue)), "held and reviewed")
        #expect(hits * 2 > probes, "\(hits) of \(probes) own histories came from memory")
        #expect(fullHits > 10 && reports > 0, "longest \(longest), hits \(hits)/\(probes), filed \(filed): \(fullHits) from memory at the limit of \(AntiSpamTransaction.ownCompared); \(reports) reports")
    }
}
