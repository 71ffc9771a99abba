#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Starts a program as a shell does and waits for it: `name` (the word as typed) as its argv[0], every
/// signal at its default and none blocked, a file without `#!` that the kernel will not run read by
/// `/bin/sh` (as execvp does), and the exit code a shell reports: the program's own, or 128 + the signal
/// that ended it.
enum ChildProcess {
    struct Failure: Error, CustomStringConvertible {
        var code: Int32
        var description: String { String(cString: strerror(code)) }
    }

    static func run(path: String, name: String, arguments: [String]) throws -> Int32 {
        var pid = pid_t()
        var failed = spawn(&pid, path, [name] + arguments)
        if failed == ENOEXEC { failed = spawn(&pid, "/bin/sh", ["/bin/sh", path] + arguments) }
        guard failed == 0 else { throw Failure(code: failed) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            guard errno == EINTR else { throw Failure(code: errno) }
        }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    private static func spawn(_ pid: inout pid_t, _ path: String, _ argv: [String]) -> Int32 {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all)
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let words = argv.map { strdup($0) }
        defer { words.forEach { free($0) } }
        var pointers = words + [nil]
        return posix_spawn(&pid, path, nil, &attributes, &pointers, environ)
    }
}
