import ArgumentParser
import Foundation
import GatehouseAPI
import GatehouseClient
import GatehouseCore

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Manage API tokens (admins).",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Issue a token for a principal in the policy; it is shown once.")
        @Argument(help: "The principal.") var name: String
        @Option(help: "What the token is for.") var description: String?
        @OptionGroup var options: ClientOptions

        func run() async throws {
            let created = try await options.client().run {
                try await $0.createToken(body: .json(.init(principal: name, description: description))).created.body.json
            }
            try options.show(created) { token in
                print(Output.string(token, "token"))
                FileHandle.standardError.write(Data("token \(Output.string(token, "id")) for \(name); it is shown only now, store it safely\n".utf8))
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens (never their secrets).")
        @Flag(help: "Include revoked tokens.") var all = false
        @OptionGroup var options: ClientOptions


        func run() async throws {
            let list = try await options.client().run { try await $0.listTokens(query: .init(includeRevoked: all ? true : nil)).ok.body.json }
            try options.show(list) { body in
                let rows = (body["tokens"] as? [[String: Any]] ?? []).map { t in
                    ["id", "principal", "created_at", "created_by", "revoked_at", "description"].map { Output.string(t, $0) }
                }
                Output.table(["id", "principal", "created", "by", "revoked", "description"], rows)
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token; it stops working at once.")
        @Argument(help: "Token id (from `token list`).") var id: String
        @OptionGroup var options: ClientOptions

        func run() async throws {
            let revoked = try await options.client().run { try await $0.revokeToken(path: .init(id: id)).ok.body.json }
            try options.show(revoked) { token in print("revoked \(Output.string(token, "id")) (\(Output.string(token, "principal")))") }
        }
    }
}

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Read the audit log (admins).",
        subcommands: [List.self, Verify.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List audit events, oldest first.")
        @Option(parsing: .unconditional, help: "Only events since: a time (2026-11-23T10:00:00Z) or a duration ago (1h, 7d).") var since: String?
        @Option(help: "Only events by or about this principal.") var principal: String?
        @Option(help: "Only events about this resource.") var resource: String?
        @Option(parsing: .unconditional, help: "At most this many.") var limit: Int = 100
        @OptionGroup var options: ClientOptions

        func validate() throws { try ValidationError.checkLimit(limit, maximum: 10_000) }

        func run() async throws {
            var sinceValue: Date?
            if let since {
                if let span = try? TimeSpan.parse(since) {
                    sinceValue = Date().addingTimeInterval(-TimeInterval(span.seconds))
                } else if let time = try? PreciseDateTranscoder().decode(since) {
                    sinceValue = time
                } else {
                    throw ValidationError("--since must be a time like 2026-11-23T10:00:00Z or a duration like 1h")
                }
            }
            let list = try await options.client().run {
                try await $0.listAudit(query: .init(since: sinceValue, principal: principal, resource: resource, limit: limit)).ok.body.json
            }
            try options.show(list) { body in
                let rows = (body["events"] as? [[String: Any]] ?? []).map { e in
                    let details = (e["details"] as? [String: String] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\(Output.safe($0.value))" }.joined(separator: " ")
                    return [Output.string(e, "seq"), Output.string(e, "at"), Output.string(e, "actor"), Output.string(e, "action"),
                            Output.string(e, "subject"), Output.string(e, "resource"), details]
                }
                Output.table(["seq", "at", "actor", "action", "subject", "resource", "details"], rows)
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Walk the hash chain and name the first broken link.",
            discussion: """
                Prints the newest event verified as SEQ:HASH. Keep it outside Gatehouse (a ticket, your SIEM: \
                webhooks' ids, msg_SEQ_HASH, are anchors too) and pass it back with --anchor: whoever can write \
                the store can cut its newest events off or rewrite the chain with its head, and only a record kept \
                elsewhere shows it.
                """)
        @Option(name: .customLong("anchor"), help: "An event recorded elsewhere, SEQ:HASH or a webhook id (msg_SEQ_HASH), that the log must still hold; repeatable.")
        var anchors: [String] = []
        @OptionGroup var options: ClientOptions

        func validate() throws {
            do { _ = try AuditChain.Anchor.parse(anchors) } catch { throw ValidationError("--anchor: \(error.message)") }
        }

        func run() async throws {
            let verification = try await options.client().run { try await $0.verifyAudit(query: .init(anchor: anchors.isEmpty ? nil : anchors)).ok.body.json }
            guard verification.ok else {
                let result = Output.object(verification)
                try options.fail(verification, "AUDIT CHAIN BROKEN at event \(Output.string(result, "broken_at")): \(Output.string(result, "problem"))") { _ in }
            }
            try options.show(verification) { result in
                let head = verification.headSeq.map { " up to event \($0) (head \($0):\(verification.headHash ?? "")" + "; keep it elsewhere and pass it back with --anchor)" } ?? ""
                print("audit chain verified: \(Output.string(result, "events_checked")) events, no broken link" + head
                      + (anchors.isEmpty ? "" : "; all \(anchors.count) anchor(s) found"))
            }
        }
    }
}

struct PolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Check or reload the policy file.",
        subcommands: [Check.self, Reload.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Report every problem in a policy file, with file:line.")
        @Argument(help: "The policy file.", completion: .file(extensions: ["yaml", "yml"])) var file: String
        @Option(name: .long, help: "Output format: table or json.") var output: OutputFormat = .table

        func run() async throws {
            let result = try PolicyLoader.load(file: file)
            let roles = result.policy.map { $0.resources.values.reduce(0) { $0 + $1.roles.count } } ?? 0
            if output == .json {
                var object: [String: Any] = ["file": file, "valid": result.policy != nil, "problems": result.problems.map {
                    ["line": $0.line, "column": $0.column, "severity": $0.severity.rawValue, "message": $0.message] as [String: Any]
                }]
                if let policy = result.policy {
                    object["principals"] = policy.principals.count
                    object["resources"] = policy.resources.count
                    object["roles"] = roles
                }
                Output.json(try JSONSerialization.data(withJSONObject: object))
                if result.policy == nil { throw CLIError.outcome(code: 1) }
                return
            }
            for problem in result.problems { print(problem.located(in: file)) }
            guard let policy = result.policy else {
                throw CLIError.failure("\(file): \(result.errors.count) error(s); the policy is not valid")
            }
            print("\(file): valid: \(policy.principals.count) principals, \(policy.resources.count) resources, \(roles) roles")
        }
    }

    struct Reload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Ask the server to re-read its policy file (admins); an invalid file is refused.")
        @OptionGroup var options: ClientOptions

        func run() async throws {
            let reload = try await options.client().run { try await $0.reloadPolicy().ok.body.json }
            guard reload.reloaded else {
                try options.fail(reload, "policy NOT reloaded; the running policy is kept") { result in
                    for problem in result["problems"] as? [String] ?? [] { print(problem) }
                }
            }
            try options.show(reload) { result in
                for problem in result["problems"] as? [String] ?? [] { print(problem) }
                print("policy reloaded")
            }
        }
    }
}
