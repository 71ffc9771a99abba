import Foundation
import GatehouseCore
import Synchronization

/// Everyone's newest requests within the shared-reason window, kept in memory for the spam score, with
/// the audit seq up to which they are complete: every request whose creation was audited at or before
/// `seq` and that falls in the window is here, unless it was dropped for room (then `droppedNewest` says
/// how recent the newest dropped one was). A filing takes its snapshot of other principals' requests from
/// here instead of reading hundreds of rows on a reader; inside its transaction it still reads every
/// request audited after the snapshot's seq (as it did after a reader's snapshot), and hands those back,
/// so the memory follows the store on every instance. What the score reads of them (requester, reason,
/// time) never changes after filing.
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

    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int = 2_000) { self.capacity = capacity }

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

    /// Adds the requests audited after a snapshot's seq and up to `seq` (read inside a filing's transaction).
    /// Ignored when the memory started over since that snapshot was taken.
    func add(_ late: [PastRequest], completeTo seq: Int64, hash: String, generation: Int, since: Date, at now: Date) {
        state.withLock { state in
            guard state.generation == generation else { return }
            if seq >= state.seq { (state.seq, state.hash) = (seq, hash) }
            state.advanced = max(state.advanced, now)
            for request in late { state.insert(request) }
            state.trim(since: since, capacity: capacity)
        }
    }
}
