import Foundation
import GatehouseCore
import Logging
import NIOCore
import NIOPosix
import SQLKit
import SQLiteKit
import Synchronization

/// Where Gatehouse keeps its state: SQLite (embedded, the default) or PostgreSQL (several instances
/// on one database). Every state change goes through `write`, which runs its body in one database
/// transaction: the change and its audit event commit together or not at all.
public final class GatehouseStore: Sendable {
    private let backend: any StoreBackend
    private let cache = ReadCache()
    /// Only when this process makes every write to the database: otherwise another process's writes
    /// would not clear it (SQLite in shared mode, PostgreSQL).
    private let caching: Bool
    /// Where the data is, without secrets (a PostgreSQL password is never shown).
    public let location: String

    init(backend: any StoreBackend, caching: Bool, location: String) {
        self.backend = backend
        self.caching = caching
        self.location = location
    }

    /// Opens the store a `--database` URL names and brings its schema up to date:
    /// `sqlite:PATH` (or a bare path), with `?mode=shared` for several processes on one file, or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (see `PostgresLocation` for its options).
    public static func open(url: String, writeWait: Duration? = nil, logger: Logger = Logger(label: "gatehouse.store")) async throws -> GatehouseStore {
        if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            return try await openPostgres(PostgresLocation.parse(url), writeWait: writeWait ?? .seconds(15), logger: logger)
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
        return try await openSQLite(path: path, writeWait: writeWait ?? .seconds(10), shared: shared, logger: logger)
    }

    public static func openSQLite(path: String, readerCount: Int = 4, writeWait: Duration = .seconds(10), shared: Bool = false,
                                  logger: Logger = Logger(label: "gatehouse.store")) async throws -> GatehouseStore {
        let backend = try await SQLiteBackend.open(path: path, readerCount: readerCount, writeWait: writeWait, shared: shared, logger: logger)
        return try await migrated(GatehouseStore(backend: backend, caching: !shared, location: "sqlite:\(path)" + (shared ? "?mode=shared" : "")), logger: logger)
    }

    public static func openPostgres(_ location: PostgresLocation, writeWait: Duration = .seconds(15),
                                    logger: Logger = Logger(label: "gatehouse.store")) async throws -> GatehouseStore {
        let backend = try await PostgresBackend.open(location, writeWait: writeWait, logger: logger)
        return try await migrated(GatehouseStore(backend: backend, caching: false, location: location.description), logger: logger)
    }

    private static func migrated(_ store: GatehouseStore, logger: Logger) async throws -> GatehouseStore {
        do {
            try await store.migrate(logger: logger)
        } catch {
            await store.close()
            throw error
        }
        return store
    }

    public func close() async {
        await backend.close()
    }

    /// Runs `body` in one write transaction. Writes are serialized, across every process on the
    /// database; a thrown error rolls everything back.
    public func write<T: Sendable>(_ body: @escaping @Sendable (StoreSession) async throws -> T) async throws -> T {
        defer { cache.invalidate() }
        return try await backend.write(body)
    }

    /// Runs read-only queries outside any write transaction.
    public func read<T: Sendable>(_ body: @escaping @Sendable (StoreSession) async throws -> T) async throws -> T {
        try await backend.read(body)
    }

    /// The live token with this hash, from the cache when no write committed since it was read.
    public func liveToken(hash: String) async throws -> TokenRecord? {
        if caching, let cached = cache.token(hash: hash) {
            try backend.check()
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
            try backend.check()
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
            try backend.check()
            return cached
        }
        let generation = cache.generation
        let blocked = try await read { try await $0.principalFlags(principal)?.isBlocked ?? false }
        cache.remember(blocked: blocked, principal: principal, readAt: generation)
        return blocked
    }

    /// Readiness: the store answers a trivial query.
    public func ping() async -> Bool {
        await backend.ping()
    }

    func migrate(logger: Logger) async throws {
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
                logger.info("applied schema migration", metadata: ["version": "\(migration.version)"])
            }
        }
    }
}
