import Foundation
import GatehouseCore
import Synchronization

/// Everyone's newest requests within the shared-reason window, kept in memory for the spam score, with
/// the audit seq up to which they are complete: every request whose creation was audited at or before
/// `seq` and that falls in the window is here, unless it was dropped for room (then `droppedNewest` says
/// how recent the newest dropped one was). A filing takes its snapshot of other principals' requests from
/// here instead of reading hundreds of rows on a reader; inside its transaction it still reads every
/// request audited after the snapshot's seq (as it did after a reader's snapshot), and hands those back,
/// so the memory follows the store on every instance. What the score reads of others' requests (requester,
/// reason, time) never changes after filing.
///
/// It also keeps, for the principals filing lately, their own newest requests as the filing's store read gave
/// them (`ownLimit` since a time), and follows them with every request filed or changed (decided, held,
/// expired) that a filing's transaction reads from the log after the memory's seq: a principal's own history
/// is then read from the store once, not at every filing.
final class RecentRequests: Sendable {
    struct Snapshot: Sendable {
        var requests: [PastRequest]
        var seq: Int64
        /// The hash of the audit event at `seq`: a filing checks that the log still holds it.
        var hash: String?
        var generation: Int
    }

    /// How long the memory may go without a filing bringing it up to date before it is filled again
    /// from the store: the catch-up a filing reads inside its transaction stays a few seconds' worth.
    static let staleAfter: TimeInterval = 30

    private struct State {
        var generation = 0
        var window: TimeSpan?
        var seq: Int64 = 0
        var hash: String?
        /// When a filing last brought the memory up to date.
        var advanced = Date.distantPast
        /// Oldest first from `start` (the entries before it have left the window or were dropped for room;
        /// they are removed in bulk now and then, not one at a time).
        var requests: [PastRequest] = []
        var start = 0
        var ids: Set<String> = []
        var droppedNewest: Date?
        /// The latest window start requests were forgotten for: a snapshot reaching further back (a clock
        /// set back) is not answered from here.
        var horizon = Date.distantPast
        /// Principals' own newest requests, followed since they were read.
        var own: [String: OwnHistory] = [:]
        /// How many requests `own` holds in all.
        var ownCount = 0
        /// Counts uses of `own`, to forget the least recently used principal when there are too many.
        var uses: UInt64 = 0

        mutating func setOwn(_ principal: String, _ history: OwnHistory?) {
            ownCount += (history?.requests.count ?? 0) - (own[principal]?.requests.count ?? 0)
            own[principal] = history
        }

        /// Changes a kept history where it is (its requests are not copied).
        mutating func changeOwn(_ principal: String, _ change: (inout OwnHistory) -> Void) {
            guard let index = own.index(forKey: principal) else { return }
            ownCount -= own.values[index].requests.count
            change(&own.values[index])
            ownCount += own.values[index].requests.count
        }

        var count: Int { requests.count - start }

        func follows(_ window: TimeSpan, at now: Date) -> Bool {
            self.window == window && now.timeIntervalSince(advanced) <= RecentRequests.staleAfter
        }

        /// Adds a request in time order (it is almost always the newest, so this is an append).
        mutating func insert(_ request: PastRequest) {
            guard ids.insert(request.id).inserted else { return }
            var index = requests.endIndex
            while index > start, (requests[index - 1].createdAt, requests[index - 1].id) > (request.createdAt, request.id) { index -= 1 }
            requests.insert(request, at: index)
        }

        /// Forgets the oldest, up to the window's start and down to `capacity`.
        mutating func trim(since: Date, capacity: Int) {
            horizon = max(horizon, since)
            while start < requests.endIndex, requests[start].createdAt < since { ids.remove(requests[start].id); start += 1 }
            while count > capacity {
                droppedNewest = max(droppedNewest ?? requests[start].createdAt, requests[start].createdAt)
                ids.remove(requests[start].id)
                start += 1
            }
            if start > 256, start * 2 > requests.count {
                requests.removeFirst(start)
                start = 0
            }
        }
    }

    /// One principal's newest requests filed since `since` (at most `limit`), newest first: the store's
    /// answer when it was read, with every change read since applied.
    struct OwnHistory {
        var requests: [PastRequest]
        /// No earlier window is answered: changes to requests filed before it are not followed.
        var since: Date
        var limit: Int
        var used: UInt64
        /// When it was read from the store: kept at most `ownKeptFor` after.
        var readAt: Date

        /// Follows changes only from `floor` on (what a filing's transaction read changes for); returns how
        /// many requests it let go.
        mutating func raise(to floor: Date) -> Int {
            guard floor > since else { return 0 }
            since = floor
            // Newest first: those filed before the floor are at the end.
            let dropped = requests.count - (requests.lastIndex { $0.createdAt >= floor }.map { $0 + 1 } ?? 0)
            requests.removeLast(dropped)
            return dropped
        }

        /// A request filed or changed since: replaced where kept; kept when among the newest `limit`.
        mutating func apply(_ request: PastRequest) {
            if let index = requests.firstIndex(where: { $0.id == request.id }) {
                requests[index] = request
                return
            }
            let key = (request.createdAt, request.id)
            if requests.count >= limit, let oldest = requests.last, (oldest.createdAt, oldest.id) > key { return }
            let index = requests.firstIndex { ($0.createdAt, $0.id) < key } ?? requests.endIndex
            requests.insert(request, at: index)
            if requests.count > limit { requests.removeLast(requests.count - limit) }
        }
    }

    let capacity: Int
    /// How many principals' own histories are kept, and how many requests in all (reasons are up to 4 KiB).
    let ownCapacity: Int
    let ownRequestCapacity: Int
    private let state = Mutex(State())

    /// How long an own history read from the store is followed before it is read again: a bound on how long
    /// a change made outside Gatehouse (no `request.*` event) could go unseen.
    static let ownKeptFor: TimeInterval = 600

    init(capacity: Int = 2_000, ownCapacity: Int = 256, ownRequestCapacity: Int = 10_000) {
        self.capacity = capacity
        self.ownCapacity = ownCapacity
        self.ownRequestCapacity = ownRequestCapacity
    }

    /// Whether the memory follows the store for this window (it was filled since start or since the
    /// policy changed the window).
    func follows(window: TimeSpan, at now: Date) -> Bool { state.withLock { $0.follows(window, at: now) } }

    /// Starts over at the next filing (the store no longer holds what the memory was complete up to).
    func forget(generation: Int) {
        state.withLock { state in
            if state.generation == generation { state.window = nil }
        }
    }

    /// The newest `limit` requests of principals other than `requester` since `since`, newest first, when
    /// what is kept answers that exactly (nil before the first `reset`, after the window changed, or when
    /// requests of the window were dropped for room and fewer than `limit` others are left).
    func snapshot(excluding requester: String, window: TimeSpan, since: Date, limit: Int, at now: Date) -> Snapshot? {
        state.withLock { state in
            guard state.follows(window, at: now), since >= state.horizon else { return nil }
            var others: [PastRequest] = []
            var index = state.requests.endIndex
            while index > state.start, others.count < limit {
                index -= 1
                let request = state.requests[index]
                if request.createdAt < since { break }
                if request.requester != requester { others.append(request) }
            }
            if others.count < limit, let dropped = state.droppedNewest, dropped >= since { return nil }
            return Snapshot(requests: others, seq: state.seq, hash: state.hash, generation: state.generation)
        }
    }

    /// Starts over from a read of the store: everyone's newest requests since `since` (up to `capacity`;
    /// more means some were dropped), complete to the audit seq `seq` read before them.
    func reset(window: TimeSpan, requests: [PastRequest], seq: Int64, hash: String?, since: Date, at now: Date) {
        state.withLock { state in
            let generation = state.generation + 1
            state = State()
            state.generation = generation
            state.window = window
            state.seq = seq
            state.hash = hash
            state.advanced = now
            // Oldest first, so that each is appended.
            for request in requests.sorted(by: { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }) { state.insert(request) }
            state.trim(since: since, capacity: capacity)
        }
    }

    /// Adds the requests filed after a snapshot's seq and up to `seq` (read inside a filing's transaction), and
    /// applies those filed or changed to the own histories kept: every request filed since `followSince` whose
    /// `request.*` events came after the snapshot's seq. Ignored when the memory started over since that
    /// snapshot was taken. Rows read by a transaction that saw less of the log than the memory already follows
    /// (one the store's writer lock let through after its caller was answered, which can never commit) may be
    /// older than what the histories hold: those principals' histories are forgotten rather than set back.
    func add(_ late: [PastRequest], filed: Set<String>, completeTo seq: Int64, hash: String, generation: Int, since: Date,
             followSince: Date, at now: Date) {
        state.withLock { state in
            guard state.generation == generation else { return }
            let current = seq >= state.seq
            if current { (state.seq, state.hash) = (seq, hash) }
            state.advanced = max(state.advanced, now)
            // Changes to requests filed before `followSince` were not read: no history answers for them.
            var index = state.own.values.startIndex
            while index != state.own.values.endIndex {
                state.ownCount -= state.own.values[index].raise(to: followSince)
                state.own.values.formIndex(after: &index)
            }
            for request in late {
                if filed.contains(request.id), request.createdAt >= since { state.insert(request) }
                if current {
                    state.changeOwn(request.requester) { $0.apply(request) }
                } else {
                    state.setOwn(request.requester, nil)
                }
            }
            state.trim(since: since, capacity: capacity)
        }
    }

    /// A principal's own newest `limit` requests since `since`, newest first, when kept for this filling, brought
    /// up to the log's `seq` this transaction read, read for at least that much, and not too long ago (nil
    /// otherwise: read them from the store and `remember` them).
    func own(_ principal: String, since: Date, limit: Int, seq: Int64, generation: Int, at now: Date) -> [PastRequest]? {
        state.withLock { state in
            guard state.generation == generation, state.window != nil, state.seq == seq, let history = state.own[principal],
                  since >= history.since, limit <= history.limit,
                  now >= history.readAt, now.timeIntervalSince(history.readAt) <= Self.ownKeptFor else { return nil }
            state.uses += 1
            state.own[principal]?.used = state.uses
            return Array(history.requests.lazy.filter { $0.createdAt >= since }.prefix(limit))
        }
    }

    /// Keeps what a filing's transaction read from the store as a principal's own history (`requests`, newest
    /// first), when the memory follows the log no further than that transaction saw (`seq`): rows read before a
    /// later change that the memory has already passed would be followed from the wrong point. The least
    /// recently used histories are forgotten past `ownCapacity` principals or `ownRequestCapacity` requests.
    func remember(_ requests: [PastRequest], of principal: String, since: Date, limit: Int, seq: Int64, generation: Int, at now: Date) {
        state.withLock { state in
            guard state.generation == generation, state.window != nil, state.seq == seq else { return }
            state.uses += 1
            state.setOwn(principal, OwnHistory(requests: requests, since: since, limit: limit, used: state.uses, readAt: now))
            while state.own.count > ownCapacity || state.ownCount > ownRequestCapacity,
                  let oldest = state.own.min(by: { $0.value.used < $1.value.used })?.key {
                state.setOwn(oldest, nil)
            }
        }
    }
}
