import GatehouseCore
import Synchronization

/// Answers for the hot read path (`check`): token lookups and a principal's open grants on a
/// resource. Every committed write clears it, and a result read while a write was committing is
/// not kept, so a cached answer is never older than the last commit of this process. The SQLite
/// store uses it only while it holds an exclusive lock on its file, so this process sees every
/// write; a store opened in shared mode (several processes on one file) reads every time.
final class ReadCache: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var tokens: [String: TokenRecord?] = [:]
        var grants: [String: [Grant]] = [:]
        var blocked: [String: Bool] = [:]
    }

    private let state = Mutex(State())
    static let maximumEntries = 50_000

    var generation: UInt64 { state.withLock { $0.generation } }

    func token(hash: String) -> TokenRecord?? {
        state.withLock { $0.tokens[hash] }
    }

    func grants(key: String) -> [Grant]? {
        state.withLock { $0.grants[key] }
    }

    func blocked(principal: String) -> Bool? {
        state.withLock { $0.blocked[principal] }
    }

    func remember(blocked: Bool, principal: String, readAt generation: UInt64) {
        state.withLock { state in
            guard state.generation == generation else { return }
            if state.blocked.count >= Self.maximumEntries { state.blocked.removeAll(keepingCapacity: true) }
            state.blocked[principal] = blocked
        }
    }

    /// Only live tokens are kept: caching misses would let a flood of random tokens evict them.
    func remember(token: TokenRecord?, hash: String, readAt generation: UInt64) {
        guard token != nil else { return }
        state.withLock { state in
            guard state.generation == generation else { return }
            if state.tokens.count >= Self.maximumEntries { state.tokens.removeAll(keepingCapacity: true) }
            state.tokens[hash] = .some(token)
        }
    }

    func remember(grants: [Grant], key: String, readAt generation: UInt64) {
        state.withLock { state in
            guard state.generation == generation else { return }
            if state.grants.count >= Self.maximumEntries { state.grants.removeAll(keepingCapacity: true) }
            state.grants[key] = grants
        }
    }

    func invalidate() {
        state.withLock { state in
            state.generation &+= 1
            state.tokens.removeAll(keepingCapacity: true)
            state.grants.removeAll(keepingCapacity: true)
            state.blocked.removeAll(keepingCapacity: true)
        }
    }
}
