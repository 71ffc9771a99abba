import Foundation
import GatehouseCore
import GatehouseStore
import GatehouseTestSupport
import Testing

@Suite("One process per SQLite file")
struct SingleProcessTests {
    @Test("a second store on the same SQLite file is refused with a clear error")
    func secondStoreRefused() async throws {
        try await TestServer.with(store: .sqlite) { server in
            do {
                let second = try await GatehouseStore.openSQLite(path: server.databasePath)
                await second.close()
                Issue.record("a second store opened the same file")
            } catch let error as GatehouseError {
                #expect(error.code == "store_in_use")
                #expect(error.message.contains("another Gatehouse process"))
            }
            // Another name of the same file (a link, a detour through `..`) is the same file, and the same lock.
            let link = server.folder.appendingPathComponent("link.db").path
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: server.databasePath)
            let detour = server.folder.appendingPathComponent("sub").path
            try FileManager.default.createDirectory(atPath: detour, withIntermediateDirectories: true)
            for other in [link, detour + "/../gatehouse.db", "sqlite:" + link] {
                do {
                    let second = try await GatehouseStore.open(url: other)
                    await second.close()
                    Issue.record("a second store opened the same file as \(other)")
                } catch let error as GatehouseError {
                    #expect(error.code == "store_in_use", "\(other): \(error.code) \(error.message)")
                }
            }
            // The first server is unaffected.
            #expect(try await server.ready().status == 200)
        }
    }

    /// A file this user may read and not write opened, and every write then failed (503) while the server
    /// said it was ready: refused at start. Run as an unprivileged user (root may write any file).
    @Test("a database file the server's user may not write is refused at start, saying so")
    func readOnlyFileRefused() async throws {
        let folder = try TemporaryFolder.make("gatehouse-ro")
        defer { TemporaryFolder.remove(folder) }
        let database = folder.appendingPathComponent("ro.db").path
        let store = try await GatehouseStore.openSQLite(path: database)
        await store.close()
        // Made by root: the lock file and the journal's, which the server's user would not be allowed to open.
        for leftover in [".lock", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: database + leftover) }
        let policy = folder.appendingPathComponent("policy.yaml").path
        try TestServer.policyYAML.write(toFile: policy, atomically: true, encoding: .utf8)
        // The folder is the server user's (its lock file and journal go there); the database file is not theirs to write.
        chown(folder.path, 65534, 65534)
        for path in [database, policy] { chmod(path, 0o444) }
        let result = try await Command.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", try ServeProcess.binary().path,
                                                                "serve", "--policy", policy, "--database", "sqlite:" + database, "--port", "\(try TestPorts.free())"],
                                           environment: ["GATEHOUSE_ADMIN_TOKEN": TestServer.adminToken])
        #expect(result.status != 0, "\(result)")
        #expect(result.stderr.contains("cannot write the SQLite database") && result.stderr.contains("read-only for this user"), "\(result)")
    }
}
