import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A test failed for a reason outside its assertions (a server did not start, a tool is missing).
public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

public enum TestPorts {
    /// A loopback port nobody listens on right now.
    public static func free() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw TestFailure("bind() failed") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Whether something accepts TCP connections on this loopback port.
    public static func isListening(_ port: Int) -> Bool {
        guard let fd = connected(port) else { return false }
        close(fd)
        return true
    }

    /// A blocking TCP socket connected to this loopback port (the caller closes it), or nil.
    public static func connected(_ port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let done = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard done else {
            close(fd)
            return nil
        }
        return fd
    }
}

/// The outcome of a command the tests ran.
public struct CommandResult: Sendable, CustomStringConvertible {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var description: String { "exit \(status)\nstdout: \(stdout)\nstderr: \(stderr)" }
}

/// Runs a short-lived command (psql, python3, the gatehouse CLI) to completion, off the
/// cooperative thread pool.
public enum Command {
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                           input: String? = nil) async throws -> CommandResult {
        let process = try start(executable, arguments, environment: environment, input: input)
        return await finish(process)
    }

    /// A started command whose output is collected in files until `finish`: a short command run
    /// to its end, or a server the test stops (`stop`) when it is done with it.
    public final class Running: @unchecked Sendable {
        public let process: Process
        let stdout: URL
        let stderr: URL
        init(process: Process, stdout: URL, stderr: URL) {
            self.process = process
            self.stdout = stdout
            self.stderr = stderr
        }

        public var isRunning: Bool { process.isRunning }

        /// What it has written so far, standard output then standard error.
        public var output: String {
            ((try? String(contentsOf: stdout, encoding: .utf8)) ?? "") + ((try? String(contentsOf: stderr, encoding: .utf8)) ?? "")
        }

        /// Sends a signal; with `wait`, returns once the process has ended.
        public func signal(_ signal: Int32, wait: Bool = false) {
            guard process.isRunning else { return }
            kill(process.processIdentifier, signal)
            if wait { process.waitUntilExit() }
        }

        /// SIGTERM, then SIGKILL if it has not ended within `grace`.
        public func stop(grace: Duration = .seconds(3)) async {
            signal(SIGTERM)
            _ = await waitUntil(timeout: grace) { !self.process.isRunning }
            signal(SIGKILL, wait: true)
        }
    }

    /// `signals`: let the command receive SIGINT and friends. A child inherits the signal mask of
    /// the thread that spawns it, and the test runner's threads block most signals.
    public static func start(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                             input: String? = nil, signals: Bool = false) throws -> Running {
        let process = Process()
        if signals {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = ["-c", "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execv(sys.argv[1], sys.argv[1:])",
                                 executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        var env = ["PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": NSTemporaryDirectory()]
        env.merge(environment) { _, new in new }
        process.environment = env
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cmd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let out = folder.appendingPathComponent("stdout"), err = folder.appendingPathComponent("stderr")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        FileManager.default.createFile(atPath: err.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        if let input {
            let file = folder.appendingPathComponent("stdin")
            try input.write(to: file, atomically: true, encoding: .utf8)
            process.standardInput = try FileHandle(forReadingFrom: file)
        } else {
            process.standardInput = FileHandle.nullDevice
        }
        try withLaunchLock { try process.run() }
        return Running(process: process, stdout: out, stderr: err)
    }

    /// One process launch at a time: Foundation's `Process.run` on Linux once crashed in a memcpy
    /// while many tests launched commands at the same moment.
    private static let launchLock = NSLock()

    public static func withLaunchLock<T>(_ body: () throws -> T) rethrows -> T {
        launchLock.lock()
        defer { launchLock.unlock() }
        return try body()
    }

    public static func finish(_ running: Running) async -> CommandResult {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                running.process.waitUntilExit()
                continuation.resume()
            }
        }
        let out = (try? String(contentsOf: running.stdout, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOf: running.stderr, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(at: running.stdout.deletingLastPathComponent())
        return CommandResult(status: running.process.terminationStatus, stdout: out, stderr: err)
    }
}

/// Waits until `condition` holds, checking every `interval`, for at most `timeout`; returns whether
/// it came true. Tests wait for what they can observe rather than for a fixed time.
public func waitUntil(timeout: Duration, interval: Duration = .milliseconds(50), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return true }
        guard ContinuousClock.now < deadline else { return false }
        try? await Task.sleep(for: interval)
    }
}

/// A small deterministic generator (SplitMix64), so a failing fuzz input can be reproduced from its seed.
public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64
    public init(state: UInt64) { self.state = state }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The repository's helper scripts (a throwaway PostgreSQL server, the test identity provider).
public enum RepositoryScript {
    public static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Runs scripts/NAME and returns what it printed. Spawned and reaped directly, on a thread of
    /// its own: a server the script starts outlives it, and Foundation's `Process` did not always
    /// see the script end then.
    public static func run(_ name: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> String {
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("script-\(UUID().uuidString).out").path
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let scriptPath = repositoryRoot.appendingPathComponent("scripts/\(name)").path
        func quote(_ word: String) -> String { "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        let assignments = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\(quote($0.value)) " }.joined()
        let command = assignments + ([scriptPath] + arguments).map(quote).joined(separator: " ") + " > '\(outputPath)' < /dev/null"
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
