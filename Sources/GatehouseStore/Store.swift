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
    /// PostgreSQL: every write moves a counter, and this instance watches it (`ChangeWatch`), so the cache
    /// is used only while the watch has confirmed, within the last half second, that it saw every write.
    private let changes: ChangeWatch?
    /// Where the data is, without secrets (a PostgreSQL password is never shown).
    public let location: String

    init(backend: any StoreBackend, caching: Bool, watchesChanges: Bool = false, location: String) {
        self.backend = backend
        self.caching = caching
        self.changes = watchesChanges ? ChangeWatch() : nil
        self.location = location
    }

    /// Whether a cached answer may be given now.
    private var cacheUsable: Bool {
        caching || (changes?.confirmedRecently ?? false)
    }

    /// The scheme of a `scheme://...` URL, lowercased; nil for a path or `sqlite:PATH`.
    static func urlScheme(_ url: String) -> String? {
        guard let scheme = url.range(of: "://").map({ url[..<$0.lowerBound] }), !scheme.isEmpty,
              scheme.allSatisfy({ $0.isLetter || $0.isNumber || "+-.".contains($0) }) else { return nil }
        return scheme.lowercased()
    }

    /// The file a `sqlite:` URL names (without its `?mode=`), as `open(url:)` reads it; nil for PostgreSQL.
    public static func sqliteFile(of url: String) -> String? {
        // Another scheme (`postgres://`, or one Gatehouse does not take) is not a file name.
        if let scheme = urlScheme(url), scheme != "sqlite", scheme != "file" { return nil }
        let path = url.hasPrefix("sqlite:") ? String(url.dropFirst("sqlite:".count)) : url
        return path.lastIndex(of: "?").map { String(path[..<$0]) } ?? path
    }

    /// Opens the store a `--database` URL names and brings its schema up to date:
    /// `sqlite:PATH` (or a bare path), with `?mode=shared` for several processes on one file, or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (see `PostgresLocation` for its options).
    public static func open(url: String, writeWait: Duration? = nil, logger: Logger = Logger(label: "gatehouse.store")) async throws -> GatehouseStore {
        guard let path = sqliteFile(of: url) else {
            return try await openPostgres(PostgresLocation.parse(url), writeWait: writeWait ?? .seconds(15), logger: logger)
        }
        var shared = false
        if let mark = url.lastIndex(of: "?") {
            let query = url[url.index(after: mark)...]
            guard query == "mode=shared" || query == "mode=exclusive" else {
                throw GatehouseError(.invalid, "store_option_unknown", "unknown database option '\(query)'; the only one is ?mode=shared (several processes on one SQLite file)", field: "database")
            }
            shared = query == "mode=shared"
        }
        guard !path.isEmpty else {
            throw GatehouseError(.invalid, "store_path_missing", "the database path is empty; write --database sqlite:gatehouse.db", field: "database")
        }
        // `file:x.db` is a URI to SQLite (it opens x.db), `postgres:/db` a mistyped URL: neither is a path to take as one.
        if path.lowercased().hasPrefix("file:")
            || (!url.hasPrefix("sqlite:") && path.firstIndex(of: ":").map({ path[..<$0] }).map({ scheme in
                !scheme.isEmpty && scheme.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "+-.".contains($0)) } }) == true
                && !path.hasPrefix("/") && !path.hasPrefix(".")) {
            throw GatehouseError(.invalid, "store_path_invalid", "`\(url)` is neither sqlite:PATH nor postgres://...; write --database sqlite:\(path.drop { $0 != ":" }.dropFirst()) for a file, or postgres://USER@HOST/DATABASE", field: "database")
        }
        // `sqlite://name.db` reads as a host, not a file (it named /name.db): a path is sqlite:PATH or sqlite:///ABSOLUTE.
        if url.hasPrefix("sqlite://"), !url.hasPrefix("sqlite:///") {
            throw GatehouseError(.invalid, "store_path_invalid", "`\(url)` reads as a host, not a file: it named \(path.dropFirst()) (at the root); to keep using that file write sqlite:\(path.dropFirst()), and for one beside you sqlite:\(path.dropFirst(2))", field: "database")
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
        let store = try await migrated(GatehouseStore(backend: backend, caching: false, watchesChanges: true, location: location.description), logger: logger)
        do {
            try await store.backend.write { try await ChangeWatch.installTriggers($0) }
        } catch {
            await store.close()
            throw error
        }
        store.changes?.start(store)
        return store
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
        await changes?.stop()
        await backend.close()
    }

    /// Runs `body` in one write transaction. Writes are serialized, across every process on the
    /// database; a thrown error rolls everything back.
    public func write<T: Sendable>(_ body: @escaping @Sendable (StoreSession) async throws -> T) async throws -> T {
        defer { cache.invalidate() }
        return try await backend.write(body)
    }

    /// The change counter as committed now (PostgreSQL), for the watch; an error when its row is gone,
    /// so the watch goes blind and checks read the database.
    func changeCount() async throws -> Int64 {
        try await read { session in
            guard let n = try await session.db.raw("SELECT n FROM store_changes WHERE id = 1").first()?.decode(column: "n", as: Int64.self) else {
                throw GatehouseError(.unavailable, "store_changes_missing", "the change counter's row is missing from store_changes")
            }
            return n
        }
    }

    /// Another instance wrote: forget every cached answer.
    func forgetCachedAnswers() {
        cache.invalidate()
    }

    /// Runs read-only queries outside any write transaction.
    public func read<T: Sendable>(_ body: @escaping @Sendable (StoreSession) async throws -> T) async throws -> T {
        try await backend.read(body)
    }

    /// The live token with this hash, from the cache when no write committed since it was read.
    public func liveToken(hash: String) async throws -> TokenRecord? {
        if cacheUsable, let cached = cache.token(hash: hash) {
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
        if cacheUsable, let cached = cache.grants(key: key) {
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
        if cacheUsable, let cached = cache.blocked(principal: principal) {
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

    /// A write transaction with no time limit of the store's own (schema migrations).
    func migrationWrite<T: Sendable>(_ body: @escaping @Sendable (StoreSession) async throws -> T) async throws -> T {
        try await backend.migrate(body)
    }

    func migrate(logger: Logger) async throws {
        defer { cache.invalidate() }
        try await migrationWrite { session in
            try await session.db.raw("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)").run()
            let current = try await session.db.raw("SELECT MAX(version) AS v FROM schema_migrations").first()?
                .decodeOptional(column: "v", as: Int.self) ?? 0
            guard current <= Migrations.latestVersion else {
                throw GatehouseError(.conflict, "schema_too_new",
                                     "the database schema is at version \(current) but this gatehouse knows only up to version \(Migrations.latestVersion); run a newer gatehouse")
            }
            for migration in Migrations.all where migration.version > current {
                do {
                    for statement in migration.statements {
                        try await session.db.raw(SQLQueryString(statement)).run()
                    }
                } catch where GatehouseStore.isDatabaseAnswer(error) {
                    throw GatehouseError(.conflict, "migration_failed",
                                         "schema migration \(migration.version) could not be applied, so none of it was: \(Self.explain(error)); the database must be Gatehouse's own (no tables of other software with the same names) and its user must own Gatehouse's tables")
                }
                try await session.db.raw("INSERT INTO schema_migrations (version, applied_at) VALUES (\(bind: migration.version), \(bind: Date().unixMilliseconds))").run()
                logger.info("applied schema migration", metadata: ["version": "\(migration.version)"])
            }
        }
    }
}

/// Watches the PostgreSQL change counter every 100 ms: when it moved since the last look, someone has
/// changed what checks read (tokens, grants, blocks), and the cached answers are dropped. Triggers move the
/// counter in the same transaction as any change to those tables, whoever makes it: an instance of any
/// version, a migration, an operator's own SQL. The cache is used only while
/// the last look succeeded less than half a second ago; when the database stops answering, checks read
/// through (and fail, closed) after at most that long. A revocation on one instance is therefore seen by
/// every other within about the interval (BENCHMARKS.md measures it).
final class ChangeWatch: Sendable {
    static let interval: Duration = .milliseconds(100)
    static let freshness: Duration = .milliseconds(500)

    private struct State {
        var seen: Int64?
        var confirmed: ContinuousClock.Instant?
        var task: Task<Void, Never>?
    }
    private let state = Mutex(State())

    var confirmedRecently: Bool {
        state.withLock { state in state.confirmed.map { ContinuousClock.now - $0 < Self.freshness } ?? false }
    }

    func start(_ store: GatehouseStore) {
        let task = Task { [weak store] in
            while !Task.isCancelled, let store {
                await self.look(store)
                try? await Task.sleep(for: Self.interval)
            }
        }
        state.withLock { $0.task = task }
    }

    /// One look at the counter: drop the cache if it moved, then (only then) count the look as confirmed.
    func look(_ store: GatehouseStore) async {
        let started = ContinuousClock.now
        guard let count = try? await store.changeCount() else { return }
        let moved = state.withLock { state in state.seen != count }
        if moved { store.forgetCachedAnswers() }
        state.withLock { state in
            state.seen = count
            // Confirmed as of when the look began: a write committed after that may not have been seen.
            state.confirmed = started
        }
    }

    /// The triggers that move the counter with every statement that changes a table checks read from
    /// (statement-level: once per statement, even one that changed no row). Made again at every start.
    static func installTriggers(_ session: StoreSession) async throws {
        try await session.db.raw("""
            CREATE OR REPLACE FUNCTION gatehouse_count_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              UPDATE store_changes SET n = n + 1 WHERE id = 1;
              IF NOT FOUND THEN
                INSERT INTO store_changes (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = store_changes.n + 1;
              END IF;
              RETURN NULL;
            END $$
            """).run()
        for table in ["tokens", "grants", "principal_flags"] {
            try await session.db.raw("DROP TRIGGER IF EXISTS \(ident: table + "_count_change") ON \(ident: table)").run()
            try await session.db.raw("""
                CREATE TRIGGER \(ident: table + "_count_change") AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON \(ident: table)
                FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_count_change()
                """).run()
        }
    }

    func stop() async {
        let task = state.withLock { state -> Task<Void, Never>? in
            defer { state.task = nil; state.confirmed = nil }
            return state.task
        }
        task?.cancel()
        await task?.value
    }
}

extension Logger {
    /// This logger as handed to a database library: never below `info`, because the libraries log each
    /// statement with its bound values at `debug` and `trace`, and those values include secrets in flight
    /// (a sign-in's PKCE verifier and nonce, a device code) that `--log-level debug` must not write out.
    var quietLibrary: Logger {
        var quiet = self
        if quiet.logLevel < .info { quiet.logLevel = .info }
        return quiet
    }
}
