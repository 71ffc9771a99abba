import Foundation
import GatehouseCore
import Logging
import SQLKit
import SQLiteKit
import Synchronization

/// The embedded store: one writer connection (SQLite serializes writers anyway) and a few readers in
/// WAL mode, which never wait for the writer. A file lock next to the database keeps other processes
/// out, or, in shared mode, lets several in (SQLite's own locking then serializes their writers).
final class SQLiteBackend: StoreBackend {
    private let writer: SQLiteConnection
    private let readers: [SQLiteConnection]
    /// One query at a time per reader: two statements interleaved on one SQLite connection share a
    /// read transaction, and the second would see the first one's (possibly pre-commit) snapshot.
    private let readerLocks: [AsyncLock]
    private let nextReader = Atomic<Int>(0)
    private let broken = Atomic<Bool>(false)
    private let writeLock = AsyncLock()
    private let fileLock: FileLock
    /// How long a write waits for the writer before it gives up with 503.
    private let writeWait: Duration
    private let logger: Logger
    private let path: String
    /// The file's identity when it was opened: if the file is deleted or replaced underneath us,
    /// the store stops answering instead of writing to a file nobody will ever see again.
    private let fileIdentity: FileIdentity?

    private init(writer: SQLiteConnection, readers: [SQLiteConnection], path: String, fileLock: FileLock, writeWait: Duration, logger: Logger) {
        self.fileLock = fileLock
        self.writeWait = writeWait
        self.writer = writer
        self.readers = readers
        self.readerLocks = readers.map { _ in AsyncLock() }
        self.path = path
        self.logger = logger
        self.fileIdentity = FileIdentity(path: path)
    }

    /// The file a path names, through links and `.`/`..` (its folder's, when the file is not there yet).
    static func canonical(_ path: String) -> String {
        if let resolved = realpath(path, nil) {
            defer { free(resolved) }
            return String(cString: resolved)
        }
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        guard let resolved = realpath(folder.isEmpty ? "." : folder, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved) + "/" + url.lastPathComponent
    }

    /// Why this process may not write the database (the file, or the folder that holds its journal files); nil when it may.
    static func unwritable(_ path: String) -> String? {
        if access(path, F_OK) == 0, access(path, W_OK) != 0 { return "the file is read-only for this user (uid \(getuid()))" }
        let folder = URL(fileURLWithPath: canonical(path)).deletingLastPathComponent().path
        if access(folder, W_OK) != 0 { return "its folder \(folder) is read-only for this user (uid \(getuid()))" }
        return nil
    }

    struct FileIdentity: Equatable {
        var device: UInt64
        var inode: UInt64

        init?(path: String) {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            device = UInt64(info.st_dev)
            inode = UInt64(info.st_ino)
        }
    }

    static func open(path: String, readerCount: Int, writeWait: Duration, shared: Bool, logger: Logger) async throws -> SQLiteBackend {
        // The lock is taken beside the file itself, whatever path (a link, `./`, `a/../`) names it: two names of
        // one file are one lock.
        let fileLock = try FileLock(path: canonical(path) + ".lock", shared: shared)
        // A file this user may read but not write opens, and then every write fails: refused here, before the
        // server says it is ready.
        if let problem = unwritable(path) {
            fileLock.release()
            throw GatehouseError(.unavailable, "store_read_only", "cannot write the SQLite database at \(path): \(problem); Gatehouse writes to it (and to the -wal and -shm files beside it)")
        }
        let writer: SQLiteConnection
        do {
            writer = try await SQLiteConnection.open(storage: .file(path: path), logger: logger.quietLibrary)
        } catch {
            fileLock.release()
            throw GatehouseError(.unavailable, "store_open_failed", "cannot open the SQLite database at \(path): \(error); check that its folder exists and is writable")
        }
        var readers: [SQLiteConnection] = []
        do {
            let db = writer.sql()
            // synchronous = FULL: a confirmed revocation or grant survives a power cut, not only a crash.
            for pragma in ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL", "PRAGMA busy_timeout = 5000", "PRAGMA foreign_keys = ON"] {
                try await db.raw(SQLQueryString(pragma)).run()
            }
            for _ in 0..<max(1, readerCount) {
                let reader = try await SQLiteConnection.open(storage: .file(path: path), logger: logger.quietLibrary)
                readers.append(reader)
                try await reader.sql().raw("PRAGMA busy_timeout = 5000").run()
                try await reader.sql().raw("PRAGMA query_only = ON").run()
            }
        } catch {
            for connection in readers + [writer] { try? await connection.close() }
            fileLock.release()
            throw GatehouseError(.unavailable, "store_open_failed", "cannot use the SQLite database at \(path): \(error); is it a Gatehouse database, and not damaged?")
        }
        return SQLiteBackend(writer: writer, readers: readers, path: path, fileLock: fileLock, writeWait: writeWait, logger: logger)
    }

    func check() throws {
        guard !broken.load(ordering: .acquiring) else {
            throw GatehouseError(.unavailable, "store_broken", "a transaction could not be rolled back; restart Gatehouse")
        }
        guard FileIdentity(path: path) == fileIdentity else {
            logger.critical("the database file was deleted or replaced while running; refusing to serve", metadata: ["path": "\(path)"])
            throw GatehouseError(.unavailable, "store_file_replaced", "the database file \(path) was deleted or replaced while Gatehouse was running; restart Gatehouse")
        }
    }

    func close() async {
        for connection in readers + [writer] {
            try? await connection.close()
        }
        fileLock.release()
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (StoreSession) async throws -> T) async throws -> T {
        do {
            return try await writeLock.withLock(wait: writeWait) {
                try check()
                let db = writer.sql()
                try await db.raw("BEGIN IMMEDIATE").run()
                do {
                    let result = try await body(StoreSession(db: db))
                    try await db.raw("COMMIT").run()
                    return result
                } catch {
                    do { try await db.raw("ROLLBACK").run() } catch {
                        // The writer may still be inside the transaction; nothing it does now can be trusted.
                        broken.store(true, ordering: .releasing)
                        logger.critical("rollback failed; the store refuses all requests until restarted", metadata: ["error": "\(error)"])
                    }
                    throw error
                }
            }
        } catch is AsyncLock.Timeout {
            throw GatehouseError(.unavailable, "store_busy", "the store is busy (a write waited \(writeWait) for its turn); nothing was changed, try again shortly")
        }
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (StoreSession) async throws -> T) async throws -> T {
        let index = nextReader.wrappingAdd(1, ordering: .relaxed).oldValue
        let slot = abs(index) % readers.count
        try check()
        do {
            return try await readerLocks[slot].withLock(wait: writeWait) {
                try await body(StoreSession(db: readers[slot].sql()))
            }
        } catch is AsyncLock.Timeout {
            throw GatehouseError(.unavailable, "store_busy", "the store is busy; try again shortly")
        }
    }

    func ping() async -> Bool {
        do {
            return try await read { try await $0.db.raw("SELECT 1 AS one").first() != nil }
        } catch {
            return false
        }
    }
}
