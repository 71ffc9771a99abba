import Foundation
import GatehouseCore
import GatehouseStore
import GatehouseTestSupport
import Logging
import Testing

@Suite("PostgreSQL store: URLs and start-up errors")
struct PostgresStoreTests {
    @Test("database URLs are read as libpq reads them; mistakes say what to write", arguments: [
        ("postgres://127.0.0.1/db", "database_user_missing"),
        ("postgres://u@h:99999/db", "database_port_invalid"),
        ("postgres://u@h/db?sslmode=maybe", "database_sslmode_invalid"),
        ("postgres://u@h/db?host=relative/dir", "database_socket_invalid"),
        ("postgres://u@h/db?pool_max=0", "database_pool_invalid"),
        ("postgres://u@h/db?connect_timeout=never", "database_timeout_invalid"),
        ("postgres://u@h/db?sslcert=x", "database_option_unknown"),
        ("mysql://u@h/db", "database_url_invalid"),
        ("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem", "database_sslrootcert_unreadable"),
        ("postgres://u@h/db?sslmode=require&sslrootcert=/etc/hostname", "database_sslrootcert_unused"),
        ("postgres://u@127.0.0.1/db?sslrootcert=/etc/hostname", "database_sslrootcert_unused"),
        ("postgres://u@h/db?sslmode=verify-ca", "database_sslrootcert_missing"),
    ])
    func badURLs(url: String, code: String) {
        do {
            _ = try PostgresLocation.parse(url)
            Issue.record("\(url) was accepted")
        } catch let error as GatehouseError {
            #expect(error.code == code, "\(url): \(error.code) \(error.message)")
            #expect(error.message.contains("postgres://"), "\(error.message)")
        } catch {
            Issue.record("\(url): \(error)")
        }
    }

    @Test("a database holding another program's table of a name Gatehouse uses: the migration says which failed and PostgreSQL's words")
    func foreignTable() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gatehouse-foreign-\(UUID().uuidString)")
        let database = try await TestDatabase.fresh(.postgres, folder: folder)
        try await database.tamper("CREATE TABLE tokens (x int)")
        do {
            let store = try await database.open(logger: Logger(label: "test"))
            await store.close()
            Issue.record("a database with a foreign tokens table was migrated")
        } catch let error as GatehouseError {
            #expect(error.code == "migration_failed" && error.message.hasPrefix("schema migration ") && error.message.contains("SQLSTATE")
                    && !error.message.contains("Generic description"), "\(error.message)")
        }
        await database.drop()
    }

    @Test("a database URL of another scheme, or sqlite://NAME, is refused saying what to write (sqlite://x.db made /x.db)")
    func otherSchemes() async throws {
        // `file:x.db` is a URI to SQLite (it opened x.db, but the one-process lock was taken on another name), and
        // `postgres:/db` a mistyped URL taken as a file name: both refused, saying what to write.
        for (url, code) in [("mysql://u@h/db", "database_url_invalid"), ("sqlite://x.db", "store_path_invalid"), ("file:x.db", "store_path_invalid"),
                            ("sqlite:file:x.db", "store_path_invalid"), ("postgres:/db", "store_path_invalid")] {
            do {
                let store = try await GatehouseStore.open(url: url)
                await store.close()
                Issue.record("\(url) was opened")
            } catch let error as GatehouseError {
                #expect(error.code == code && (error.message.contains("sqlite:") ), "\(url): \(error.code) \(error.message)")
            }
        }
        #expect(!FileManager.default.fileExists(atPath: "/x.db"))
        #expect(GatehouseStore.sqliteFile(of: "mysql://u@h/db") == nil && GatehouseStore.sqliteFile(of: "file:///tmp/g.db") == "file:///tmp/g.db")
    }

    @Test("a URL's parts, defaults and options; the password never shows")
    func goodURL() throws {
        let location = try PostgresLocation.parse("postgresql://gate%40house:p%2Fss@db.internal:6432/access?sslmode=verify-full&pool_max=4&connect_timeout=3")
        #expect(location.user == "gate@house" && location.password == "p/ss" && location.host == "db.internal" && location.port == 6432)
        #expect(location.database == "access" && location.tls == .verifyFull && location.poolMax == 4 && location.connectTimeoutSeconds == 3)
        #expect(!location.description.contains("p/ss") && !location.description.contains("p%2Fss"))
        let socket = try PostgresLocation.parse("postgres://gatehouse@/gatehouse?host=/run/postgresql")
        #expect(socket.socketFolder == "/run/postgresql" && socket.port == 5432 && socket.tls == .prefer)
        #expect(try PostgresLocation.parse("postgres://gatehouse@localhost").database == "gatehouse")
        // Over a network, the certificate is checked unless the URL says otherwise.
        #expect(try PostgresLocation.parse("postgres://gatehouse@db.internal/gatehouse").tls == .verifyFull)
        #expect(try PostgresLocation.parse("postgres://gatehouse@127.0.0.1/gatehouse").tls == .prefer)
        #expect(try PostgresLocation.parse("postgres://gatehouse@db.internal/gatehouse?sslmode=disable").tls == .disable)
        let ca = try PostgresLocation.parse("postgres://gatehouse@db.internal/gatehouse?sslmode=verify-ca&sslrootcert=/etc/hostname")
        #expect(ca.tls == .verifyCA && ca.rootCertificates == "/etc/hostname")
        #expect(try PostgresLocation.parse("postgres://gatehouse@db.internal/gatehouse?sslrootcert=/etc/hostname").tls == .verifyFull)
    }

    @Test("start-up against a wrong password, a missing database or a closed port fails at once with the reason")
    func startErrors() async throws {
        let server = try TestDatabase.postgresServerURL()
        var parts = try #require(URLComponents(string: server))
        parts.password = "not-the-password"
        var cases = [(parts.string!, "password authentication failed")]
        parts = try #require(URLComponents(string: server))
        parts.path = "/no_such_database"
        cases.append((parts.string!, "does not exist"))
        parts.port = try TestPorts.free()
        cases.append((parts.string!, "refused"))
        for (url, reason) in cases {
            do {
                let store = try await GatehouseStore.open(url: url)
                await store.close()
                Issue.record("\(url) opened")
            } catch let error as GatehouseError {
                #expect(error.code == "store_unreachable")
                #expect(error.message.contains(reason), "\(error.message)")
                #expect(!error.message.contains("not-the-password"))
            }
        }
    }
}
