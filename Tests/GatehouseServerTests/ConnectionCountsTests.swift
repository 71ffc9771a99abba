import GatehouseCore
import Testing
@testable import GatehouseServer

/// Open connections per client address: a bounded number each, more for a trusted reverse proxy.
@Suite("Connections per address")
struct ConnectionCountsTests {
    @Test("an address holds at most its limit; a trusted proxy sixteen times as many; a closed one frees its place")
    func limits() throws {
        let counts = ConnectionCounts(limit: 2, proxies: try TrustedProxies.parse("10.0.0.1"))
        #expect(counts.admit("203.0.113.9") && counts.admit("203.0.113.9"))
        #expect(!counts.admit("203.0.113.9"))
        counts.release("203.0.113.9")
        #expect(counts.admit("203.0.113.9"))
        let proxy = (0..<(2 * ConnectionCounts.proxyFactor)).map { _ in counts.admit("10.0.0.1") }
        #expect(proxy.allSatisfy { $0 })
        #expect(!counts.admit("10.0.0.1"))
        // Another host is not the proxy, whatever it is near.
        #expect(counts.admit("10.0.0.2") && counts.admit("10.0.0.2") && !counts.admit("10.0.0.2"))
    }
}
