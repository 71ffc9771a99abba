import Crypto
import Foundation

/// One entry of the append-only audit log. Each event stores the SHA-256 of the previous one, so
/// editing, inserting or deleting a row breaks the chain at that point.
public struct AuditEvent: Sendable, Equatable, Codable {
    public var seq: Int64
    public var at: Date
    public var actor: String
    /// What happened, e.g. `request.created`, `request.approved`, `grant.revoked`.
    public var action: String
    /// The request, grant, token or principal the event is about.
    public var subject: String
    public var resource: String?
    public var details: [String: String]
    public var prevHash: String
    public var hash: String

    public init(seq: Int64, at: Date, actor: String, action: String, subject: String, resource: String?,
                details: [String: String], prevHash: String, hash: String) {
        self.seq = seq
        self.at = at
        self.actor = actor
        self.action = action
        self.subject = subject
        self.resource = resource
        self.details = details
        self.prevHash = prevHash
        self.hash = hash
    }
}

/// An audit event before it is placed in the chain.
public struct AuditEntry: Sendable, Equatable {
    public var actor: String
    public var action: String
    public var subject: String
    public var resource: String?
    public var details: [String: String]

    public init(actor: String, action: String, subject: String, resource: String? = nil, details: [String: String] = [:]) {
        self.actor = actor
        self.action = action
        self.subject = subject
        self.resource = resource
        self.details = details
    }
}

public enum AuditChain {
    public static let genesisHash = String(repeating: "0", count: 64)

    /// Places an entry after the event with `previous` (seq, hash).
    public static func link(_ entry: AuditEntry, after previous: (seq: Int64, hash: String)?, at: Date) -> AuditEvent {
        let seq = (previous?.seq ?? 0) + 1
        let prevHash = previous?.hash ?? genesisHash
        var event = AuditEvent(seq: seq, at: Date(unixMilliseconds: at.unixMilliseconds), actor: storable(entry.actor), action: storable(entry.action),
                               subject: storable(entry.subject), resource: entry.resource.map(storable),
                               details: Dictionary(entry.details.map { (storable($0.key), storable($0.value)) }, uniquingKeysWith: { first, _ in first }),
                               prevHash: prevHash, hash: "")
        event.hash = hash(of: event)
        return event
    }

    /// The text as both stores keep it: PostgreSQL refuses NUL in text and SQLite's reader stops at it, so an
    /// event hashed with one would not verify when read back. Inputs are checked long before (names,
    /// reasons, action texts refuse NUL); this keeps the chain whole whatever a future path lets through.
    static func storable(_ text: String) -> String {
        text.utf8.contains(0) ? text.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}") : text
    }

    /// SHA-256 over every field but the hash itself, each length-prefixed so no two events share an encoding.
    public static func hash(of event: AuditEvent) -> String {
        var fields = [String(event.seq), String(event.at.unixMilliseconds), event.actor, event.action, event.subject,
                      event.resource ?? "\u{0}"]
        for key in event.details.keys.sorted() {
            fields.append(key)
            fields.append(event.details[key]!)
        }
        fields.append(event.prevHash)
        var data = Data()
        for field in fields {
            let bytes = Array(field.utf8)
            data.append(contentsOf: Array("\(bytes.count):".utf8))
            data.append(contentsOf: bytes)
        }
        return Hex.encode(SHA256.hash(data: data))
    }

    public struct Verification: Sendable, Equatable {
        public var ok: Bool
        public var eventsChecked: Int
        /// The seq of the first event that does not verify, when there is one.
        public var brokenAt: Int64?
        public var problem: String?
        /// The newest event verified, when the chain verifies: recorded elsewhere, it is an `Anchor` for a
        /// later verification.
        public var head: Anchor?

        public init(ok: Bool, eventsChecked: Int, brokenAt: Int64?, problem: String?, head: Anchor? = nil) {
            self.ok = ok
            self.eventsChecked = eventsChecked
            self.brokenAt = brokenAt
            self.problem = problem
            self.head = head
        }
    }

    /// An event known from outside the store (an earlier verification's head, a webhook's `webhook-id`): the
    /// log must still hold it with this hash. Whoever can write the store can rewrite the chain and its head
    /// together, or cut its newest events off; an anchor kept elsewhere finds both.
    public struct Anchor: Sendable, Equatable, CustomStringConvertible {
        public var seq: Int64
        /// The hash, or its first characters (at least 16 hex digits; a webhook id carries 16).
        public var hash: String

        public init(seq: Int64, hash: String) {
            self.seq = seq
            self.hash = hash
        }

        public var description: String { "\(seq):\(hash)" }

        /// Anchors as given (`--anchor`, `?anchor=`): at most 100, each well formed. Two that give one event
        /// different hashes cannot both hold: the verification fails on one of them.
        public static func parse(_ texts: [String]) throws(GatehouseError) -> [Anchor] {
            guard texts.count <= 100 else {
                throw .invalid("anchor", "invalid_anchor", "at most 100 anchors at once; \(texts.count) were given")
            }
            var anchors: [Anchor] = []
            for text in texts {
                guard let anchor = Anchor(text) else {
                    throw .invalid("anchor", "invalid_anchor", "an anchor is SEQ:HASH (as `audit verify` prints the head) or a webhook id, msg_SEQ_HASH, with at least 16 hex digits of the hash; `\(text.prefix(80))` is neither")
                }
                anchors.append(anchor)
            }
            return anchors
        }

        /// `SEQ:HASH` (as a verification prints its head) or a webhook id, `msg_SEQ_HASH`; nil otherwise.
        public init?(_ text: String) {
            let trimmed = text.hasPrefix("msg_") ? String(text.dropFirst(4)) : text
            let parts = trimmed.split(separator: text.hasPrefix("msg_") ? "_" : ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, let seq = Int64(parts[0]), seq > 0, (16...64).contains(parts[1].count),
                  parts[1].allSatisfy({ $0.isHexDigit }) else { return nil }
            self.init(seq: seq, hash: parts[1].lowercased())
        }
    }

    /// Walks events in order from the genesis and names the first broken link. `head` is the chain head
    /// recorded separately, so removing events from the end is detected too.
    public static func verify(_ events: some Sequence<AuditEvent>, head: (seq: Int64, hash: String)?) -> Verification {
        var walker = Walker()
        for event in events {
            if let broken = walker.check(event) { return broken }
        }
        return walker.finish(head: head)
    }

    /// The chain walked one event at a time, holding only the last link: a log of any length is verified
    /// in constant memory, page after page.
    public struct Walker: Sendable {
        var expectedSeq: Int64 = 1
        var prevHash = AuditChain.genesisHash
        public private(set) var count = 0
        /// Every hash given for an event: each must hold.
        let anchors: [Int64: [String]]

        public init(anchors: [Anchor] = []) {
            self.anchors = Dictionary(grouping: anchors, by: \.seq).mapValues { $0.map(\.hash) }
        }

        /// The next event in seq order: nil when it links, else the first broken link.
        public mutating func check(_ event: AuditEvent) -> Verification? {
            if event.seq != expectedSeq {
                return Verification(ok: false, eventsChecked: count, brokenAt: expectedSeq,
                                    problem: "event \(expectedSeq) is missing (next stored event is \(event.seq))")
            }
            if event.prevHash != prevHash {
                return Verification(ok: false, eventsChecked: count, brokenAt: event.seq,
                                    problem: "event \(event.seq) does not link to the event before it (an event was changed, inserted or removed)")
            }
            if AuditChain.hash(of: event) != event.hash {
                return Verification(ok: false, eventsChecked: count, brokenAt: event.seq,
                                    problem: "event \(event.seq) was modified after it was written (its content does not match its hash)")
            }
            if let anchored = anchors[event.seq]?.first(where: { !event.hash.hasPrefix($0) }) {
                return Verification(ok: false, eventsChecked: count, brokenAt: event.seq,
                                    problem: "event \(event.seq) no longer has the hash recorded elsewhere (\(anchored.prefix(16))...): the log was rewritten from there on, chain and head together")
            }
            prevHash = event.hash
            expectedSeq += 1
            count += 1
            return nil
        }

        /// After the last event: the log must end where the head says.
        public func finish(head: (seq: Int64, hash: String)?) -> Verification {
            let lastSeq = expectedSeq - 1
            if let head {
                if head.seq != lastSeq || (lastSeq > 0 && head.hash != prevHash) {
                    return Verification(ok: false, eventsChecked: count, brokenAt: min(head.seq, lastSeq + 1),
                                        problem: "the chain head records event \(head.seq) but the log ends at event \(lastSeq) (events were removed from the end or the head was altered)")
                }
            } else if lastSeq > 0 {
                return Verification(ok: false, eventsChecked: count, brokenAt: 1, problem: "the chain head is missing")
            }
            if let missing = anchors.keys.filter({ $0 > lastSeq }).min() {
                return Verification(ok: false, eventsChecked: count, brokenAt: lastSeq + 1,
                                    problem: "event \(missing), recorded elsewhere, is no longer in the log, which ends at event \(lastSeq): its newest events were removed and the head altered to match")
            }
            return Verification(ok: true, eventsChecked: count, brokenAt: nil, problem: nil,
                                head: lastSeq > 0 ? Anchor(seq: lastSeq, hash: prevHash) : nil)
        }
    }
}
