import Testing
@testable import GatehouseCore

/// Who the client is behind reverse proxies: only a trusted proxy's X-Forwarded-For counts, read from its end.
@Suite("Trusted proxies")
struct TrustedProxiesTests {
    @Test("addresses and blocks, IPv4 and IPv6, an IPv4 address written as IPv6")
    func blocks() throws {
        let trusted = try TrustedProxies.parse("10.0.0.0/8, 192.0.2.7 ,fd00::/8,172.16.0.0/12")
        #expect(trusted.contains("10.255.1.2") && trusted.contains("192.0.2.7") && trusted.contains("fd12::1") && trusted.contains("172.31.255.255"))
        #expect(trusted.contains("::ffff:10.1.2.3"))
        #expect(!trusted.contains("11.0.0.1") && !trusted.contains("192.0.2.8") && !trusted.contains("fe80::1") && !trusted.contains("172.32.0.0"))
        #expect(!trusted.contains("not an address") && !trusted.contains(""))
        #expect(try TrustedProxies.parse("0.0.0.0/0").contains("203.0.113.9"))
        #expect(try TrustedProxies.parse("").isEmpty)
    }

    @Test("what is not an address or a block is refused, saying what to write", arguments: [
        "10.0.0.0/33", "10.0.0/8", "example.com", "fd00::/129", "10.0.0.0/-1", "10.0.0.0/", "10.0.0.1/8x",
    ])
    func refused(text: String) {
        #expect(throws: TrustedProxies.Problem.self) { try TrustedProxies.parse(text) }
        do { _ = try TrustedProxies.parse(text) } catch { #expect(error.description.contains("CIDR") || error.description.contains("prefix length")) }
    }

    @Test("the client is the last address not of a trusted proxy; an untrusted peer is its own client whatever it sends")
    func client() throws {
        let trusted = try TrustedProxies.parse("10.0.0.0/8")
        // A client's own X-Forwarded-For is ignored unless it comes through a trusted proxy.
        #expect(trusted.client(peer: "203.0.113.9", forwardedFor: ["198.51.100.1"]) == "203.0.113.9")
        // Through one proxy: the address the proxy appended, not what the client wrote before it.
        #expect(trusted.client(peer: "10.0.0.2", forwardedFor: ["1.1.1.1, 198.51.100.1"]) == "198.51.100.1")
        #expect(trusted.client(peer: "10.0.0.2", forwardedFor: ["1.1.1.1", "198.51.100.1, 10.0.0.3"]) == "198.51.100.1")
        // Every hop trusted: the first one.
        #expect(trusted.client(peer: "10.0.0.2", forwardedFor: ["10.0.0.5, 10.0.0.3"]) == "10.0.0.5")
        // No header, or what it names is not an address: the proxy.
        #expect(trusted.client(peer: "10.0.0.2", forwardedFor: []) == "10.0.0.2")
        #expect(trusted.client(peer: "10.0.0.2", forwardedFor: ["unknown"]) == "10.0.0.2")
        #expect(trusted.client(peer: "10.0.0.2", forwardedFor: ["198.51.100.1, garbage"]) == "10.0.0.2")
        // Ports and brackets some proxies add; one spelling of an address.
        #expect(trusted.client(peer: "10.0.0.2", forwardedFor: ["198.51.100.1:4711"]) == "198.51.100.1")
        #expect(trusted.client(peer: "10.0.0.2", forwardedFor: ["[2001:DB8:0::1]:4711"]) == "2001:db8::1")
        #expect(TrustedProxies.none.client(peer: "10.0.0.2", forwardedFor: ["198.51.100.1"]) == "10.0.0.2")
    }

    @Test("the setting comes from a flag, the environment or the file, as a list there too; a mistake says where")
    func setting() throws {
        let fromFile = try ServeConfiguration.resolve(flags: [:], environment: [:], file: ("g.yaml", "trusted_proxies: [10.0.0.0/8, 192.0.2.7]\n"))
        #expect(fromFile.trustedProxies.contains("192.0.2.7") && fromFile.trustedProxies.contains("10.9.9.9"))
        let fromVariable = try ServeConfiguration.resolve(flags: [:], environment: ["GATEHOUSE_TRUSTED_PROXIES": "192.0.2.0/24"], file: nil)
        #expect(fromVariable.trustedProxies.contains("192.0.2.200") && !fromVariable.trustedProxies.contains("10.0.0.1"))
        #expect(throws: ServeConfiguration.Problem(message: "--trusted-proxies: `10.0.0.0/33`: the prefix length after `/` must be a number from 0 to 32")) {
            try ServeConfiguration.resolve(flags: ["trusted_proxies": "10.0.0.0/33"], environment: [:], file: nil)
        }
        #expect(throws: ServeConfiguration.Problem.self) {
            try ServeConfiguration.resolve(flags: [:], environment: [:], file: ("g.yaml", "trusted_proxies: [[10.0.0.0/8]]\n"))
        }
    }
}
