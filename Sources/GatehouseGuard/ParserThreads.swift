import Foundation

/// A few long-lived threads with stacks large enough for libpg_query's recursion.
///
/// Swift concurrency's threads have small stacks (512 KiB on Linux); PostgreSQL's parser recurses
/// once per nesting level and overflows them on hostile input. Each thread parses one statement at a
/// time, and libpg_query's per-thread memory context is reused.
///
/// Jobs wait in one queue per share (the principal a statement is classified for): the threads take
/// one job from each share with work waiting in turn, so a principal sending many large statements
/// waits behind its own, and another principal's next statement waits for at most one job of each
/// share ahead of it, not for everything queued.
public final class ParserThreads: @unchecked Sendable {
    /// Enough for a 128 KiB statement nested as deeply as its bytes allow (measured: a 200 KB
    /// `1+1+...` chain parses within 64 MiB; 8 MiB is not enough). Only touched pages are committed.
    public static let stackSize = 64 << 20

    public static let shared = ParserThreads(count: max(2, ProcessInfo.processInfo.activeProcessorCount))

    private typealias Job = @Sendable () -> Void

    /// One share's waiting jobs, oldest first from `head`.
    private struct Queue {
        var jobs: [Job] = []
        var head = 0
        var isEmpty: Bool { head == jobs.count }
        /// The oldest job; its slot lets go of it (and the text it holds), and taken slots are dropped in bulk,
        /// so a share that always has work waiting does not keep every job it ever queued.
        mutating func take() -> Job {
            let job = jobs[head]
            jobs[head] = Queue.taken
            head += 1
            if isEmpty {
                jobs.removeAll(keepingCapacity: true)
                head = 0
            } else if head > 1024, head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            return job
        }

        static let taken: Job = {}

        /// Jobs still held, waiting or taken but not yet dropped (for tests).
        var held: Int { jobs.count }
    }

    private let condition = NSCondition()
    private var queues: [String: Queue] = [:]
    /// The shares with jobs waiting, in the order they are served (each goes to the back after one job).
    private var turns: [String] = []
    private var turn = 0
    private var waiting = 0

    public init(count: Int) {
        for index in 0..<count {
            let thread = Thread { [unowned self] in self.work() }
            thread.stackSize = ParserThreads.stackSize
            thread.name = "gatehouse-parser-\(index)"
            thread.start()
        }
    }

    /// Runs `body` on one of the parser threads, in the turn of `share`, and returns its result.
    public func run<T: Sendable>(for share: String = "", _ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            submit(share) { continuation.resume(returning: body()) }
        }
    }

    /// How many job slots the queues hold, waiting or taken and not yet dropped (for tests).
    var heldJobs: Int {
        condition.lock()
        defer { condition.unlock() }
        return queues.values.reduce(0) { $0 + $1.held }
    }

    /// How many jobs wait for a thread (for tests).
    var waitingJobs: Int {
        condition.lock()
        defer { condition.unlock() }
        return waiting
    }

    private func submit(_ share: String, _ job: @escaping Job) {
        condition.lock()
        if queues[share, default: Queue()].isEmpty { turns.append(share) }
        queues[share, default: Queue()].jobs.append(job)
        waiting += 1
        condition.signal()
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while waiting == 0 { condition.wait() }
            let share = turns[turn]
            turn += 1
            let job = queues[share]!.take()
            if queues[share]!.isEmpty { queues[share] = nil } else { turns.append(share) }
            if turn > 1024, turn * 2 > turns.count {
                turns.removeFirst(turn)
                turn = 0
            }
            waiting -= 1
            condition.unlock()
            job()
        }
    }
}
