import Foundation
import Testing
@testable import GatehouseCore

@Suite("AuditChain")
struct AuditChainTests {
    static func chain(_ count: Int = 5, start: Date = Fixture.t0) -> [AuditEvent] {
        var events: [AuditEvent] = []
        for i in 0..<count {
            let entry = AuditEntry(actor: i.isMultiple(of: 2) ? "alice" : "carol", action: "request.event\(i)", subject: "req_\(i)",
                                   resource: i == 2 ? nil : "prod-db", details: ["step": "\(i)", "note": "n\(i)"])
            let previous = events.last.map { (seq: $0.seq, hash: $0.hash) }
            events.append(AuditChain.link(entry, after: previous, at: start.addingTimeInterval(Double(i) * 1.5)))
        }
        return events
    }

    static func head(_ events: [AuditEvent]) -> (seq: Int64, hash: String)? {
        events.last.map { (seq: $0.seq, hash: $0.hash) }
    }

    @Test("linking numbers events from 1 and chains each hash to the previous one")
    func link() {
        let events = Self.chain()
        #expect(events.map(\.seq) == [1, 2, 3, 4, 5])
        #expect(events[0].prevHash == AuditChain.genesisHash)
        for i in 1..<events.count {
            #expect(events[i].prevHash == events[i - 1].hash)
        }
        #expect(Set(events.map(\.hash)).count == events.count)
        for event in events {
            #expect(event.hash.count == 64)
            #expect(event.hash.allSatisfy { "0123456789abcdef".contains($0) })
            #expect(AuditChain.hash(of: event) == event.hash)
        }
    }

    @Test("link keeps the time at millisecond precision")
    func millisecondPrecision() {
        let at = Date(timeIntervalSince1970: 1_800_000_000.123_456)
        let event = AuditChain.link(AuditEntry(actor: "a", action: "x", subject: "s"), after: nil, at: at)
        #expect(event.at.unixMilliseconds == 1_800_000_000_123)
        #expect(abs(event.at.timeIntervalSince1970 - 1_800_000_000.123) < 0.000_001)
    }

    @Test("an intact chain verifies")
    func intact() {
        let events = Self.chain()
        let result = AuditChain.verify(events, head: Self.head(events))
        #expect(result.ok)
        #expect(result.eventsChecked == 5)
        #expect(result.brokenAt == nil)
        #expect(result.problem == nil)
    }

    @Test("an empty chain with no head verifies")
    func emptyChain() {
        let result = AuditChain.verify([AuditEvent](), head: nil)
        #expect(result.ok)
        #expect(result.eventsChecked == 0)
    }

    enum Tamper: String, CaseIterable, Sendable { case details, detailKey, actor, at, action, subject, resource, prevHash, hash }

    @Test("changing any field of a middle event is detected at that event", arguments: Tamper.allCases)
    func tamperMiddle(field: Tamper) {
        var events = Self.chain()
        switch field {
        case .details: events[2].details["note"] = "rewritten"
        case .detailKey: events[2].details = ["step": "2", "remark": "n2"] // same values, one key renamed
        case .actor: events[2].actor = "mallory"
        case .at: events[2].at = events[2].at.addingTimeInterval(-3_600)
        case .action: events[2].action = "request.approved"
        case .subject: events[2].subject = "req_999"
        case .resource: events[2].resource = "" // nil and "" must hash differently
        case .prevHash: events[2].prevHash = events[0].hash
        case .hash: events[2].hash = String(repeating: "f", count: 64)
        }
        let result = AuditChain.verify(events, head: Self.head(events))
        #expect(!result.ok)
        #expect(result.brokenAt == 3, "\(result.problem ?? "")")
        #expect(result.eventsChecked == 2)
        #expect(result.problem != nil)
    }

    @Test("an edit whose hash is recomputed breaks the link to the next event")
    func tamperWithRecomputedHash() {
        var events = Self.chain()
        events[2].details["note"] = "rewritten"
        events[2].hash = AuditChain.hash(of: events[2])
        let result = AuditChain.verify(events, head: Self.head(events))
        #expect(!result.ok)
        #expect(result.brokenAt == 4)
        #expect(result.problem?.contains("does not link") == true)
    }

    @Test("a deleted middle event is named")
    func deleteMiddle() {
        var events = Self.chain()
        events.remove(at: 2)
        let result = AuditChain.verify(events, head: Self.head(events))
        #expect(!result.ok)
        #expect(result.brokenAt == 3)
        #expect(result.problem?.contains("event 3 is missing") == true, "\(result.problem ?? "")")
    }

    @Test("deleting the last event is detected through the head")
    func deleteLast() {
        let events = Self.chain()
        let head = Self.head(events)
        let truncated = Array(events.dropLast())
        let result = AuditChain.verify(truncated, head: head)
        #expect(!result.ok)
        #expect(result.brokenAt == 5)
        #expect(result.problem?.contains("records event 5") == true, "\(result.problem ?? "")")
        #expect(result.problem?.contains("ends at event 4") == true)
    }

    @Test("deleting every event is detected through the head")
    func deleteAll() {
        let events = Self.chain()
        let result = AuditChain.verify([AuditEvent](), head: Self.head(events))
        #expect(!result.ok)
        #expect(result.brokenAt == 1)
    }

    @Test("an altered head hash is detected")
    func alteredHead() {
        let events = Self.chain()
        let result = AuditChain.verify(events, head: (seq: 5, hash: events[3].hash))
        #expect(!result.ok)
    }

    @Test("reordered events are detected", arguments: [(1, 2), (0, 4), (3, 4)])
    func reorder(a: Int, b: Int) {
        var events = Self.chain()
        events.swapAt(a, b)
        let result = AuditChain.verify(events, head: Self.head(Self.chain()))
        #expect(!result.ok)
        #expect(result.brokenAt == Int64(a + 1))
    }

    @Test("renumbered events (a deletion hidden by renumbering) are detected")
    func renumbered() {
        var events = Self.chain()
        events.remove(at: 2)
        for i in 2..<events.count { events[i].seq -= 1 }
        let result = AuditChain.verify(events, head: Self.head(events))
        #expect(!result.ok)
        #expect(result.brokenAt == 3)
    }

    @Test("events without a recorded head are detected")
    func missingHead() {
        let result = AuditChain.verify(Self.chain(), head: nil)
        #expect(!result.ok)
        #expect(result.problem?.contains("head is missing") == true)
    }

    @Test("field boundaries are part of the hash")
    func lengthPrefixed() {
        let at = Fixture.t0
        let a = AuditChain.link(AuditEntry(actor: "ab", action: "c", subject: "s"), after: nil, at: at)
        let b = AuditChain.link(AuditEntry(actor: "a", action: "bc", subject: "s"), after: nil, at: at)
        #expect(a.hash != b.hash)
        let c = AuditChain.link(AuditEntry(actor: "x", action: "y", subject: "s", details: ["k": "vv"]), after: nil, at: at)
        let d = AuditChain.link(AuditEntry(actor: "x", action: "y", subject: "s", details: ["kv": "v"]), after: nil, at: at)
        #expect(c.hash != d.hash)
        // Detail order does not matter: keys are sorted before hashing.
        let e = AuditChain.link(AuditEntry(actor: "x", action: "y", subject: "s", details: ["a": "1", "b": "2"]), after: nil, at: at)
        let f = AuditChain.link(AuditEntry(actor: "x", action: "y", subject: "s", details: ["b": "2", "a": "1"]), after: nil, at: at)
        #expect(e.hash == f.hash)
    }

    @Test("a chain survives a JSON round trip")
    func codableRoundTrip() throws {
        let events = Self.chain()
        let decoded = try JSONDecoder().decode([AuditEvent].self, from: JSONEncoder().encode(events))
        #expect(decoded == events)
        #expect(AuditChain.verify(decoded, head: Self.head(decoded)).ok)
    }

    /// The store keeps `at` as integer milliseconds (`at.unixMilliseconds`) and reads it back with
    /// `Date(unixMilliseconds:)`. That round trip must give back the same milliseconds, or a chain read
    /// from the store no longer verifies. The last five instants are ones whose Double lands just below
    /// the whole millisecond (2004, 2038-01-19, 2038-04-29), which rounding down used to lose.
    static let instants: [Int64] = [0, -1, 1_800_000_000_000, 1_800_000_000_123, 1_700_000_000_999, 1_735_689_600_001,
                                    1_075_424_932_320, 2_147_483_648_002, 2_147_483_648_003, 2_156_121_523_693, 4_395_728_586_921]

    @Test("milliseconds round-trip through Date", arguments: instants)
    func millisecondsRoundTrip(ms: Int64) {
        #expect(Date(unixMilliseconds: ms).unixMilliseconds == ms)
        let twice = Date(unixMilliseconds: Date(unixMilliseconds: ms).unixMilliseconds)
        #expect(twice.unixMilliseconds == ms)
    }

    /// Writing `at.unixMilliseconds` and reading `Date(unixMilliseconds:)` back, as GatehouseStore does.
    static func storeRoundTrip(_ events: [AuditEvent]) -> [AuditEvent] {
        events.map { event in
            var copy = event
            copy.at = Date(unixMilliseconds: event.at.unixMilliseconds)
            return copy
        }
    }

    @Test("a chain stored as integer milliseconds still verifies after reading it back", arguments: instants)
    func chainSurvivesStoreRoundTrip(ms: Int64) throws {
        let start = Date(timeIntervalSince1970: (Double(ms) + 0.3) / 1_000)
        try #require(start.unixMilliseconds == ms)
        let events = Self.chain(3, start: start)
        #expect(events[0].at.unixMilliseconds == ms)
        // Read back twice: a chain must survive any number of store round trips.
        let stored = Self.storeRoundTrip(Self.storeRoundTrip(events))
        let result = AuditChain.verify(stored, head: Self.head(stored))
        #expect(result.ok, "\(result.problem ?? "")")
        #expect(stored.map(\.at) == events.map(\.at))
    }
}
