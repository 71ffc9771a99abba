import Foundation
import GatehouseTestSupport
import Testing

/// The harness's own check that a started server is the process listening on its port, not another test's
/// listener that took the port first: it must hold however many sockets the machine has open.
@Suite("Test harness: who listens on a port")
struct TestPortsTests {
    @Test("a listener of this process is found among hundreds of sockets; a port another process holds, or none, is not this process's")
    func listenerOfAProcess() throws {
        // More sockets than the first 4 KiB of /proc/net/tcp hold (27 lines).
        var listeners: [(fd: Int32, port: Int)] = []
        defer { for listener in listeners { close(listener.fd) } }
        for _ in 0..<200 { listeners.append(try CLIReachTests.silentListener()) }
        let me = getpid()
        for listener in [listeners[0], listeners[100], listeners[199]] {
            #expect(TestPorts.isListening(listener.port, by: me), "port \(listener.port)")
        }
        let unused = try TestPorts.free()
        #expect(!TestPorts.isListening(unused, by: me))
        // PID 1 (init) does not hold this process's listener.
        #expect(!TestPorts.isListening(listeners[199].port, by: 1))
    }

    @Test("a free port is below the kernel's range for outgoing connections, not handed out twice, and can be listened on")
    func freePortsOutsideTheEphemeralRange() throws {
        let low = try #require(Int((try String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
            .split(whereSeparator: \.isWhitespace).first ?? ""))
        let ports = try (0..<50).map { _ in try TestPorts.free() }
        #expect(Set(ports).count == ports.count, "\(ports)")
        #expect(ports.allSatisfy { $0 < low }, "\(ports) against \(low)")
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(ports[0]).bigEndian)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        #expect(bound && listen(listener, 1) == 0)
        #expect(TestPorts.isListening(ports[0]))
    }
}
