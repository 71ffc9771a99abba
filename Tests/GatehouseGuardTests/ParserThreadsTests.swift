import Foundation
import Synchronization
import Testing
@testable import GatehouseGuard

@Suite("Parser threads: each principal's statements take turns with everyone else's")
struct ParserThreadsTests {
    /// Holds the one parser thread until released, so that jobs queue up in a known order, and records
    /// the order in which the jobs behind it ran.
    final class Bench: Sendable {
        private let state = Mutex((holding: false, open: false, ran: [String]()))
        var holding: Bool { state.withLock { $0.holding } }
        var ran: [String] { state.withLock { $0.ran } }
        /// Records one run and says how many were recorded so far.
        func count(_ label: String) -> Int { state.withLock { $0.ran.append(label); return $0.ran.count } }
        func hold() {
            state.withLock { $0.holding = true }
            while !state.withLock({ $0.open }) { usleep(1_000) }
        }
        func release() { state.withLock { $0.open = true } }
        func record(_ label: String) { state.withLock { $0.ran.append(label) } }
    }

    /// Queues `jobs` (share, label) behind a job that holds the only thread, releases it and returns the
    /// labels in the order they ran.
    static func order(_ jobs: [(String, String)]) async -> [String] {
        let threads = ParserThreads(count: 1)
        let bench = Bench()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await threads.run(for: "holder") { bench.hold() } }
            while !bench.holding { await Task.yield() }
            for (index, job) in jobs.enumerated() {
                let (share, label) = job
                group.addTask { await threads.run(for: share) { bench.record(label) } }
                // Each job is queued before the next is submitted: the queue's order is the list's.
                while threads.waitingJobs < index + 1 { await Task.yield() }
            }
            bench.release()
            await group.waitForAll()
        }
        return bench.ran
    }

    @Test("a principal's one statement behind another's fifty runs second, not fifty-first")
    func oneBehindMany() async {
        let jobs = (0..<50).map { ("flood", "flood-\($0)") } + [("alice", "alice")]
        let order = await Self.order(jobs)
        #expect(order.count == 51)
        #expect(order.firstIndex(of: "alice") == 1, "order: \(order.prefix(5))")
        #expect(order.filter { $0.hasPrefix("flood") } == (0..<50).map { "flood-\($0)" }, "one share's jobs keep their order")
    }

    @Test("three busy principals take turns, one job each, in the order they first queued")
    func roundRobin() async {
        let jobs = (0..<3).flatMap { n in ["a", "b", "c"].map { ($0, "\($0)\(n)") } }.sorted { $0.1 < $1.1 }  // a0 a1 a2 b0 ... c2
        let order = await Self.order(jobs)
        #expect(order == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"])
    }

    @Test("a share that always has work waiting lets go of the jobs it has run: 2,100 queued, 1,500 run, about 1,050 held")
    func busyShareLetsGo() async {
        let threads = ParserThreads(count: 1)
        let start = Bench(), pause = Bench()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await threads.run(for: "holder") { start.hold() } }
            while !start.holding { await Task.yield() }
            for n in 0..<2_100 {
                // The 1,501st job to run holds the thread (tasks may queue in any order, so not job 1,500).
                group.addTask { await threads.run(for: "busy") { if pause.count("busy-\(n)") == 1_501 { pause.hold() } } }
            }
            while threads.waitingJobs < 2_100 { await Task.yield() }
            #expect(threads.heldJobs == 2_100)
            start.release()
            while !pause.holding { await Task.yield() }
            // 1,501 taken from one queue that never emptied: the taken slots were dropped in bulk.
            #expect(threads.waitingJobs == 599)
            #expect(threads.heldJobs < 1_100, "held \(threads.heldJobs)")
            pause.release()
            await group.waitForAll()
        }
        #expect(threads.heldJobs == 0 && threads.waitingJobs == 0)
    }

    @Test("many jobs from many shares all run, each once, across several threads")
    func everyJobRuns() async {
        let threads = ParserThreads(count: 3)
        let total = await withTaskGroup(of: Int.self) { group in
            for n in 0..<2_000 { group.addTask { await threads.run(for: "p\(n % 37)") { n } } }
            return await group.reduce(0, +)
        }
        #expect(total == (0..<2_000).reduce(0, +))
        #expect(threads.waitingJobs == 0)
    }
}
