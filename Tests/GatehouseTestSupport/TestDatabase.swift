import Foundation
import GatehouseCore
import GatehouseStore
import Logging
import PostgresNIO
import SQLKit
import SQLiteKit
import PostgresKit

/// The database a test server stores into. The test command runs the server tests twice: on SQLite
/// files, then with `GATEHOUSE_TEST_STORE=postgres` on fresh databases in the throwaway PostgreSQL
/// server it started (`GATEHOUSE_TEST_POSTGRES` is its URL).
public enum TestDatabase: Sendable {
    case sqlite(path: String)
    case postgres(url: String)

    public enum Kind: String, Sendable, CaseIterable { case sqlite, postgres }

    public static var configuredKind: Kind {
        ProcessInfo.processInfo.environment["GATEHOUSE_TEST_STORE"] == "postgres" ? .postgres : .sqlite
    }

    /// The throwaway server's URL; without it, tests that need PostgreSQL fail and say how to run them.
    public static func postgresServerURL() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["GATEHOUSE_TEST_POSTGRES"], !url.isEmpty else {
            throw TestFailure("no PostgreSQL server for this test: run the whole suite with scripts/test.sh, which starts one and sets GATEHOUSE_TEST_POSTGRES")
        }
        return url
    }

    /// A new, empty database of `kind`; SQLite files go into `folder`.
    public static func fresh(_ kind: Kind, folder: URL) async throws -> TestDatabase {
        switch kind {
        case .sqlite:
            return .sqlite(path: folder.appendingPathComponent("gatehouse.db").path)
        case .postgres:
            let server = try postgresServerURL()
            let name = "gh_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            try await withConnection(server) { try await $0.sql().raw("CREATE DATABASE \(unsafeRaw: name)").run() }
            guard var parts = URLComponents(string: server) else { throw TestFailure("GATEHOUSE_TEST_POSTGRES is not a URL: \(server)") }
            parts.path = "/" + name
            return .postgres(url: parts.string ?? server)
        }
    }

    public var url: String {
        switch self {
        case .sqlite(let path): "sqlite:\(path)"
        case .postgres(let url): url
        }
    }

    public func open(logger: Logger) async throws -> GatehouseStore {
        switch self {
        // Every test server of a run shares one process and its two cooperative threads with the others, so
        // a write can wait for CPU far longer than in a server of its own: the writer's turn is given 25 s
        // (the defaults are 10 s on SQLite and 15 s on PostgreSQL; WriterQueueTests checks a short one), under the test client's 30 s.
        case .sqlite(let path): try await GatehouseStore.openSQLite(path: path, writeWait: .seconds(25), logger: logger)
        case .postgres(let url): try await GatehouseStore.open(url: url, writeWait: .seconds(25), logger: logger)
        }
    }

    /// Removes a PostgreSQL test database (SQLite files go with their folder).
    public func drop() async {
        guard case .postgres(let url) = self, let server = try? Self.postgresServerURL(),
              let name = URLComponents(string: url)?.path.dropFirst(), name.hasPrefix("gh_") else { return }
        try? await Self.withConnection(server) { try await $0.sql().raw("DROP DATABASE IF EXISTS \(unsafeRaw: String(name)) WITH (FORCE)").run() }
    }

    /// Runs SQL on the database behind the store's back, as someone with direct access would.
    public func tamper(_ query: SQLQueryString) async throws {
        switch self {
        case .sqlite(let path):
            let connection = try await SQLiteConnection.open(storage: .file(path: path))
            do { try await connection.sql().raw(query).run() } catch {
                try await connection.close()
                throw error
            }
            try await connection.close()
        case .postgres(let url):
            try await Self.withConnection(url) { try await $0.sql().raw(query).run() }
        }
    }

    /// As `once`, tried again a few times when the server answers with a passing condition (too many connections,
    /// an object in use by another session, a deadlock or serialization failure: the whole suite shares one server),
    /// and with PostgreSQL's own words in the error when it fails (PSQLError's description hides them).
    public static func withConnection<T: Sendable>(_ url: String, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        for attempt in 1...6 {
            do {
                return try await once(url, body)
            } catch let error as PSQLError {
                let state = error.serverInfo?[.sqlState] ?? ""
                guard attempt < 6, ["53300", "55006", "40001", "40P01", "57P03"].contains(state) || error.code == .connectionError else {
                    throw TestFailure("PostgreSQL (\(state.isEmpty ? "\(error.code)" : state)): \(error.serverInfo?[.message] ?? String(reflecting: error))")
                }
                try await Task.sleep(for: .milliseconds(300 * attempt))
            }
        }
        throw TestFailure("unreachable")
    }

    private static func once<T: Sendable>(_ url: String, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        let location = try PostgresLocation.parse(url)
        let configuration = PostgresConnection.Configuration(host: location.host, port: location.port, username: location.user,
                                                             password: location.password, database: location.database, tls: .disable)
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: Logger(label: "gatehouse-test-pg"))
        do {
            let result = try await body(connection)
            try await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }
}
