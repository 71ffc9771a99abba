import ArgumentParser
import Foundation
import GatehouseAPI
import GatehouseClient

/// `gatehouse break-glass RESOURCE --role R --reason TEXT`, and the list and review of uses.
struct BreakGlassCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "break-glass",
        abstract: "Emergency access: granted at once, announced to security, reviewed afterwards.",
        subcommands: [BreakGlassUseCommand.self, BreakGlassListCommand.self, BreakGlassReviewCommand.self],
        defaultSubcommand: BreakGlassUseCommand.self)
}

struct BreakGlassUseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "use", abstract: "Take a role now, without approval, for at most the policy's break_glass.max_duration.")
    @Argument(help: "The resource, e.g. prod-db.", completion: Completions.resources) var resource: String
    @Option(help: "The role to take, e.g. admin.", completion: Completions.roles) var role: String
    @Option(help: "What is on fire (everyone told reads it).") var reason: String
    @Option(name: .customLong("for"), parsing: .unconditional, help: "How long (default and maximum: break_glass.max_duration).") var duration: String?
    @Option(help: "An incident ticket, e.g. INC-4411.") var ticket: String?
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let taken = try await options.client().run {
            try await $0.breakGlass(body: .json(.init(resource: resource, role: role, reason: reason, ticket: ticket, duration: duration))).created.body.json
        }
        try options.show(taken) { use in
            print("break-glass grant \(Output.string(use, "grant_id")): \(resource)/\(role) until \(Output.string(use, "expires_at"))")
            FileHandle.standardError.write(Data("security has been told; this use stays listed until someone reviews it (`gatehouse break-glass review \(Output.string(use, "grant_id")) --comment ...`)\n".utf8))
        }
    }
}

struct BreakGlassListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Break-glass uses, newest first.")
    @Flag(name: .customLong("awaiting-review"), help: "Only uses not reviewed yet.") var awaitingReview = false
    @Option(parsing: .unconditional, help: "At most this many.") var limit: Int = 100
    @OptionGroup var options: ClientOptions

    func validate() throws { try ValidationError.checkLimit(limit) }

    func run() async throws {
        let list = try await options.client().run {
            try await $0.listBreakGlass(query: .init(awaitingReview: awaitingReview ? true : nil, limit: limit)).ok.body.json
        }
        try options.show(list) { body in
            let rows = (body["uses"] as? [[String: Any]] ?? []).map { u in
                let review = (u["awaiting_review"] as? Bool) == true ? "awaiting" : u["reviewed_by"].map { "by \($0)" } ?? "not required"
                return [Output.string(u, "grant_id"), Output.string(u, "principal"), Output.string(u, "resource") + "/" + Output.string(u, "role"),
                        Output.string(u, "at"), review, Output.string(u, "reason")]
            }
            Output.table(["grant", "who", "access", "at", "review", "reason"], rows)
        }
    }
}

struct BreakGlassReviewCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "review", abstract: "Record the post-incident review of one use.")
    @Argument(help: "The break-glass grant id.") var grant: String
    @Option(help: "What was done with the access and whether it was justified.") var comment: String
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let reviewed = try await options.client().run {
            try await $0.reviewBreakGlass(path: .init(id: grant), body: .json(.init(comment: comment))).ok.body.json
        }
        try options.show(reviewed) { use in print("reviewed break-glass use \(Output.string(use, "grant_id")) of \(Output.string(use, "principal"))") }
    }
}

struct WebhooksCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "webhooks", abstract: "The webhook outbox: queued, delivered and given-up messages (admins).")
    @Option(parsing: .unconditional, help: "At most this many.") var limit: Int = 100
    @OptionGroup var options: ClientOptions

    func validate() throws { try ValidationError.checkLimit(limit) }

    func run() async throws {
        let list = try await options.client().run { try await $0.listWebhookDeliveries(query: .init(limit: limit)).ok.body.json }
        try options.show(list) { body in
            let rows = (body["deliveries"] as? [[String: Any]] ?? []).map { d in
                ["id", "endpoint", "event", "state", "attempts", "last_status", "created_at"].map { Output.string(d, $0) }
            }
            Output.table(["id", "endpoint", "event", "state", "attempts", "last", "created"], rows)
        }
    }
}
