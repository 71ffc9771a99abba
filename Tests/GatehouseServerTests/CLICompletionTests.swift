import Foundation
import GatehouseCore
import GatehouseTestSupport
import Hummingbird
import Testing

/// Shell completion as bash runs it: the script `gatehouse --generate-completion-script bash` prints,
/// sourced into a real bash, asked for what follows a command line; values come from the live server
/// the line points at, as the person typing would see them.
@Suite("CLI: shell completion")
struct CLICompletionTests {
    /// The words bash offers at the end of `line` (a trailing space asks for the next word).
    static func offers(_ line: String, environment: [String: String]) async throws -> [String] {
        let binary = try ServeProcess.binary().path
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gatehouse-completion-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let script = try await Command.run(binary, ["--generate-completion-script", "bash"], environment: [:])
        #expect(script.status == 0, "\(script)")
        let scriptPath = folder.appendingPathComponent("gatehouse.bash").path
        try script.stdout.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        // The completion script calls the binary by the command line's first word, as bash would.
        let driver = #"""
            source "$1"
            COMP_LINE="$2"; COMP_POINT=${#COMP_LINE}
            read -ra COMP_WORDS <<< "$COMP_LINE"
            [[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
            COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
            function=$(complete -p gatehouse | sed -E 's/.*-F ([^ ]+).*/\1/')
            "$function" gatehouse "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
            printf '%s\n' "${COMPREPLY[@]}"
            """#
        // A test server shares two cores with hundreds of tests: completion may wait longer than a shell would.
        let result = try await Command.run("/bin/bash", ["-c", driver, "driver", scriptPath, binary + " " + line],
                                           environment: ["GATEHOUSE_COMPLETION_TIMEOUT": "30"].merging(environment) { $1 })
        #expect(result.status == 0, "\(result)")
        return result.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    @Test("resources, roles, request ids and fixed values complete from the server the line points at")
    func completes() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob")
            let alice = ["GATEHOUSE_URL": server.baseURL, "GATEHOUSE_TOKEN": t["alice"]!]
            let bob = ["GATEHOUSE_URL": server.baseURL, "GATEHOUSE_TOKEN": t["bob"]!]
            let me = try await server.whoami(t["alice"]!)
            let requestable = try #require(me.json["requestable"] as? [[String: Any]], "\(me.json)")
            let resources = requestable.compactMap { $0["resource"] as? String }
            #expect(resources.contains("prod-db"))
            // Resources alice may ask for, and the roles of the one on the line.
            #expect(try await Self.offers("request ", environment: alice) == resources)
            #expect(try await Self.offers("request pr", environment: alice) == resources.filter { $0.hasPrefix("pr") })
            let prodRoles = (requestable.first { $0["resource"] as? String == "prod-db" }?["roles"] as? [String]) ?? []
            #expect(!prodRoles.isEmpty)
            #expect(try await Self.offers("request prod-db --role ", environment: alice) == prodRoles)
            #expect(try await Self.offers("check prod-db --role w", environment: alice) == prodRoles.filter { $0.hasPrefix("w") })
            // A request waiting for bob's approval is offered to bob, not to alice.
            let id = try #require(try await server.request(t["alice"]!).string("id"))
            #expect(try await Self.offers("approve ", environment: bob) == [id])
            #expect(try await Self.offers("approve ", environment: alice).isEmpty)
            #expect(try await Self.offers("cancel ", environment: alice) == [id])
            // Values the command knows itself.
            #expect(try await Self.offers("classify --kind ", environment: alice) == ["sql", "shell"])
            #expect(try await Self.offers("whoami --output ", environment: alice) == ["table", "json"])
            // --url and --token on the line win over the environment; a server that cannot be reached offers nothing.
            let elsewhere = ["GATEHOUSE_URL": "http://127.0.0.1:\(try TestPorts.free())", "GATEHOUSE_TOKEN": "not-a-token-0123456789"]
            #expect(try await Self.offers("request --url \(server.baseURL) --token \(t["alice"]!) ", environment: elsewhere) == resources)
            #expect(try await Self.offers("request ", environment: elsewhere).isEmpty)
        }
    }

    @Test("GATEHOUSE_COMPLETION_TIMEOUT sets how long completion waits: a server slower than the setting offers nothing, one within it is heard")
    func completionTimeout() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice")
            let whoami = try await server.whoami(t["alice"]!)
            let resources = (whoami.json["requestable"] as? [[String: Any]] ?? []).compactMap { $0["resource"] as? String }
            #expect(!resources.isEmpty)
            // Gatehouse's own answer, given 4 seconds late (later than the 3 s a shell waits by default).
            let router = Router()
            router.get("/healthz") { _, _ in "ok" }
            router.get("/v1/whoami") { _, _ -> Response in
                try await Task.sleep(for: .seconds(4))
                return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: .init(data: whoami.body)))
            }
            let slow = await LocalHTTPServer.start(router, label: "slow-gatehouse")
            let environment = ["GATEHOUSE_URL": "http://127.0.0.1:\(slow.port)", "GATEHOUSE_TOKEN": t["alice"]!]
            let patient = try await Self.offers("request ", environment: environment.merging(["GATEHOUSE_COMPLETION_TIMEOUT": "20"]) { $1 })
            let hasty = try await Self.offers("request ", environment: environment.merging(["GATEHOUSE_COMPLETION_TIMEOUT": "1"]) { $1 })
            await slow.stop()
            #expect(patient == resources)
            #expect(hasty.isEmpty)
        }
        // An address that takes the connection and never answers: nothing, after the setting's time.
        let (fd, port) = try CLIReachTests.silentListener()
        defer { close(fd) }
        let silent = try await Self.offers("request ", environment: ["GATEHOUSE_URL": "http://127.0.0.1:\(port)", "GATEHOUSE_TOKEN": "not-a-token-0123456789",
                                                                     "GATEHOUSE_COMPLETION_TIMEOUT": "0.5"])
        #expect(silent.isEmpty)
    }
}
