import Foundation
import GatehouseCore
import GatehouseTestSupport
import Testing
@testable import GatehouseApp

@Suite("Recent requests in memory: a snapshot is what the store would answer, or none")
struct RecentRequestsTests {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    static let hour = TimeSpan(seconds: 3600)

    static func request(_ n: Int, by requester: String, at: Date) -> PastRequest {
        PastRequest(id: "req_\(n)", requester: requester, resource: "db", role: "read", reason: "reason \(n)", state: .pending, createdAt: at)
    }

    /// What the store's query answers: the newest `limit` of others' requests since `since`.
    static func expected(_ all: [PastRequest], excluding requester: String, since: Date, limit: Int) -> [String] {
        Array(all.filter { $0.requester != requester && $0.createdAt >= since }
            .sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }.prefix(limit)).map(\.id)
    }

    @Test("random filings by a few principals, added in batches as transactions read them: every snapshot given equals the store's answer, and one is refused only when requests of the window were dropped for room")
    func followsTheStore() {
        var generator = SplitMix64(state: 20_261_203)
        for capacity in [5, 40, 400] {
            let memory = RecentRequests(capacity: capacity)
            var all: [PastRequest] = []
            var now = Self.t0
            memory.reset(window: Self.hour, requests: [], seq: 0, hash: nil, since: now.addingTimeInterval(-3600), at: now)
            var answered = 0, refused = 0
            for step in 0..<600 {
                // A batch of filings (one principal of four, sometimes one principal in a burst), seconds to minutes apart.
                let burst = Int.random(in: 0..<10, using: &generator) == 0
                var batch: [PastRequest] = []
                for _ in 0..<Int.random(in: 1...(burst ? 30 : 3), using: &generator) {
                    now = now.addingTimeInterval(Double(Int.random(in: 1...90, using: &generator)))
                    let by = burst ? "flood" : ["ana", "bo", "cy", "di"].randomElement(using: &generator)!
                    batch.append(Self.request(all.count + batch.count, by: by, at: now))
                }
                all += batch
                let since = now.addingTimeInterval(-3600)
                memory.add(batch.shuffled(using: &generator), filed: Set(batch.map(\.id)), completeTo: Int64(step + 1), hash: "h\(step + 1)", generation: 1, since: since, followSince: since, at: now)
                for requester in ["ana", "flood", "nobody"] {
                    let limit = [3, 20, 200].randomElement(using: &generator)!
                    if let snapshot = memory.snapshot(excluding: requester, window: Self.hour, since: since, limit: limit, at: now) {
                        #expect(snapshot.requests.map(\.id) == Self.expected(all, excluding: requester, since: since, limit: limit))
                        #expect(snapshot.seq == Int64(step + 1) && snapshot.hash == "h\(step + 1)")
                        answered += 1
                    } else {
                        // Only when the memory cannot know: requests of the window were dropped for room, which
                        // needs more of them than it holds.
                        #expect(all.filter { $0.createdAt >= since }.count > capacity)
                        refused += 1
                    }
                }
            }
            #expect(answered > 0)
            if capacity == 400 { #expect(refused < answered / 10, "refused \(refused) of \(answered + refused)") }
        }
    }

    @Test("a batch read for an older filling, a changed window, a clock set back before the memory's horizon, a memory no filing brought up to date for 30 s, or one forgotten is never answered from memory")
    func refusesWhatItCannotKnow() throws {
        let memory = RecentRequests(capacity: 10)
        let t0 = Self.t0, since = t0.addingTimeInterval(-3600)
        func snapshot(window: TimeSpan = Self.hour, since: Date = since, at now: Date = t0) -> RecentRequests.Snapshot? {
            memory.snapshot(excluding: "ana", window: window, since: since, limit: 5, at: now)
        }
        #expect(snapshot() == nil, "empty before the first filling")
        // Read newest first from the store, as the filing reads it.
        memory.reset(window: Self.hour, requests: [Self.request(3, by: "cy", at: t0), Self.request(1, by: "bo", at: t0.addingTimeInterval(-60))],
                     seq: 7, hash: "h7", since: since, at: t0)
        let first = try #require(snapshot())
        #expect(first.requests.map(\.id) == ["req_3", "req_1"])
        #expect(first.seq == 7 && first.hash == "h7")
        memory.reset(window: Self.hour, requests: [], seq: 9, hash: "h9", since: since, at: t0)
        memory.add([Self.request(2, by: "bo", at: t0)], filed: ["req_2"], completeTo: 12, hash: "h12", generation: first.generation, since: since,
                   followSince: since, at: t0)
        #expect(snapshot()?.requests.isEmpty == true, "what was read for an earlier filling is ignored")
        #expect(snapshot()?.seq == 9)
        #expect(snapshot(window: TimeSpan(seconds: 600)) == nil, "another window")
        #expect(memory.follows(window: Self.hour, at: t0) && !memory.follows(window: TimeSpan(seconds: 600), at: t0))
        #expect(snapshot(since: since.addingTimeInterval(-1)) == nil, "a window reaching back before what was forgotten")
        #expect(snapshot(at: t0.addingTimeInterval(30)) != nil)
        #expect(snapshot(at: t0.addingTimeInterval(31)) == nil, "no filing brought it up to date for over 30 s")
        #expect(!memory.follows(window: Self.hour, at: t0.addingTimeInterval(31)))
        let current = try #require(snapshot())
        memory.forget(generation: current.generation - 1)
        #expect(snapshot() != nil, "forgetting an older filling changes nothing")
        memory.forget(generation: current.generation)
        #expect(snapshot() == nil && !memory.follows(window: Self.hour, at: t0), "forgotten: filled again at the next filing")
    }

    /// The store's answer for a principal's own history: their newest `limit` since `since`.
    static func ownExpected(_ all: [String: PastRequest], of principal: String, since: Date, limit: Int) -> [PastRequest] {
        Array(all.values.filter { $0.requester == principal && $0.createdAt >= since }
            .sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }.prefix(limit))
    }

    @Test("own histories: read once, then followed through filings and decisions added in batches, each batch what a transaction reads (changes to requests filed since a floor that moves); every answer equals the store's, with few principals kept and a short limit")
    func ownHistoriesFollowTheStore() throws {
        var generator = SplitMix64(state: 20_261_204)
        let memory = RecentRequests(capacity: 50, ownCapacity: 3, ownRequestCapacity: 15)
        let principals = ["ana", "bo", "cy", "di"]
        let limit = 6
        var all: [String: PastRequest] = [:]
        var now = Self.t0
        var seq: Int64 = 0
        memory.reset(window: Self.hour, requests: [], seq: 0, hash: "h0", since: now.addingTimeInterval(-3600), at: now)
        let generation = try #require(memory.snapshot(excluding: "x", window: Self.hour, since: now.addingTimeInterval(-3600), limit: 1, at: now)).generation
        var hits = 0, reads = 0, refusedEarlier = 0
        for _ in 0..<1500 {
            // A transaction's worth of changes: filings, and decisions on earlier requests of anyone.
            var batch: [PastRequest] = [], filed: Set<String> = []
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                now = now.addingTimeInterval(Double(Int.random(in: 1...20, using: &generator)))
                if Bool.random(using: &generator) || all.isEmpty {
                    let request = Self.request(all.count, by: principals.randomElement(using: &generator)!, at: now)
                    all[request.id] = request
                    batch.append(request)
                    filed.insert(request.id)
                } else {
                    var decided = all.values.sorted { $0.id < $1.id }.randomElement(using: &generator)!
                    decided.state = [.approved, .denied, .canceled, .expired].randomElement(using: &generator)!
                    (decided.decidedAt, decided.decidedBy) = (now, "carol")
                    all[decided.id] = decided
                    batch.append(decided)
                }
            }
            seq += 1
            // The store's read gives each request once, as it is at the end of the transaction, and only those
            // filed since the floor it was asked for (the longest window of the policy then in force).
            let followSince = now.addingTimeInterval(-TimeInterval(Int.random(in: 600...3000, using: &generator)))
            let rows = Dictionary(batch.map { ($0.id, $0) }, uniquingKeysWith: { _, later in later }).values
                .filter { $0.createdAt >= followSince }.sorted { $0.id < $1.id }
            memory.add(rows.shuffled(using: &generator), filed: filed, completeTo: seq, hash: "h\(seq)", generation: generation,
                       since: now.addingTimeInterval(-3600), followSince: followSince, at: now)
            // One principal files: from memory when kept, else read from the store and kept.
            let principal = principals.randomElement(using: &generator)!
            let since = max(followSince, now.addingTimeInterval(-TimeInterval(Int.random(in: 600...3000, using: &generator))))
            let expected = Self.ownExpected(all, of: principal, since: since, limit: limit)
            if let kept = memory.own(principal, since: since, limit: limit, seq: seq, generation: generation, at: now) {
                #expect(kept == expected)
                hits += 1
            } else {
                reads += 1
                // Kept only from a read that saw as much of the log as the memory follows.
                memory.remember(expected, of: principal, since: since, limit: limit, seq: seq - 1, generation: generation, at: now)
                #expect(memory.own(principal, since: since, limit: limit, seq: seq, generation: generation, at: now) == nil)
                memory.remember(expected, of: principal, since: since, limit: limit, seq: seq, generation: generation, at: now)
                #expect(memory.own(principal, since: since, limit: limit, seq: seq, generation: generation, at: now) == expected)
                #expect(memory.own(principal, since: since, limit: limit, seq: seq + 1, generation: generation, at: now) == nil,
                        "not for a transaction that saw another point of the log")
            }
            // Any other question is answered right or not at all: a window reaching back before what was read
            // or followed is not answered.
            let earlier = since.addingTimeInterval(-TimeInterval(Int.random(in: 0...2400, using: &generator)))
            if let kept = memory.own(principal, since: earlier, limit: limit, seq: seq, generation: generation, at: now) {
                #expect(kept == Self.ownExpected(all, of: principal, since: earlier, limit: limit))
            } else if earlier < since {
                refusedEarlier += 1
            }
            #expect(memory.own(principal, since: since, limit: limit + 1, seq: seq, generation: generation, at: now) == nil, "not for more than was read")
        }
        #expect(hits > 300 && reads > 50 && refusedEarlier > 100, "hits \(hits), reads \(reads), refused \(refusedEarlier)")
    }

    @Test("own histories: rows from a transaction that saw less of the log than the memory follows forget the principals they touch; a history read 10 minutes ago is read again; a new filling forgets them all")
    func ownHistoriesNeverSetBack() throws {
        let memory = RecentRequests(capacity: 50)
        let t0 = Self.t0, since = t0.addingTimeInterval(-3600)
        memory.reset(window: Self.hour, requests: [], seq: 5, hash: "h5", since: since, at: t0)
        let generation = try #require(memory.snapshot(excluding: "x", window: Self.hour, since: since, limit: 1, at: t0)).generation
        func own(_ principal: String, since: Date = since, seq: Int64, generation: Int = generation, at now: Date = t0) -> [PastRequest]? {
            memory.own(principal, since: since, limit: 10, seq: seq, generation: generation, at: now)
        }
        let filed = Self.request(1, by: "ana", at: t0)
        memory.remember([filed], of: "ana", since: since, limit: 10, seq: 5, generation: generation, at: t0)
        memory.remember([], of: "bo", since: since, limit: 10, seq: 5, generation: generation, at: t0)
        #expect(own("ana", since: since.addingTimeInterval(-1), seq: 5) == nil, "not for a window reaching back further than what was read")
        var denied = filed
        denied.state = .denied
        memory.add([denied], filed: [], completeTo: 7, hash: "h7", generation: generation, since: since, followSince: since, at: t0)
        #expect(own("ana", seq: 7) == [denied])
        #expect(own("ana", seq: 7, at: t0.addingTimeInterval(RecentRequests.ownKeptFor)) == [denied])
        #expect(own("ana", seq: 7, at: t0.addingTimeInterval(RecentRequests.ownKeptFor + 1)) == nil, "read from the store again after 10 minutes")
        // A transaction that read the request before the denial (head 6): not applied, ana is read again.
        memory.add([filed], filed: [], completeTo: 6, hash: "h6", generation: generation, since: since, followSince: since, at: t0)
        #expect(own("ana", seq: 7) == nil)
        #expect(own("bo", seq: 7) == [], "others' histories stay")
        #expect(own("bo", seq: 7, generation: generation + 1) == nil, "not for another filling")
        // Changes were read only for requests filed in the last half hour: no earlier window is answered since.
        memory.add([], filed: [], completeTo: 8, hash: "h8", generation: generation, since: since, followSince: t0.addingTimeInterval(-1800), at: t0)
        #expect(own("bo", seq: 8) == nil && own("bo", since: t0.addingTimeInterval(-1800), seq: 8) == [])
        memory.reset(window: Self.hour, requests: [], seq: 9, hash: "h9", since: since, at: t0)
        #expect(own("bo", seq: 9, generation: generation + 1) == nil, "forgotten when filled again")
    }
}

extension RecentRequests.Snapshot: Equatable {
    public static func == (a: Self, b: Self) -> Bool { a.requests == b.requests && a.seq == b.seq && a.generation == b.generation }
}
