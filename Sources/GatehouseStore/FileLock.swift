import Foundation
import Synchronization
import GatehouseCore

/// An advisory lock next to the database file. Exclusive (the default): one Gatehouse process per
/// SQLite file, and the store's read cache sees every write because every write is its own.
/// Shared: several processes on one file, none of them caching; the two modes exclude each other.
final class FileLock: Sendable {
    private let descriptor: Int32
    private let released = Atomic<Bool>(false)

    init(path: String, shared: Bool = false) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw GatehouseError(.unavailable, "store_lock_failed", "cannot create the lock file \(path): \(String(cString: strerror(errno))); check that its folder is writable")
        }
        guard flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0 else {
            close(fd)
            let hint = shared
                ? "another Gatehouse process holds it exclusively; start every process with ?mode=shared, or use PostgreSQL"
                : "stop it first, start every process with sqlite:PATH?mode=shared, or use PostgreSQL to run several instances"
            throw GatehouseError(.conflict, "store_in_use", "another Gatehouse process is using this SQLite database (\(path) is locked); \(hint)")
        }
        descriptor = fd
    }

    /// Safe to call more than once: the descriptor is closed exactly once.
    func release() {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }

    deinit { release() }
}
