import ArgumentParser
import Foundation

struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Report a request as suspicious: its requester is blocked, their grants revoked, their waiting requests held.")
    @Argument(help: "Request id.", completion: Completions.requestsToApprove) var id: String
    @Option(help: "What looked wrong (required: the reviewers read it, and it is kept in the audit log).") var comment: String
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let (response, request) = try await options.client().call(.POST, "/v1/requests/\(PathComponent.escape(id))/report", body: ["comment": comment])
        options.show(response) {
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
        let (response, request) = try await options.client().call(.POST, "/v1/requests/\(PathComponent.escape(id))/review",
                                                                   body: ["decision": decision.rawValue, "comment": comment])
        options.show(response) { Output.request(request) }
    }
}

struct UnblockCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unblock", abstract: "Let a blocked principal request again (admins).")
    @Argument(help: "The principal.") var name: String
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let (response, _) = try await options.client().call(.POST, "/v1/principals/\(PathComponent.escape(name))/unblock")
        options.show(response) { print("\(name) is unblocked") }
    }
}

struct PrincipalsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "principals", abstract: "List principals the anti-spam policy blocked or throttled (admins).")
    @Flag(help: "Only blocked principals.") var blocked = false
    @Flag(help: "Only throttled principals.") var throttled = false
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let (response, body) = try await options.client().call(.GET, "/v1/principals", query: [
            "blocked": blocked ? "true" : nil, "throttled": throttled ? "true" : nil,
        ])
        options.show(response) {
            let rows = (body["principals"] as? [[String: Any]] ?? []).map { p in
                [Output.string(p, "principal"), Output.string(p, "blocked") == "1" || Output.string(p, "blocked") == "true" ? "blocked" : "throttled",
                 Output.string(p, "blocked_at").isEmpty ? Output.string(p, "throttled_until") : Output.string(p, "blocked_at"),
                 Output.string(p, "blocked_by"), Output.string(p, "block_reason").isEmpty ? Output.string(p, "throttle_reason") : Output.string(p, "block_reason")]
            }
            Output.table(["principal", "state", "since/until", "by", "reason"], rows)
        }
    }
}
