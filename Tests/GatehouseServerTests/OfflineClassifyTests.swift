import Foundation
import GatehouseTestSupport
import Testing

/// `gatehouse classify --policy FILE`: a migration checked in a pipeline, with no server and no token,
/// under the policy's own `guard:` section.
@Suite("CLI: classify offline for CI")
struct OfflineClassifyTests {
    static let migration = """
        CREATE TABLE t (id int);
        -- rename it
        ALTER TABLE t RENAME TO u;
        DROP TABLE old_orders;
        DELETE FROM u;

        """

    /// The CLI with no token and a URL where nothing listens: nothing may need a server.
    static func classify(_ arguments: [String], input: String? = nil) async throws -> CommandResult {
        try await Command.run(try ServeProcess.binary().path, ["classify"] + arguments,
                              environment: ["GATEHOUSE_URL": "http://127.0.0.1:\(try TestPorts.free())", "HOME": NSTemporaryDirectory() + "no-home"],
                              input: input)
    }

    @Test func aMigrationCheckedWithoutAServer() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("offline-classify-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let policy = folder.appendingPathComponent("policy.yaml").path
        try """
            version: 1
            principals: {alice: {groups: [eng]}}
            resources:
              db:
                kind: postgres
                roles: {read: {requesters: [eng], approvals: 0, max_duration: 1h, allows: read}}
            guard:
              sql: {write: [drop_table], forbidden: [delete_without_where]}
            """.write(toFile: policy, atomically: true, encoding: .utf8)
        let file = folder.appendingPathComponent("0042_rename.sql").path
        try Self.migration.write(toFile: file, atomically: true, encoding: .utf8)

        // The policy's levels apply: DROP TABLE moved to write, DELETE without WHERE forbidden (exit 6).
        let table = try await Self.classify(["--policy", policy, "--file", file])
        #expect(table.status == 6, "\(table)")
        #expect(table.stdout.contains("forbidden  delete_without_where"), "\(table)")
        #expect(table.stdout.contains("write      drop_table"), "\(table)")

        let json = try await Self.classify(["--policy", policy, "--file", "-", "--output", "json"], input: Self.migration)
        #expect(json.status == 6)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json)")
        #expect(object["risk"] as? String == "forbidden" && object["statements"] as? Int == 4)
        let findings = try #require(object["findings"] as? [[String: Any]])
        #expect(findings.map { $0["category"] as? String ?? "" } == ["schema_change", "schema_change", "drop_table", "delete_without_where"])
        #expect((object["sha256"] as? String)?.count == 64)

        // GitHub Actions annotations, at the line and column of each statement (its comments skipped).
        let github = try await Self.classify(["--policy", policy, "--file", file, "--github"])
        #expect(github.status == 6)
        let lines = github.stdout.split(separator: "\n").map(String.init)
        #expect(lines == [
            "::warning file=\(file),line=1,col=1,title=gatehouse%3A schema_change (write)::CREATE",
            "::warning file=\(file),line=3,col=1,title=gatehouse%3A schema_change (write)::RENAME",
            "::warning file=\(file),line=4,col=1,title=gatehouse%3A drop_table (write)::DROP TABLE old_orders",
            "::error file=\(file),line=5,col=13,title=gatehouse%3A delete_without_where (forbidden)::DELETE on u without WHERE changes every row",
        ], "\(github)")

        // A column counts characters before the statement, not their UTF-8 bytes.
        let accented = try await Self.classify(["--policy", policy, "--github", "SELECT 'café', 'naïve'; DROP TABLE old_orders"])
        #expect(accented.stdout.contains(",line=1,col=25,title=gatehouse%3A drop_table"), "\(accented)")

        // Without the policy's moves the same statement is dangerous (exit 5); a read exits 0.
        let plain = folder.appendingPathComponent("plain.yaml").path
        try "version: 1\nprincipals: {alice: {groups: [eng]}}\nresources: {db: {kind: postgres, roles: {read: {requesters: [eng], approvals: 0, max_duration: 1h, allows: read}}}}\n"
            .write(toFile: plain, atomically: true, encoding: .utf8)
        #expect(try await Self.classify(["--policy", plain, "DROP TABLE old_orders"]).status == 5)
        #expect(try await Self.classify(["--policy", plain, "SELECT 1"]).status == 0)

        // A policy that is not valid says so and how to see why.
        let broken = folder.appendingPathComponent("broken.yaml").path
        try "version: 1\nprincipals: {}\nresources: {}\nguard: {sql: {write: [no_such_category]}}\n".write(toFile: broken, atomically: true, encoding: .utf8)
        let refused = try await Self.classify(["--policy", broken, "SELECT 1"])
        #expect(refused.status == 1 && refused.stderr.contains("is not a valid policy (`gatehouse policy check \(broken)`"), "\(refused)")
    }
}
