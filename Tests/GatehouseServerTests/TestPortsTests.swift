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
}
