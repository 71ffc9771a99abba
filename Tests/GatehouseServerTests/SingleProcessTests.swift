import Foundation
import GatehouseCore
import GatehouseStore
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
            // The first server is unaffected.
            #expect(try await server.ready().status == 200)
        }
    }
}
