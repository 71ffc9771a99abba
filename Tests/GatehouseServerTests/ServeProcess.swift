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
        let running = try Command.start(try binary().path, ["serve", "--policy", policyPath, "--database", database, "--port", "\(port)", "--log-level", "warning"],
                                        environment: ["GATEHOUSE_ADMIN_TOKEN": TestServer.adminToken].merging(environment) { $1 })
        let server = ServeProcess(port: port, running: running)
        let ready = await waitUntil(timeout: .seconds(20), interval: .milliseconds(100)) {
            if let reply = try? await server.send(.GET, "/readyz", token: nil), reply.status == 200 { return true }
            return !running.isRunning
        }
        guard ready, running.isRunning else {
            server.kill(SIGKILL)
            throw TestFailure("gatehouse serve (\(name)) did not become ready: \(server.output)")
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

/// The repository's helper scripts (a throwaway PostgreSQL server, the test identity provider).
enum RepositoryScript {
    /// Runs scripts/NAME and returns what it printed. Spawned and reaped directly, on a thread of
    /// its own: a server the script starts outlives it, and Foundation's `Process` did not always
    /// see the script end then.
    static func run(_ name: String, _ arguments: [String]) async throws -> String {
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("script-\(UUID().uuidString).out").path
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let scriptPath = ServeProcess.repositoryRoot.appendingPathComponent("scripts/\(name)").path
        let quoted = ([scriptPath] + arguments).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        let command = quoted.joined(separator: " ") + " > '\(outputPath)' < /dev/null"
        let status: Int32 = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var pid: pid_t = 0
                let words: [String] = ["/bin/bash", "-c", command]
                var argv: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) }
                argv.append(nil)
                defer { argv.forEach { free($0) } }
                let spawned = Command.withLaunchLock { posix_spawn(&pid, "/bin/bash", nil, nil, argv, environ) }
                guard spawned == 0 else { return continuation.resume(returning: -1) }
                var status: Int32 = 0
                while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
                continuation.resume(returning: status)
            }
        }
        let output = ((try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        guard status == 0 else { throw TestFailure("\(name) \(arguments) failed (wait status \(status)): \(output.suffix(2000))") }
        return output
    }
}
