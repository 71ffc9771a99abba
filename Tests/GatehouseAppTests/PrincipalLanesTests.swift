import GatehouseCore
import GatehouseTestSupport
import Synchronization
import Testing
@testable import GatehouseApp

@Suite("Principal lanes: one filing at a time per principal, a bounded queue")
struct PrincipalLanesTests {
    /// A gate a body waits at until the test opens it.
    final class Gate: Sendable {
        private let waiting = Mutex<[CheckedContinuation<Void, Never>]>([])
        private let open = Mutex(false)
        func wait() async {
            await withCheckedContinuation { continuation in
                let now = open.withLock { $0 }
                if now { continuation.resume() } else { waiting.withLock { $0.append(continuation) } }
            }
        }
        func release() {
            open.withLock { $0 = true }
            for continuation in waiting.withLock({ w in defer { w = [] }; return w }) { continuation.resume() }
        }
    }

    /// What ran, in which order, and how many at once.
    final class Seen: Sendable {
        private let state = Mutex<(order: [Int], running: Int, most: Int)>(([], 0, 0))
        func enter() { state.withLock { $0.running += 1; $0.most = max($0.most, $0.running) } }
        func leave(_ n: Int) { state.withLock { $0.order.append(n); $0.running -= 1 } }
        var order: [Int] { state.withLock { $0.order } }
        var most: Int { state.withLock { $0.most } }
    }

    @Test("attempts of one principal run one at a time in arrival order; beyond the depth they are refused at once; others are not held")
    func lanes() async throws {
        let lanes = PrincipalLanes(depth: 2)
        let gate = Gate()
        let seen = Seen()
        let work: @Sendable (Int) async throws -> Int = { n in
            try await lanes.run("bot") {
                seen.enter()
                if n == 0 { await gate.wait() }
                seen.leave(n)
                return n
            }
        }
        let first = Task { try await work(0) }
        #expect(await waitUntil(timeout: .seconds(30)) { lanes.waiting("bot") == 0 })
        let second = Task { try await work(1) }
        #expect(await waitUntil(timeout: .seconds(30)) { lanes.waiting("bot") == 1 })
        let third = Task { try await work(2) }
        #expect(await waitUntil(timeout: .seconds(30)) { lanes.waiting("bot") == 2 })
        // Two wait already: the fourth is refused without waiting.
        await #expect(throws: GatehouseError.self) { try await work(3) }
        // Another principal is not held by the bot's lane.
        #expect(try await lanes.run("alice") { 42 } == 42)
        gate.release()
        #expect(try await [first.value, second.value, third.value] == [0, 1, 2])
        #expect(seen.order == [0, 1, 2])
        #expect(seen.most == 1)
        // The lane is free again.
        #expect(try await work(4) == 4)
    }

    @Test("a waiter whose task is cancelled leaves the queue: its body never runs, and the lane moves on")
    func cancelledWaiter() async throws {
        let lanes = PrincipalLanes(depth: 4)
        let gate = Gate()
        let seen = Seen()
        let holder = Task { try await lanes.run("bot") { await gate.wait(); seen.leave(0); return 0 } }
        #expect(await waitUntil(timeout: .seconds(30)) { lanes.waiting("bot") == 0 })
        let waiter = Task { try await lanes.run("bot") { seen.leave(1); return 1 } }
        #expect(await waitUntil(timeout: .seconds(30)) { lanes.waiting("bot") == 1 })
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(lanes.waiting("bot") == 0)
        // A task cancelled before it asks for its turn does not queue (it would wait for the holder), and its
        // body never runs.
        let done = Mutex(false)
        let early = Task {
            defer { done.withLock { $0 = true } }
            withUnsafeCurrentTask { $0?.cancel() }
            return try await lanes.run("bot") { seen.leave(3); return 3 }
        }
        #expect(await waitUntil(timeout: .seconds(30)) { done.withLock { $0 } || lanes.waiting("bot") == 1 })
        #expect(done.withLock { $0 } && lanes.waiting("bot") == 0, "a cancelled task queued for its turn")
        let next = Task { try await lanes.run("bot") { seen.leave(2); return 2 } }
        #expect(await waitUntil(timeout: .seconds(30)) { lanes.waiting("bot") == (done.withLock { $0 } ? 1 : 2) })
        gate.release()
        await #expect(throws: CancellationError.self) { try await early.value }
        #expect(try await holder.value == 0)
        #expect(try await next.value == 2)
        #expect(seen.order == [0, 2])
        #expect(lanes.waiting("bot") == nil)
    }
}
