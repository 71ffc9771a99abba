import Foundation
import GatehouseCore
import GatehouseTestSupport
import Testing

/// Nobody locks everyone out: the last credential an admin can use cannot be revoked, and a start
/// whose GATEHOUSE_ADMIN_TOKEN no longer works says why.
@Suite("Admin lock-out")
struct LockOutTests {
    @Test("the last admin credential cannot be revoked (the bootstrap token, then the last admin's token); with another admin it can")
    func lastAdminCredential() async throws {
        try await TestServer.with { server in
            let tokens = try await server.listTokens(TestServer.adminToken).json["tokens"] as? [[String: Any]] ?? []
            let bootstrap = try #require(tokens.first { $0["principal"] as? String == "admin" }?["id"] as? String)
            let refused = try await server.revokeToken(TestServer.adminToken, bootstrap)
            #expect(refused.status == 409)
            #expect(refused.string("code") == "last_admin_credential")
            #expect(try await server.whoami(TestServer.adminToken).status == 200, "nothing was revoked")
            // erin is in `security`, an admin group: with her token, the bootstrap token may go.
            let erin = try await server.token(for: "erin")
            #expect(try await server.revokeToken(erin, bootstrap).status == 200)
            let erinID = try #require((try await server.listTokens(erin).json["tokens"] as? [[String: Any]] ?? [])
                .first { $0["principal"] as? String == "erin" }?["id"] as? String)
            #expect(try await server.revokeToken(erin, erinID).string("code") == "last_admin_credential")
            #expect(try await server.revokeSessions(erin, "erin").string("code") == "last_admin_credential")
            #expect(try await server.whoami(erin).status == 200)
        }
    }

    @Test("a restart whose GATEHOUSE_ADMIN_TOKEN was revoked, or is not the first start's value, says so in its log")
    func startSaysWhy() async throws {
        let folder = try TemporaryFolder.make("gatehouse-lockout")
        defer { TemporaryFolder.remove(folder) }
        let policyPath = folder.appendingPathComponent("policy.yaml").path
        try TestServer.policyYAML.write(toFile: policyPath, atomically: true, encoding: .utf8)
        let database = "sqlite:" + folder.appendingPathComponent("g.db").path
        let first = try await ServeProcess.start(policyPath: policyPath, database: database, folder: folder, name: "first")
        let erin: String
        do { erin = try await first.token(for: "erin") } catch {
            await first.stop()
            throw error
        }
        await first.stop()
        // Another value than the first start's: it is refused, and the log says why.
        let second = try await ServeProcess.start(policyPath: policyPath, database: database, folder: folder, name: "second",
                                                  environment: ["GATEHOUSE_ADMIN_TOKEN": "another-admin-token-0123456789"])
        do {
            #expect(try await second.whoami("another-admin-token-0123456789").status == 401)
            let tokens = try await second.listTokens(erin).json["tokens"] as? [[String: Any]] ?? []
            let bootstrap = try #require(tokens.first { $0["principal"] as? String == "admin" }?["id"] as? String)
            #expect(try await second.revokeToken(erin, bootstrap).status == 200)
        } catch {
            await second.stop()
            throw error
        }
        await second.stop()
        #expect(second.output.contains("not the bootstrap admin's token"), "\(second.output)")
        // The first start's value, revoked since.
        let third = try await ServeProcess.start(policyPath: policyPath, database: database, folder: folder, name: "third")
        #expect(try await third.whoami(TestServer.adminToken).status == 401)
        await third.stop()
        #expect(third.output.contains("the bootstrap admin token was revoked by erin"), "\(third.output)")
    }
}
