import Foundation
import Synchronization
import GatehouseCore

/// An exclusive advisory lock next to the database file: one Gatehouse process per SQLite file.
/// The store relies on it (its read cache sees every write only if every write is its own), and a
/// second server on the same file is refused at start with a clear error.
final class FileLock: Sendable {
    private let descriptor: Int32
    private let released = Atomic<Bool>(false)

    init(path: String) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw GatehouseError(.unavailable, "store_lock_failed", "cannot create the lock file \(path): \(String(cString: strerror(errno))); check that its folder is writable")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw GatehouseError(.conflict, "store_in_use", "another Gatehouse process is using this SQLite database (\(path) is locked); stop it first, or use PostgreSQL to run several instances")
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
