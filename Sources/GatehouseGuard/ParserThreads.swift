import Foundation

/// A few long-lived threads with stacks large enough for libpg_query's recursion.
///
/// Swift concurrency's threads have small stacks (512 KiB on Linux); PostgreSQL's parser recurses
/// once per nesting level and overflows them on hostile input. Jobs wait in a FIFO queue; each
/// thread parses one statement at a time, and libpg_query's per-thread memory context is reused.
public final class ParserThreads: @unchecked Sendable {
    /// Enough for a 128 KiB statement nested as deeply as its bytes allow (measured: a 200 KB
    /// `1+1+...` chain parses within 64 MiB; 8 MiB is not enough). Only touched pages are committed.
    public static let stackSize = 64 << 20

    public static let shared = ParserThreads(count: max(2, ProcessInfo.processInfo.activeProcessorCount))

    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var head = 0

    public init(count: Int) {
        for index in 0..<count {
            let thread = Thread { [unowned self] in self.work() }
            thread.stackSize = ParserThreads.stackSize
            thread.name = "gatehouse-parser-\(index)"
            thread.start()
        }
    }

    /// Runs `body` on one of the parser threads and returns its result.
    public func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            submit { continuation.resume(returning: body()) }
        }
    }

    private func submit(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while head == jobs.count { condition.wait() }
            let job = jobs[head]
            head += 1
            if head > 1024, head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            condition.unlock()
            job()
        }
    }
}
