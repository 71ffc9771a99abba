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
    /// A loopback port nobody listens on right now, for a server a test starts. It is taken below the
    /// kernel's range of ephemeral ports, so no outgoing connection (the tests make many) can be given it
    /// as its local port before the server binds it, and never twice in one test run.
    public static func free() throws -> Int {
        let low = ephemeralRange().low
        let candidates = low > 10_000 ? 10_000..<low : 0..<0
        for _ in 0..<200 where !candidates.isEmpty {
            let port = Int.random(in: candidates)
            guard handedOut.withLock({ $0.insert(port).inserted }) else { continue }
            if bindable(port) { return port }
        }
        // No room below the range: a port the kernel finds free (it may hand it to a connection meanwhile).
        return try kernelChosen()
    }

    private static let handedOut = PortSet()

    /// The kernel's range of local ports for outgoing connections (Linux's default when it cannot be read).
    static func ephemeralRange() -> (low: Int, high: Int) {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        let numbers = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
        return numbers.count == 2 ? (numbers[0], numbers[1]) : (32768, 60999)
    }

    /// Whether a listening socket could be bound to this loopback port now.
    static func bindable(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var reuse: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    static func kernelChosen() throws -> Int {
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

    /// A set of ports shared by the tests of one process.
    final class PortSet: @unchecked Sendable {
        private let lock = NSLock()
        private var ports: Set<Int> = []
        func withLock<T>(_ body: (inout Set<Int>) -> T) -> T {
            lock.lock()
            defer { lock.unlock() }
            return body(&ports)
        }
    }

    /// A loopback port bound by this process without listening: a connection to it is refused, and while the
    /// socket is open nobody else can listen there (a port merely found free can be taken by another test).
    public static func refusing() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else {
            close(fd)
            throw TestFailure("bind() failed")
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// Whether process `pid` itself listens on this TCP port (Linux: the port's listening socket, from
    /// /proc/net/tcp and tcp6, is one of the process's open files). A port found free can be taken by
    /// another test's listener before a child process binds it; this tells the two apart.
    public static func isListening(_ port: Int, by pid: pid_t) -> Bool {
        var sockets: Set<String> = []
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = wholeFile(table) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let columns = line.split(separator: " ", omittingEmptySubsequences: true)
                // local_address is ADDRESS:PORT in hex; state 0A is LISTEN; the inode is the tenth column.
                guard columns.count > 9, columns[3] == "0A", let local = columns[1].split(separator: ":").last,
                      Int(local, radix: 16) == port else { continue }
                sockets.insert("socket:[\(columns[9])]")
            }
        }
        guard !sockets.isEmpty, let files = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { return false }
        return files.contains { file in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(file)")).map(sockets.contains) ?? false
        }
    }

    /// A file read to its end with read(2): /proc files say their size is 0, and Foundation's readers stop
    /// after the first 4 KiB of them (27 sockets of /proc/net/tcp).
    static func wholeFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whether something accepts TCP connections on this loopback port.
    public static func isListening(_ port: Int) -> Bool {
        guard let fd = connected(port) else { return false }
        close(fd)
        return true
    }

    /// Sends `bytes` to this loopback port, then reads until the other side closes (or `timeout` seconds
    /// pass without a byte) and returns what came back. The blocking socket calls run on a thread of
    /// their own: on the test runner's few pool threads they would keep an in-process server from answering.
    public static func exchange(port: Int, _ bytes: [UInt8], thenClose: Bool = false, timeout: Int = 10) async throws -> (reply: [UInt8], closed: Bool) {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try blockingExchange(port: port, bytes, thenClose: thenClose, timeout: timeout) })
            }
        }
    }

    static func blockingExchange(port: Int, _ bytes: [UInt8], thenClose: Bool, timeout seconds: Int) throws -> (reply: [UInt8], closed: Bool) {
        guard let fd = connected(port) else { throw TestFailure("cannot connect to port \(port)") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == bytes.count else { throw TestFailure("send() to port \(port) failed") }
        if thenClose { shutdown(fd, Int32(SHUT_WR)) }
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count == 0 { return (reply, true) }
            // A signal to the test process (a child ending) interrupts a recv with a timeout: it is not
            // restarted (signal(7)), so it is tried again rather than taken for "still open".
            if count < 0, errno == EINTR { continue }
            if count < 0 {
                FileHandle.standardError.write(Data("exchange with port \(port): recv failed, errno \(errno) (\(String(cString: strerror(errno)))) after \(reply.count) bytes\n".utf8))
                return (reply, false)
            }
            reply += buffer[0..<count]
        }
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
/// A child started by `Command.start`: whether it runs, its exit status once it has ended.
public final class SpawnedProcess: @unchecked Sendable {
    public let processIdentifier: pid_t
    private let reaping = NSLock()
    private let state = NSLock()
    private var waitStatus: Int32?

    init(_ pid: pid_t) { processIdentifier = pid }

    /// Whether it has not ended yet (an ended child not yet reaped is a zombie: state Z).
    public var isRunning: Bool {
        if state.withLock({ waitStatus != nil }) { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(processIdentifier)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.first.map { $0 != "Z" && $0 != "X" } ?? false
    }

    /// Blocks until it has ended, and reaps it.
    public func waitUntilExit() {
        reaping.lock()
        defer { reaping.unlock() }
        guard state.withLock({ waitStatus == nil }) else { return }
        var status: Int32 = 0
        while waitpid(processIdentifier, &status, 0) == -1 && errno == EINTR {}
        state.withLock { waitStatus = status }
    }

    /// Its exit code, or the number of the signal that ended it (as Foundation's `Process` reports it).
    public var terminationStatus: Int32 {
        waitUntilExit()
        let status = state.withLock { waitStatus ?? 0 }
        let signal = status & 0x7F
        return signal == 0 ? (status >> 8) & 0xFF : signal
    }
}

public enum Command {
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                           input: String? = nil) async throws -> CommandResult {
        let process = try start(executable, arguments, environment: environment, input: input)
        return await finish(process)
    }

    /// A started command whose output is collected in files until `finish`: a short command run
    /// to its end, or a server the test stops (`stop`) when it is done with it.
    public final class Running: @unchecked Sendable {
        public let process: SpawnedProcess
        let stdout: URL
        let stderr: URL
        init(process: SpawnedProcess, stdout: URL, stderr: URL) {
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

    /// Starts `executable` with posix_spawn: standard output and error go to files (opened in the child
    /// only, so the test process holds no descriptor of theirs), standard input from `input` or
    /// /dev/null, every other descriptor closed in the child. Not Foundation's `Process`: its `run()` on
    /// Linux reads `/proc/self/fd` with a 256-byte copy of each directory entry and crashes now and then
    /// (swift-corelibs-foundation PR 5472), most often in a process with many descriptors open.
    /// `signals`: let the command receive SIGINT and friends. A child inherits the signal mask of
    /// the thread that spawns it, and the test runner's threads block most signals.
    public static func start(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                             input: String? = nil, signals: Bool = false) throws -> Running {
        // A client command waits 5 s for a server to answer its first question; a test server shares two cores
        // with hundreds of tests, so commands the tests run wait longer (CLIReachTests sets its own).
        var env = ["PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": NSTemporaryDirectory(), "GATEHOUSE_CONNECT_TIMEOUT": "30"]
        env.merge(environment) { _, new in new }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cmd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let out = folder.appendingPathComponent("stdout"), err = folder.appendingPathComponent("stderr")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        FileManager.default.createFile(atPath: err.path, contents: nil)
        var stdinPath = "/dev/null"
        if let input {
            let file = folder.appendingPathComponent("stdin")
            try input.write(to: file, atomically: true, encoding: .utf8)
            stdinPath = file.path
        }
        let pid = try withLaunchLock {
            try spawn(executable, arguments: arguments, environment: env, stdin: stdinPath, stdout: out.path, stderr: err.path, signals: signals)
        }
        return Running(process: SpawnedProcess(pid), stdout: out, stderr: err)
    }

    static func spawn(_ executable: String, arguments: [String], environment: [String: String], stdin: String, stdout: String, stderr: String,
                      signals: Bool) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_TRUNC, 0o644)
        if let closeFrom = closeFrom { _ = closeFrom(&actions, 3) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all)
        sigemptyset(&none)
        // Default dispositions for every signal (the test runner ignores SIGPIPE, which a child would inherit).
        posix_spawnattr_setsigdefault(&attributes, &all)
        var flags = Int16(POSIX_SPAWN_SETSIGDEF)
        if signals {
            posix_spawnattr_setsigmask(&attributes, &none)
            flags |= Int16(POSIX_SPAWN_SETSIGMASK)
        }
        posix_spawnattr_setflags(&attributes, flags)
        var argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, &argv, &envp)
        guard result == 0 else { throw TestFailure("cannot start \(executable): \(String(cString: strerror(result)))") }
        return pid
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later), which Swift's Glibc module
    /// does not declare.
    private static let closeFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    /// One process launch at a time.
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
