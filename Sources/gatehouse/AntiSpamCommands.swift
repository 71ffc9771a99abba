import ArgumentParser
import Foundation
import GatehouseAPI
import GatehouseClient

struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Report a request as suspicious: its requester is blocked, their grants revoked, their waiting requests held.")
    @Argument(help: "Request id.", completion: Completions.requestsToApprove) var id: String
    @Option(help: "What looked wrong (required: the reviewers read it, and it is kept in the audit log).") var comment: String
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let reported = try await options.client().run {
            try await $0.reportRequest(path: .init(id: id), body: .json(.init(comment: comment))).ok.body.json
        }
        try options.show(reported) { request in
            FileHandle.standardError.write(Data("reported; \(Output.string(request, "requester")) is blocked until an admin unblocks them\n".utf8))
            Output.request(request)
        }
    }
}

struct ReviewCommand: AsyncParsableCommand {
    enum Decision: String, ExpressibleByArgument, CaseIterable { case release, reject }
    static let configuration = CommandConfiguration(
        commandName: "review", abstract: "Release a quarantined request to its approvers, or reject it (reviewers and admins).")
    @Argument(help: "Request id.", completion: Completions.requestsToApprove) var id: String
    @Argument(help: "release or reject.") var decision: Decision
    @Option(help: "A comment for the record.") var comment: String?
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let request = try await options.client().run {
            try await $0.reviewRequest(path: .init(id: id), body: .json(.init(decision: decision == .release ? .release : .reject, comment: comment))).ok.body.json
        }
        try options.show(request) { Output.request($0) }
    }
}

struct UnblockCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unblock", abstract: "Let a blocked principal request again (admins).")
    @Argument(help: "The principal.") var name: String
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let flags = try await options.client().run { try await $0.unblockPrincipal(path: .init(name: name)).ok.body.json }
        try options.show(flags) { _ in print("\(name) is unblocked") }
    }
}

struct PrincipalsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "principals", abstract: "List principals the anti-spam policy blocked or throttled (admins).")
    @Flag(help: "Only blocked principals.") var blocked = false
    @Flag(help: "Only throttled principals.") var throttled = false
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let list = try await options.client().run {
            try await $0.listPrincipals(query: .init(blocked: blocked ? true : nil, throttled: throttled ? true : nil)).ok.body.json
        }
        try options.show(list) { body in
            let rows = (body["principals"] as? [[String: Any]] ?? []).map { p in
                [Output.string(p, "principal"), Output.string(p, "blocked") == "1" || Output.string(p, "blocked") == "true" ? "blocked" : "throttled",
                 Output.string(p, "blocked_at").isEmpty ? Output.string(p, "throttled_until") : Output.string(p, "blocked_at"),
                 Output.string(p, "blocked_by"), Output.string(p, "block_reason").isEmpty ? Output.string(p, "throttle_reason") : Output.string(p, "block_reason")]
            }
            Output.table(["principal", "state", "since/until", "by", "reason"], rows)
        }
    }
}
