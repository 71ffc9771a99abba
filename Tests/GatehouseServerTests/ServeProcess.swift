import Foundation
import GatehouseTestSupport
import GatehouseCore
import NIOCore

/// A `gatehouse serve` process of the binary the test command built, on a loopback port.
final class ServeProcess: GatehouseHTTPClient, @unchecked Sendable {
    let port: Int
    let process: Process
    let log: URL
    var baseURL: String { "http://127.0.0.1:\(port)" }
    /// Longer than any wait inside the server, shorter than the HTTP client's default: a killed
    /// instance's port refuses connections, and the client retries those until its deadline.
    var timeout: TimeAmount { .seconds(12) }

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

    /// Starts `gatehouse serve` and waits until it answers /readyz.
    static func start(policyPath: String, database: String, folder: URL, name: String,
                      environment: [String: String] = [:]) async throws -> ServeProcess {
        let port = try freePort()
        let process = Process()
        process.executableURL = try binary()
        process.arguments = ["serve", "--policy", policyPath, "--database", database, "--port", "\(port)", "--log-level", "warning"]
        process.environment = ["GATEHOUSE_ADMIN_TOKEN": TestServer.adminToken, "PATH": "/usr/bin:/bin"].merging(environment) { $1 }
        let log = folder.appendingPathComponent("\(name).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let server = ServeProcess(port: port, process: process, log: log)
        for _ in 0..<200 {
            if let reply = try? await server.send(.GET, "/readyz", token: nil), reply.status == 200 { return server }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        server.kill(SIGKILL)
        throw TestFailure("gatehouse serve (\(name)) did not become ready: \(server.output)")
    }

    private init(port: Int, process: Process, log: URL) {
        self.port = port
        self.process = process
        self.log = log
    }

    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// SIGTERM, then SIGKILL if it has not ended within two seconds (keep-alive connections from the
    /// test's HTTP client would otherwise hold a graceful shutdown until their idle timeout).
    func stop() async {
        kill(SIGTERM, wait: false)
        for _ in 0..<20 where process.isRunning { try? await Task.sleep(for: .milliseconds(100)) }
        kill(SIGKILL)
    }

    func kill(_ signal: Int32, wait: Bool = true) {
        guard process.isRunning else { return }
        Glibc.kill(process.processIdentifier, signal)
        if wait { process.waitUntilExit() }
    }
}
