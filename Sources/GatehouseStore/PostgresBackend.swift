import Foundation
import GatehouseCore
import Logging
import NIOSSL
import PostgresKit
import PostgresNIO
import SQLKit
import Synchronization

/// Where a PostgreSQL store is, from `postgres://USER:PASSWORD@HOST:PORT/DATABASE?OPTIONS`.
/// Options: `sslmode` = disable | prefer | require | verify-ca | verify-full, as libpq reads them
/// (prefer and require encrypt without checking the certificate; verify-ca checks it, verify-full
/// also the host name), `sslrootcert` the authorities to check it against. The
/// default is verify-full, except on loopback and unix sockets (prefer): a store reached over a
/// network must not be open to a man in the middle unless the URL says so; `host=/path/to/socket-folder` for a unix socket; `pool_max` (default 10) connections
/// per process; `connect_timeout`: seconds to wait for a connection, at start and for every
/// request (default 5; beyond it the request gets 503).
public struct PostgresLocation: Sendable, Equatable, CustomStringConvertible {
    public enum TLSMode: String, Sendable { case disable, prefer, require, verifyCA = "verify-ca", verifyFull = "verify-full" }

    public var host: String
    public var port: Int
    public var socketFolder: String?
    public var user: String
    public var password: String?
    public var database: String
    public var tls: TLSMode = .verifyFull
    /// A PEM file of the authorities the server's certificate is checked against (`sslrootcert`);
    /// nil: the system's trusted roots.
    public var rootCertificates: String?
    public var poolMax = 10
    public var connectTimeoutSeconds = 5

    /// The URL without the password: safe for logs and messages.
    public var description: String {
        let address = socketFolder.map { "localhost/\($0)" } ?? "\(host):\(port)"
        return "postgres://\(user)@\(address)/\(database)"
    }

    public static func parse(_ url: String) throws -> PostgresLocation {
        func invalid(_ code: String, _ message: String) -> GatehouseError {
            GatehouseError(.invalid, code, message + "; write it like postgres://gatehouse:PASSWORD@db.internal:5432/gatehouse", field: "database")
        }
        if let scheme = GatehouseStore.urlScheme(url), scheme != "postgres", scheme != "postgresql" {
            throw GatehouseError(.invalid, "database_url_invalid", "`\(scheme)://` databases are not supported: use sqlite:PATH (a file) or postgres://USER:PASSWORD@HOST:PORT/DATABASE", field: "database")
        }
        guard let parts = URLComponents(string: url), let scheme = parts.scheme, scheme == "postgres" || scheme == "postgresql" else {
            throw invalid("database_url_invalid", "the database URL is not a valid postgres:// URL (percent-encode special characters in the password)")
        }
        guard let user = parts.user, !user.isEmpty else {
            throw invalid("database_user_missing", "the database URL names no user")
        }
        var location = PostgresLocation(host: parts.host ?? "", port: parts.port ?? 5432, socketFolder: nil, user: user,
                                        password: parts.password, database: String(parts.path.drop { $0 == "/" }))
        if location.database.isEmpty { location.database = user }
        guard (1...65535).contains(location.port) else { throw invalid("database_port_invalid", "the database port \(location.port) is not between 1 and 65535") }
        for item in parts.queryItems ?? [] {
            let value = item.value ?? ""
            switch item.name {
            case "sslmode":
                guard let mode = TLSMode(rawValue: value) else {
                    throw invalid("database_sslmode_invalid", "sslmode '\(value)' is not one of disable, prefer, require, verify-ca, verify-full")
                }
                location.tls = mode
            case "sslrootcert":
                guard FileManager.default.isReadableFile(atPath: value) else {
                    throw invalid("database_sslrootcert_unreadable", "sslrootcert '\(value)' cannot be read; name a PEM file of the certificate authorities to trust")
                }
                location.rootCertificates = value
            case "host":
                guard value.hasPrefix("/") else { throw invalid("database_socket_invalid", "host= in the query names a unix socket folder and must be an absolute path") }
                location.socketFolder = value
            case "pool_max":
                guard let size = Int(value), (1...200).contains(size) else { throw invalid("database_pool_invalid", "pool_max '\(value)' must be a whole number from 1 to 200") }
                location.poolMax = size
            case "connect_timeout":
                guard let seconds = Int(value), (1...300).contains(seconds) else { throw invalid("database_timeout_invalid", "connect_timeout '\(value)' must be seconds from 1 to 300") }
                location.connectTimeoutSeconds = seconds
            default:
                throw invalid("database_option_unknown", "unknown database option '\(item.name)'; the options are sslmode, sslrootcert, host, pool_max and connect_timeout")
            }
        }
        if location.socketFolder == nil, location.host.isEmpty {
            throw invalid("database_host_missing", "the database URL names no host")
        }
        let loopback = location.socketFolder != nil || ["127.0.0.1", "localhost", "::1", "[::1]"].contains(location.host)
        if !(parts.queryItems ?? []).contains(where: { $0.name == "sslmode" }), loopback {
            location.tls = .prefer
        }
        if location.tls == .verifyCA, location.rootCertificates == nil {
            throw invalid("database_sslrootcert_missing", "sslmode=verify-ca needs sslrootcert=PATH: it checks only that a trusted authority signed the certificate, not the name in it, so with the system's authorities any public certificate would pass; or use sslmode=verify-full")
        }
        if location.rootCertificates != nil, location.tls != .verifyFull, location.tls != .verifyCA {
            throw invalid("database_sslrootcert_unused", "sslrootcert is used only to verify the server's certificate: add sslmode=verify-full (or verify-ca); with sslmode=\(location.tls.rawValue) the certificate is not checked")
        }
        return location
    }

    /// libpq's meanings: verify-full checks the certificate and the host name, verify-ca the
    /// certificate only, the others nothing.
    func tlsConfiguration() -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        switch tls {
        case .verifyFull: configuration.certificateVerification = .fullVerification
        case .verifyCA: configuration.certificateVerification = .noHostnameVerification
        default: configuration.certificateVerification = .none
        }
        if let rootCertificates { configuration.trustRoots = .file(rootCertificates) }
        return configuration
    }

    /// One connection outside the pool, made at start so that a wrong password, a missing database
    /// or a refused address is reported in the server's words (the pool would only retry quietly).
    func probe(logger: Logger) async throws {
        var configuration: PostgresConnection.Configuration
        if let socketFolder {
            configuration = .init(unixSocketPath: socketFolder + "/.s.PGSQL.\(port)", username: user, password: password, database: database)
        } else {
            let context = try NIOSSLContext(configuration: tlsConfiguration())
            let mode: PostgresConnection.Configuration.TLS = switch tls {
            case .disable: .disable
            case .prefer: .prefer(context)
            case .require, .verifyCA, .verifyFull: .require(context)
            }
            configuration = .init(host: host, port: port, username: user, password: password, database: database, tls: mode)
        }
        configuration.options.connectTimeout = .seconds(Int64(connectTimeoutSeconds))
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger.quietLibrary)
        try await connection.close()
    }

    func clientConfiguration() -> PostgresClient.Configuration {
        var configuration: PostgresClient.Configuration
        if let socketFolder {
            configuration = .init(unixSocketPath: socketFolder + "/.s.PGSQL.\(port)", username: user, password: password, database: database)
        } else {
            let mode: PostgresClient.Configuration.TLS = switch tls {
            case .disable: .disable
            case .prefer: .prefer(tlsConfiguration())
            case .require, .verifyCA, .verifyFull: .require(tlsConfiguration())
            }
            configuration = .init(host: host, port: port, username: user, password: password, database: database, tls: mode)
        }
        configuration.options.maximumConnections = poolMax
        configuration.options.minimumConnections = 1
        configuration.options.connectTimeout = .seconds(connectTimeoutSeconds)
        configuration.options.additionalStartupParameters = [
            ("application_name", "gatehouse"),
            // A statement or lock wait that runs this long fails (503, rolled back) instead of
            // holding a request forever; a transaction left idle (a stopped process) is ended.
            ("statement_timeout", "15s"),
            ("lock_timeout", "10s"),
            ("idle_in_transaction_session_timeout", "30s"),
        ]
        return configuration
    }
}

/// The store on PostgreSQL, for several Gatehouse instances on one database. Connections come from
/// PostgresNIO's pool. Every write transaction first takes one transaction-scoped advisory lock:
/// each state change appends to the one audit chain in the same transaction, so writes are totally
/// ordered anyway, and taking the chain's lock first makes every read-then-write inside them (one
/// grant per approval, the GCRA rate-limit state, the chain head) as safe as on the single SQLite
/// writer, across every instance. The lock is the database's: a crashed instance's transaction is
/// rolled back and its lock released by the server.
final class PostgresBackend: StoreBackend {
    /// pg_advisory_xact_lock key of the write lock ("gatehous" in ASCII).
    static let writeLockKey: Int64 = 0x6761_7465_686F_7573

    private let client: PostgresClient
    private let runner: Task<Void, Never>
    private let location: PostgresLocation
    /// Set when a connection could not be had in time; while set, callers wait at most a second, so
    /// clients hear 503 at once instead of each waiting out the full deadline. Cleared by any success.
    private let unreachable = Atomic<Bool>(false)
    /// Writes are serialized by the database anyway; queueing them here first keeps waiting writers
    /// from holding pool connections that checks need.
    private let writeQueue = AsyncLock()
    /// How long a write waits for its turn before the caller hears store_busy.
    private let writeWait: Duration

    private init(client: PostgresClient, runner: Task<Void, Never>, location: PostgresLocation, writeWait: Duration) {
        self.client = client
        self.runner = runner
        self.location = location
        self.writeWait = writeWait
    }

    static func open(_ location: PostgresLocation, writeWait: Duration = .seconds(15), logger: Logger) async throws -> PostgresBackend {
        do {
            try await location.probe(logger: logger)
        } catch {
            throw GatehouseError(.unavailable, "store_unreachable",
                                 "cannot use the PostgreSQL database \(location): \(Self.explain(error, host: location.host)); check that the server is running and the address, user, password and database are right")
        }
        let client = PostgresClient(configuration: location.clientConfiguration(), backgroundLogger: logger.quietLibrary)
        // Started at once, on this thread up to its first suspension: run() marks the client running before
        // that, so the first lease below does not find it idle (PostgresNIO then logs a warning at every start).
        let runner = Task.immediate { await client.run() }
        let backend = PostgresBackend(client: client, runner: runner, location: location, writeWait: writeWait)
        do {
            try await backend.leased(wait: .seconds(location.connectTimeoutSeconds)) { connection in
                try await connection.sql().raw("SELECT 1 AS one").run()
            }
        } catch {
            await backend.close()
            throw GatehouseError(.unavailable, "store_unreachable",
                                 "cannot use the PostgreSQL database \(location): \(Self.explain(error, host: location.host)); check that the server is running and the address, user, password and database are right")
        }
        return backend
    }

    /// What went wrong, in the server's words when it said something, without the query or its values.
    static func explain(_ error: any Error, host: String = "") -> String {
        if let gatehouse = error as? GatehouseError { return gatehouse.message }
        if let tls = TLSFailure.explain(String(reflecting: error), host: host) { return tls }
        guard let psql = error as? PSQLError else { return "\(type(of: error))" }
        if psql.code == .sslUnsupported {
            return "the server does not offer TLS, and sslmode asks for it (turn on ssl in postgresql.conf, or use sslmode=prefer on a trusted network)"
        }
        if let message = psql.serverInfo?[.message] {
            return message + (psql.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? "")
        }
        if let underlying = psql.underlying { return "\(psql.code): \(underlying)" }
        return "\(psql.code)"
    }

    func check() throws {}

    func ping() async -> Bool {
        do {
            return try await leased(wait: .seconds(2)) { try await $0.sql().raw("SELECT 1 AS one").first() != nil }
        } catch {
            return false
        }
    }

    func close() async {
        runner.cancel()
        await runner.value
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (StoreSession) async throws -> T) async throws -> T {
        do {
            return try await writeQueue.withLock(wait: writeWait) { try await self.transaction(body) }
        } catch is AsyncLock.Timeout {
            throw GatehouseError(.unavailable, "store_busy", "the store is busy (a write waited \(writeWait) for its turn); nothing was changed, try again shortly")
        }
    }

    /// A migration: the same transaction, without the statement time limit (`SET LOCAL`) and without the
    /// watchdog that answers a caller whose transaction seems stuck. An index build on a large table may
    /// take minutes; cut off, it would be rolled back and the server would not start.
    func migrate<T: Sendable>(_ body: @escaping @Sendable (StoreSession) async throws -> T) async throws -> T {
        try await writeQueue.withLock(wait: writeWait) {
            try await self.transaction(bounded: false) { session in
                try await session.db.raw("SET LOCAL statement_timeout = 0").run()
                return try await body(session)
            }
        }
    }

    private func transaction<T: Sendable>(bounded: Bool = true, _ body: @escaping @Sendable (StoreSession) async throws -> T) async throws -> T {
        try await leased(wait: .seconds(location.connectTimeoutSeconds), watched: bounded) { connection in
            let db = connection.sql()
            // READ COMMITTED whatever the database's default: each statement after the lock sees
            // everything committed before the lock was granted.
            try await db.raw("BEGIN ISOLATION LEVEL READ COMMITTED").run()
            do {
                try await db.raw("SELECT pg_advisory_xact_lock(\(bind: Self.writeLockKey))").run()
                let result = try await body(StoreSession(db: db))
                do {
                    try await db.raw("COMMIT").run()
                } catch {
                    try? await connection.close()
                    throw GatehouseError(.unavailable, "store_outcome_unknown", "the database connection failed while committing: the change may or may not have been made; look it up (`gatehouse requests`, `gatehouse show ID`) before trying again")
                }
                return result
            } catch let error as GatehouseError where error.code == ErrorCode.storeOutcomeUnknown {
                throw error
            } catch {
                // A connection that cannot roll back is closed: the server then rolls back for it,
                // and the pool never hands out a connection stuck inside a transaction.
                do { try await db.raw("ROLLBACK").run() } catch { try? await connection.close() }
                throw error
            }
        }
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (StoreSession) async throws -> T) async throws -> T {
        try await leased(wait: .seconds(location.connectTimeoutSeconds)) { connection in
            try await body(StoreSession(db: connection.sql()))
        }
    }

    /// Runs `body` on a pooled connection; when none can be had within `wait` (the database is
    /// down, or every connection is busy), gives up with 503 instead of queueing forever. Only the
    /// wait for a connection is cut short: once `body` has started it runs to its end (the server's
    /// statement and lock timeouts bound it). The lease runs in a task of its own, not a child task:
    /// the pool does not always give up a pending lease at once when cancelled (while it is opening
    /// a connection to a server that is starting, say), and the caller must not wait for that.
    /// `watched: false` (migrations): once started, the body is waited for however long it takes.
    private func leased<T: Sendable>(wait: Duration, watched: Bool = true, _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let wait = unreachable.load(ordering: .relaxed) ? min(wait, .seconds(1)) : wait
        let gate = LeaseGate()
        let client = self.client
        let location = self.location
        let stuckAfter = Duration.seconds(4 * self.location.connectTimeoutSeconds)
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let answer = Once(continuation)
            // The timer ends as soon as the work does: one sleeping task per lease, not one per lease
            // that outlives it by `wait + stuckAfter`.
            let deadline = Deadline()
            let work = Task {
                do {
                    let value = try await client.withConnection { connection in
                        guard gate.start() else { throw CancellationError() }
                        return try await body(connection)
                    }
                    self.unreachable.store(false, ordering: .relaxed)
                    deadline.cancel()
                    answer.resume(with: .success(value))
                } catch {
                    // A lease that failed before it started leaves the timer running: at `wait` it marks
                    // the server unreachable, so the next callers give up sooner.
                    if gate.hasStarted { deadline.cancel() }
                    answer.resume(with: .failure(error))
                }
            }
            deadline.arm(after: wait) {
                guard gate.expire() else {
                    guard watched else { return }
                    // Started: a body that has not ended long after the server's own timeouts would
                    // have is stuck on a connection that is gone. Answer the caller (the write queue
                    // moves on); whatever the body did is rolled back by the server, or committed.
                    do { try await Task.sleep(for: stuckAfter) } catch { return }
                    answer.resume(with: .failure(GatehouseError(.unavailable, ErrorCode.storeOutcomeUnknown, "the database stopped answering during this change (\(location)); it may or may not have been made: look it up before trying again")))
                    return
                }
                self.unreachable.store(true, ordering: .relaxed)
                work.cancel()
                answer.resume(with: .failure(GatehouseError(.unavailable, ErrorCode.storeUnavailable, "no database connection within \(wait) (\(location) is down or overloaded); nothing was changed, try again shortly")))
            }
        }
    }
}

/// Resumes a continuation once; later answers are dropped.
private final class Once<T: Sendable>: Sendable {
    private let continuation: Mutex<CheckedContinuation<T, any Error>?>
    init(_ continuation: CheckedContinuation<T, any Error>) { self.continuation = Mutex(continuation) }
    func resume(with result: Result<T, any Error>) {
        continuation.withLock { pending in
            pending?.resume(with: result)
            pending = nil
        }
    }
}

/// Decides, once, whether a lease started before its deadline or the deadline came first.
private final class LeaseGate: Sendable {
    private enum State { case waiting, started, expired }
    private let state = Mutex(State.waiting)

    func start() -> Bool {
        state.withLock { state in
            guard state == .waiting else { return false }
            state = .started
            return true
        }
    }

    func expire() -> Bool {
        state.withLock { state in
            guard state == .waiting else { return false }
            state = .expired
            return true
        }
    }

    var hasStarted: Bool { state.withLock { $0 == .started } }
}

extension GatehouseStore {
    /// A database error in words: PostgreSQL's own message and SQLSTATE (PostgresNIO describes its errors
    /// as "Generic description to prevent accidental leakage"), SQLite's message; never the query's values.
    public static func explain(_ error: any Error) -> String {
        error is PSQLError || error is GatehouseError ? PostgresBackend.explain(error) : "\(error)"
    }

    /// Whether `error` is PostgreSQL's own, as it reached the caller.
    public static func isDatabaseError(_ error: any Error) -> Bool { error is PSQLError }

    /// Whether the PostgreSQL server answered with an error (not a connection that failed or was cancelled).
    static func isDatabaseAnswer(_ error: any Error) -> Bool { (error as? PSQLError)?.serverInfo?[.message] != nil }
}
