import Foundation
import GatehouseCore
import GatehouseTestSupport
import Testing

/// Every command with `--output json` prints one JSON value on stdout, whether it succeeds or fails,
/// and failures have one shape (`error`, `code`; `status` and `field` when the server refused).
@Suite("CLI: --output json everywhere", .serialized)
struct CLIJSONTests {
    struct Run {
        var result: CommandResult
        var json: Any?
        var object: [String: Any] { json as? [String: Any] ?? [:] }
    }

    /// `gatehouse ARGUMENTS --output json` as `token`'s holder: stdout must be exactly one JSON value.
    /// `report`: the command's failure is its own report (policy check), not an error object.
    static func run(_ server: TestServer, _ token: String, _ arguments: [String], expect status: Int32, report: Bool = false,
                    sourceLocation: SourceLocation = #_sourceLocation) async throws -> Run {
        let result = try await Command.run(try ServeProcess.binary().path, arguments + ["--output", "json"],
                                           environment: ["GATEHOUSE_URL": server.baseURL, "GATEHOUSE_TOKEN": token])
        let json = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8), options: [.fragmentsAllowed])
        #expect(json != nil, "\(arguments): stdout is not one JSON value: \(result)", sourceLocation: sourceLocation)
        #expect(result.status == status, "\(arguments): \(result)", sourceLocation: sourceLocation)
        if !report, result.status != 0, result.status < 3, let object = json as? [String: Any] {
            #expect(object["error"] is String && object["code"] is String, "\(arguments): the error shape: \(result.stdout)", sourceLocation: sourceLocation)
            #expect(!(object["error"] as? String ?? "").hasPrefix("Error:"), sourceLocation: sourceLocation)
            #expect(result.stderr.hasPrefix("error"), "\(arguments): \(result.stderr)", sourceLocation: sourceLocation)
        }
        return Run(result: result, json: json)
    }

    @Test func everyCommand() async throws {
        try await TestServer.with { server in
            let admin = TestServer.adminToken
            let tokens = try await server.tokens("alice", "bob", "carol", "erin")
            let (alice, carol, erin) = (tokens["alice"]!, tokens["carol"]!, tokens["erin"]!)

            _ = try await Self.run(server, alice, ["whoami"], expect: 0)
            let made = try await Self.run(server, admin, ["token", "create", "deploy-bot"], expect: 0)
            _ = try await Self.run(server, admin, ["token", "list"], expect: 0)
            _ = try await Self.run(server, admin, ["token", "revoke", try #require(made.object["id"] as? String)], expect: 0)

            let filed = try await Self.run(server, alice, ["request", "prod-db", "--role", "write", "--for", "30m", "--reason", "INC-4411 fix stuck migration"], expect: 0)
            let requestID = try #require(filed.object["id"] as? String, "\(filed.result)")
            _ = try await Self.run(server, alice, ["requests"], expect: 0)
            _ = try await Self.run(server, carol, ["requests", "--to-approve"], expect: 0)
            _ = try await Self.run(server, alice, ["show", requestID], expect: 0)
            let approved = try await Self.run(server, carol, ["approve", requestID, "--comment", "ok"], expect: 0)
            let grantID = try #require((approved.object["grant"] as? [String: Any])?["id"] as? String ?? approved.object["grant_id"] as? String, "\(approved.result)")
            _ = try await Self.run(server, alice, ["grants", "--active"], expect: 0)
            _ = try await Self.run(server, alice, ["check", "prod-db", "--role", "write"], expect: 0)
            _ = try await Self.run(server, alice, ["check", "prod-db", "--sql", "DELETE FROM orders"], expect: 3)
            _ = try await Self.run(server, alice, ["classify", "SELECT 1"], expect: 0)
            _ = try await Self.run(server, alice, ["classify", "DROP TABLE orders"], expect: 5)
            let categories = try await Self.run(server, alice, ["classify", "--categories"], expect: 0)
            #expect((categories.object["categories"] as? [[String: Any]])?.contains { $0["name"] as? String == "drop_table" } == true)
            _ = try await Self.run(server, alice, ["release", grantID], expect: 0)

            let second = try await Self.run(server, alice, ["request", "prod-db", "--role", "write", "--for", "30m", "--reason", "INC-4412 second look at it"], expect: 0)
            let secondID = try #require(second.object["id"] as? String)
            _ = try await Self.run(server, carol, ["deny", secondID, "--reason", "not now"], expect: 0)
            let third = try await Self.run(server, alice, ["request", "prod-db", "--role", "write", "--for", "30m", "--reason", "INC-4413 third look at it"], expect: 0)
            _ = try await Self.run(server, alice, ["cancel", try #require(third.object["id"] as? String)], expect: 0)
            let sql = try await Self.run(server, alice, ["request", "prod-db", "--sql", "DELETE FROM orders WHERE id = 7", "--reason", "INC-4414 remove the test order"], expect: 0)
            _ = try await Self.run(server, carol, ["report", try #require(sql.object["id"] as? String), "--comment", "not a real incident"], expect: 0)
            _ = try await Self.run(server, erin, ["principals", "--blocked"], expect: 0)
            _ = try await Self.run(server, erin, ["unblock", "alice"], expect: 0)
            _ = try await Self.run(server, erin, ["audit", "--since", "1h"], expect: 0)
            _ = try await Self.run(server, erin, ["audit", "verify"], expect: 0)
            _ = try await Self.run(server, erin, ["policy", "reload"], expect: 0)
            _ = try await Self.run(server, erin, ["webhooks"], expect: 0)
            _ = try await Self.run(server, erin, ["sessions"], expect: 0)
            _ = try await Self.run(server, erin, ["break-glass", "list"], expect: 0)
            _ = try await Self.run(server, erin, ["grants", "--all"], expect: 0)

            // Refusals and mistakes, in the same shape.
            let refused = try await Self.run(server, alice, ["revoke", grantID, "--reason", "x"], expect: 1)
            #expect(refused.object["status"] as? Int == 403, "\(refused.result)")
            let missing = try await Self.run(server, alice, ["show", "req_doesnotexist"], expect: 1)
            #expect(missing.object["status"] as? Int == 404 || missing.object["status"] as? Int == 400, "\(missing.result)")
            let usage = try await Self.run(server, alice, ["request"], expect: 2)
            #expect(usage.object["code"] as? String == "usage")
            // One line, naming what is missing and where help is (not ArgumentParser's usage block).
            #expect(usage.result.stderr.split(separator: "\n").count == 1 && usage.result.stderr.contains("Missing expected argument")
                    && usage.result.stderr.contains("'gatehouse request --help'"), "\(usage.result.stderr)")
            #expect((usage.object["error"] as? String)?.contains("\n") == false, "\(usage.result)")
            // An empty id would make a path another operation answers (`/v1/requests//approve`): refused before it is sent.
            for arguments in [["show", ""], ["approve", ""], ["revoke", "", "--reason", "x"], ["token", "revoke", ""], ["unblock", ""]] {
                let empty = try await Self.run(server, erin, arguments, expect: 2)
                #expect(empty.object["code"] as? String == "usage" && (empty.object["error"] as? String)?.contains("is empty") == true, "\(arguments): \(empty.result)")
            }
            // Break-glass the policy does not allow is denied by the policy: exit 4, as a role one may not request.
            let glass = try await Self.run(server, alice, ["break-glass", "prod-db", "--role", "write", "--reason", "INC-1 outage now"], expect: 4)
            #expect(["break_glass_disabled", "not_allowed_break_glass"].contains(glass.object["code"] as? String ?? ""), "\(glass.result)")

            // Local commands.
            let noText = try await Self.run(server, alice, ["classify", "--policy", server.policyPath], expect: 2)
            #expect((noText.object["error"] as? String) == "give the text to classify as an argument, or with --file PATH (- for standard input)", "\(noText.result)")
            // A file that cannot be read is an error (1), not a wrong command line (2).
            let noFile = try await Self.run(server, alice, ["classify", "--policy", server.policyPath, "--file", "/nonexistent/x.sql"], expect: 1)
            #expect((noFile.object["error"] as? String) == "cannot read /nonexistent/x.sql: there is no such file", "\(noFile.result)")
            let policy = try await Self.run(server, alice, ["policy", "check", server.policyPath], expect: 0)
            #expect(policy.object["valid"] as? Bool == true && policy.object["principals"] as? Int == 7, "\(policy.result)")
            let broken = server.folder.appendingPathComponent("broken.yaml").path
            try "version: 1\nprincipals: {alice: {groups: [x]}}\nresources: {}\nbogus: 1\n".write(toFile: broken, atomically: true, encoding: .utf8)
            let invalid = try await Self.run(server, alice, ["policy", "check", broken], expect: 1, report: true)
            #expect(invalid.object["valid"] as? Bool == false && ((invalid.object["problems"] as? [[String: Any]])?.first?["line"] as? Int) == 4, "\(invalid.result)")
            // A reload the server refuses fails like every command: the answer's object with error and code,
            // one line on stderr; in text, the problems on stdout and the same line.
            let running = try String(contentsOfFile: server.policyPath, encoding: .utf8)
            try server.writePolicy(running + "bogus: 1\n")
            let refusedReload = try await Self.run(server, erin, ["policy", "reload"], expect: 1)
            #expect(refusedReload.object["reloaded"] as? Bool == false && !((refusedReload.object["problems"] as? [String]) ?? []).isEmpty, "\(refusedReload.result)")
            #expect(refusedReload.result.stderr == "error: policy NOT reloaded; the running policy is kept\n", "\(refusedReload.result)")
            let text = try await Command.run(try ServeProcess.binary().path, ["policy", "reload"], environment: ["GATEHOUSE_URL": server.baseURL, "GATEHOUSE_TOKEN": erin])
            #expect(text.status == 1 && text.stdout.contains("policy.yaml:") && text.stderr == "error: policy NOT reloaded; the running policy is kept\n", "\(text)")
            try server.writePolicy(running)
            let home = server.folder.appendingPathComponent("home").path
            let logout = try await Command.run(try ServeProcess.binary().path, ["logout", "--output", "json"], environment: ["HOME": home])
            #expect(logout.status == 0 && (try? JSONSerialization.jsonObject(with: Data(logout.stdout.utf8))) != nil, "\(logout)")
        }
    }

    /// The CLI and the server agree on sizes: a SQL text the classifier parses (up to 128 KiB) reaches
    /// it through the CLI, and a longer one is answered `too_complex` rather than refused by size.
    @Test func sizesAgree() async throws {
        try await TestServer.with { server in
            let alice = try await server.token(for: "alice")
            let padding = String(repeating: "-- a comment line that pads the migration to its size\n", count: 1_800)
            let folder = server.folder
            let medium = folder.appendingPathComponent("medium.sql").path
            try (padding + "SELECT 1;\n").write(toFile: medium, atomically: true, encoding: .utf8)
            #expect((try FileManager.default.attributesOfItem(atPath: medium)[.size] as? Int ?? 0) > 64 * 1024)
            let read = try await Self.run(server, alice, ["classify", "--file", medium], expect: 0)
            #expect(read.object["risk"] as? String == "read", "\(read.result)")
            let large = folder.appendingPathComponent("large.sql").path
            try (padding + padding + "SELECT 1;\n").write(toFile: large, atomically: true, encoding: .utf8)
            let tooLong = try await Self.run(server, alice, ["classify", "--file", large], expect: 5)
            #expect((tooLong.object["findings"] as? [[String: Any]])?.first?["category"] as? String == "too_complex", "\(tooLong.result)")
        }
    }
}
