import Foundation
import GatehouseCore
import Logging
import NIOCore
import NIOPosix
import SQLKit
import SQLiteKit
import Synchronization

/// Where Gatehouse keeps its state. Every state change goes through `write`, which runs its body in
/// one database transaction: the change and its audit event commit together or not at all.
public final class GatehouseStore: Sendable {
    private let writer: SQLiteConnection
    private let readers: [SQLiteConnection]
    /// One query at a time per reader: two statements interleaved on one SQLite connection share a
    /// read transaction, and the second would see the first one's (possibly pre-commit) snapshot.
    private let readerLocks: [AsyncLock]
    private let nextReader = Atomic<Int>(0)
    private let broken = Atomic<Bool>(false)
    private let writeLock = AsyncLock()
    private let cache = ReadCache()
    /// Off in shared mode: another process's writes would not clear it.
    private let caching: Bool
    private let fileLock: FileLock
    /// How long a write waits for the writer before it gives up with 503.
    private let writeWait: Duration
    private let logger: Logger
    public let location: String
    private let path: String
    /// The file's identity when it was opened: if the file is deleted or replaced underneath us,
    /// the store stops answering instead of writing to a file nobody will ever see again.
    private let fileIdentity: FileIdentity?

    private init(writer: SQLiteConnection, readers: [SQLiteConnection], path: String, fileLock: FileLock, writeWait: Duration,
                 shared: Bool, logger: Logger) {
        self.caching = !shared
        self.fileLock = fileLock
        self.writeWait = writeWait
        self.writer = writer
        self.readers = readers
        self.readerLocks = readers.map { _ in AsyncLock() }
        self.path = path
        self.location = "sqlite:\(path)" + (shared ? "?mode=shared" : "")
        self.logger = logger
        self.fileIdentity = FileIdentity(path: path)
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

    func checkFile() throws {
        guard !broken.load(ordering: .acquiring) else {
            throw GatehouseError(.unavailable, "store_broken", "a transaction could not be rolled back; restart Gatehouse")
        }
        guard FileIdentity(path: path) == fileIdentity else {
            logger.critical("the database file was deleted or replaced while running; refusing to serve", metadata: ["path": "\(path)"])
            throw GatehouseError(.unavailable, "store_file_replaced", "the database file \(path) was deleted or replaced while Gatehouse was running; restart Gatehouse")
        }
    }

    /// Parses `sqlite:PATH` (or a bare path), with `?mode=shared` for several processes on one file.
    /// PostgreSQL URLs are named so the error can say what to do.
    public static func open(url: String, logger: Logger = Logger(label: "gatehouse.store")) async throws -> GatehouseStore {
        if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            throw GatehouseError(.invalid, "store_unsupported", "this build stores data in SQLite only; use --database sqlite:PATH", field: "database")
        }
        var path = url.hasPrefix("sqlite:") ? String(url.dropFirst("sqlite:".count)) : url
        var shared = false
        if let mark = path.lastIndex(of: "?") {
            let query = path[path.index(after: mark)...]
            guard query == "mode=shared" || query == "mode=exclusive" else {
                throw GatehouseError(.invalid, "store_option_unknown", "unknown database option '\(query)'; the only one is ?mode=shared (several processes on one SQLite file)", field: "database")
            }
            shared = query == "mode=shared"
            path = String(path[..<mark])
        }
        guard !path.isEmpty else {
            throw GatehouseError(.invalid, "store_path_missing", "the database path is empty; write --database sqlite:gatehouse.db", field: "database")
        }
        return try await openSQLite(path: path, shared: shared, logger: logger)
    }

    public static func openSQLite(path: String, readerCount: Int = 4, writeWait: Duration = .seconds(10), shared: Bool = false,
                                  logger: Logger = Logger(label: "gatehouse.store")) async throws -> GatehouseStore {
        let fileLock = try FileLock(path: path + ".lock", shared: shared)
        let writer: SQLiteConnection
        do {
            writer = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
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
                let reader = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
                readers.append(reader)
                try await reader.sql().raw("PRAGMA busy_timeout = 5000").run()
                try await reader.sql().raw("PRAGMA query_only = ON").run()
            }
        } catch {
            for connection in readers + [writer] { try? await connection.close() }
            fileLock.release()
            throw GatehouseError(.unavailable, "store_open_failed", "cannot use the SQLite database at \(path): \(error); is it a Gatehouse database, and not damaged?")
        }
        let store = GatehouseStore(writer: writer, readers: readers, path: path, fileLock: fileLock, writeWait: writeWait,
                                   shared: shared, logger: logger)
        do {
            try await store.migrate()
        } catch {
            await store.close()
            throw error
        }
        return store
    }

    public func close() async {
        for connection in readers + [writer] {
            try? await connection.close()
        }
        fileLock.release()
    }

    /// Runs `body` in one write transaction. Writers are serialized; a thrown error rolls everything back.
    public func write<T: Sendable>(_ body: @Sendable (StoreSession) async throws -> T) async throws -> T {
        do {
            return try await locked(body)
        } catch is AsyncLock.Timeout {
            throw GatehouseError(.unavailable, "store_busy", "the store is busy (a write waited \(writeWait) for its turn); nothing was changed, try again shortly")
        }
    }

    private func locked<T: Sendable>(_ body: @Sendable (StoreSession) async throws -> T) async throws -> T {
        try await writeLock.withLock(wait: writeWait) {
            try checkFile()
            let db = writer.sql()
            try await db.raw("BEGIN IMMEDIATE").run()
            do {
                let result = try await body(StoreSession(db: db))
                try await db.raw("COMMIT").run()
                cache.invalidate()
                return result
            } catch {
                cache.invalidate()
                do { try await db.raw("ROLLBACK").run() } catch {
                    // The writer may still be inside the transaction; nothing it does now can be trusted.
                    broken.store(true, ordering: .releasing)
                    logger.critical("rollback failed; the store refuses all requests until restarted", metadata: ["error": "\(error)"])
                }
                throw error
            }
        }
    }

    /// Runs read-only queries on one of the reader connections (WAL mode: readers never wait for the writer).
    public func read<T: Sendable>(_ body: @Sendable (StoreSession) async throws -> T) async throws -> T {
        let index = nextReader.wrappingAdd(1, ordering: .relaxed).oldValue
        let slot = abs(index) % readers.count
        try checkFile()
        do {
            return try await readerLocks[slot].withLock(wait: writeWait) {
                try await body(StoreSession(db: readers[slot].sql()))
            }
        } catch is AsyncLock.Timeout {
            throw GatehouseError(.unavailable, "store_busy", "the store is busy; try again shortly")
        }
    }

    /// The live token with this hash, from the cache when no write committed since it was read.
    public func liveToken(hash: String) async throws -> TokenRecord? {
        if caching, let cached = cache.token(hash: hash) {
            try checkFile()
            return cached
        }
        let generation = cache.generation
        let token = try await read { try await $0.token(hash: hash) }
        cache.remember(token: token, hash: hash, readAt: generation)
        return token
    }

    /// Grants of a principal on a resource that have not been ended (released, revoked or swept);
    /// the caller judges expiry against its own clock.
    public func openGrants(principal: String, resource: String) async throws -> [Grant] {
        let key = principal + "\u{0}" + resource
        if caching, let cached = cache.grants(key: key) {
            try checkFile()
            return cached
        }
        let generation = cache.generation
        let grants = try await read { try await $0.openGrants(principal: principal, resource: resource) }
        cache.remember(grants: grants, key: key, readAt: generation)
        return grants
    }

    /// Whether the anti-spam policy has blocked this principal (checks deny blocked principals).
    public func isBlocked(principal: String) async throws -> Bool {
        if caching, let cached = cache.blocked(principal: principal) {
            try checkFile()
            return cached
        }
        let generation = cache.generation
        let blocked = try await read { try await $0.principalFlags(principal)?.isBlocked ?? false }
        cache.remember(blocked: blocked, principal: principal, readAt: generation)
        return blocked
    }

    /// Readiness: the store answers a trivial query.
    public func ping() async -> Bool {
        do {
            return try await read { try await $0.db.raw("SELECT 1 AS one").first() != nil }
        } catch {
            return false
        }
    }

    func migrate() async throws {
        try await write { session in
            try await session.db.raw("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)").run()
            let current = try await session.db.raw("SELECT MAX(version) AS v FROM schema_migrations").first()?
                .decode(column: "v", as: Int?.self) ?? 0
            guard current <= Migrations.latestVersion else {
                throw GatehouseError(.conflict, "schema_too_new",
                                     "the database schema is at version \(current) but this gatehouse knows only up to version \(Migrations.latestVersion); run a newer gatehouse")
            }
            for migration in Migrations.all where migration.version > current {
                for statement in migration.statements {
                    try await session.db.raw(SQLQueryString(statement)).run()
                }
                try await session.db.raw("INSERT INTO schema_migrations (version, applied_at) VALUES (\(bind: migration.version), \(bind: Date().unixMilliseconds))").run()
                self.logger.info("applied schema migration", metadata: ["version": "\(migration.version)"])
            }
        }
    }
}
