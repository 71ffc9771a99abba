import Foundation
import GatehouseTestSupport
import GatehouseCore
import NIOCore

/// A `gatehouse serve` process of the binary the test command built, on a loopback port.
final class ServeProcess: GatehouseHTTPClient, @unchecked Sendable {
    let port: Int
    let running: Command.Running
    var baseURL: String { "http://127.0.0.1:\(port)" }
    /// Longer than any wait inside the server, shorter than the HTTP client's default: a killed
    /// instance's port refuses connections, and the client retries those until its deadline.
    var timeout: TimeAmount { requestTimeout }
    /// A test whose requests queue behind each other on purpose sets a longer one before it sends.
    var requestTimeout: TimeAmount = .seconds(12)

    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    static func binary() throws -> URL {
        let url = repositoryRoot.appendingPathComponent(".build/debug/gatehouse")
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw TestFailure("\(url.path) is missing: build it first (scripts/test.sh runs `swift build --build-tests`)")
        }
        return url
    }

    /// A port nobody listens on right now.
    static func freePort() throws -> Int { try TestPorts.free() }

    /// Starts `gatehouse serve` and waits until it answers /readyz. A port found free can be taken by another
    /// test's listener before the server binds it: the server is started again on another port (three tries).
    static func start(policyPath: String, database: String, folder: URL, name: String,
                      environment: [String: String] = [:]) async throws -> ServeProcess {
        for attempt in 1...3 {
            let port = try freePort()
            do {
                return try await start(["--policy", policyPath, "--database", database, "--port", "\(port)", "--log-level", "warning"],
                                       port: port, name: name, environment: environment)
            } catch is NotOwnPort where attempt < 3 {
                continue
            }
        }
        throw TestFailure("gatehouse serve (\(name)) did not start")
    }

    /// The process could not listen on its port: another listener had it.
    struct NotOwnPort: Error, CustomStringConvertible {
        var description: String
    }

    /// Starts `gatehouse serve ARGUMENTS` (with the test admin token) and waits until it answers
    /// /readyz on `port`, itself (not another test's listener on that port).
    static func start(_ arguments: [String], port: Int, name: String, environment: [String: String] = [:]) async throws -> ServeProcess {
        let running = try Command.start(try binary().path, ["serve"] + arguments,
                                        environment: ["GATEHOUSE_ADMIN_TOKEN": TestServer.adminToken].merging(environment) { $1 })
        let server = ServeProcess(port: port, running: running)
        let pid = running.process.processIdentifier
        var ours = false
        _ = await waitUntil(timeout: .seconds(30), interval: .milliseconds(100)) {
            if TestPorts.isListening(port, by: pid), let reply = try? await server.ready(), reply.status == 200 { ours = true }
            return ours || !running.isRunning
        }
        guard ours, running.isRunning else {
            server.kill(SIGKILL)
            let output = server.output
            let said = "gatehouse serve (\(name)) did not become ready: \(output)"
            // Another listener took the port first (serve says so and ends): worth another port.
            throw output.contains("something is already listening there") ? NotOwnPort(description: said) as any Error : TestFailure(said)
        }
        return server
    }

    private init(port: Int, running: Command.Running) {
        self.port = port
        self.running = running
    }

    var output: String { running.output }

    /// SIGTERM, then SIGKILL if it has not ended within two seconds (keep-alive connections from the
    /// test's HTTP client would otherwise hold a graceful shutdown until their idle timeout).
    func stop() async {
        await running.stop(grace: .seconds(2))
    }

    func kill(_ signal: Int32, wait: Bool = true) {
        running.signal(signal, wait: wait)
    }
}

