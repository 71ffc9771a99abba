import ArgumentParser
import Foundation
import GatehouseAPI
import GatehouseClient
import GatehouseCore

/// Options every client command shares: where the server is, who we are, how to print.
struct ClientOptions: ParsableArguments {
    @Option(name: .long, help: "Gatehouse server URL (default: $GATEHOUSE_URL or http://127.0.0.1:8080).")
    var url: String?

    @Option(name: .long, help: "API token (default: $GATEHOUSE_TOKEN).")
    var token: String?

    @Option(name: .long, help: "Output format: table or json.", completion: Completions.outputFormats)
    var output: String = "table"

    func validate() throws {
        guard OutputFormat(rawValue: output) != nil else {
            throw ValidationError("--output must be table or json, not '\(output)'")
        }
    }

    var format: OutputFormat { OutputFormat(rawValue: output) ?? .table }

    /// The token is --token, else GATEHOUSE_TOKEN, else the session `gatehouse login` kept, and that
    /// only for the server it was issued by.
    func client() throws -> APIClient {
        let env = ProcessInfo.processInfo.environment
        if let token = token ?? env["GATEHOUSE_TOKEN"].flatMap({ $0.isEmpty ? nil : $0 }) {
            return APIClient(baseURL: url ?? env["GATEHOUSE_URL"] ?? "http://127.0.0.1:8080", token: token)
        }
        let session = SessionFile.load()
        let baseURL = url ?? env["GATEHOUSE_URL"] ?? session?.url ?? "http://127.0.0.1:8080"
        guard let session, SessionFile.sameServer(session.url, baseURL) else {
            throw CLIError.usage("no token: run `gatehouse login` to sign in, or set GATEHOUSE_TOKEN (service accounts; an admin creates one with `gatehouse token create NAME`)")
        }
        guard session.expiresAt > Date() else {
            throw CLIError.usage("your session as \(session.principal) ended at \(session.expiresAt.rfc3339); run `gatehouse login` again")
        }
        return APIClient(baseURL: baseURL, token: session.token)
    }

    /// Prints an answer: as JSON, or in the human form (given the answer as a JSON object).
    func show<T: Encodable>(_ answer: T, _ human: ([String: Any]) -> Void) throws {
        if format == .json { Output.json(try Output.encoded(answer)) } else { human(Output.object(answer)) }
    }

    /// An answer that says the command did not do what it was asked (a policy refused, a broken audit
    /// chain): its details as usual, then failed like every other command: `error: ...` on stderr and, in
    /// JSON, the answer's one object with `error` and `code` added; exit 1.
    func fail<T: Encodable>(_ answer: T, _ message: String, _ human: ([String: Any]) -> Void) throws -> Never {
        var object = Output.object(answer)
        if format == .json {
            object["error"] = message
            object["code"] = "error"
            Output.json(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
        } else {
            human(object)
        }
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        Foundation.exit(1)
    }
}

struct RequestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "request", abstract: "Ask for access to a resource.")

    @Argument(help: "The resource, e.g. prod-db.", completion: Completions.resources) var resource: String
    @Option(help: "The role to ask for, e.g. write.", completion: Completions.roles) var role: String?
    @OptionGroup var action: ActionOptions
    @Option(name: .customLong("for"), parsing: .unconditional, help: "How long, once approved: 90s, 30m, 1h30m, 7d (for one action: defaults to the policy's maximum).") var duration: String?
    @Option(help: "Why you need it.") var reason: String
    @Option(help: "A ticket, e.g. INC-4411.") var ticket: String?
    @Flag(help: "Wait until the request is decided.") var wait = false
    @Option(help: "With --wait: give up after this long.") var timeout: String = "15m"
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let client = try options.client()
        let waitLimit: TimeSpan
        do { waitLimit = try TimeSpan.parse(timeout) } catch { throw ValidationError("--timeout: \(error.description)") }
        let chosen = try action.action()
        guard (role == nil) != (chosen == nil) else {
            throw ValidationError(role == nil ? "give --role ROLE, or one exact action with --sql, --sql-file or --shell"
                                              : "give --role ROLE or one exact action (--sql, --sql-file, --shell), not both: a grant of a role covers the actions it allows")
        }
        if chosen == nil, duration == nil { throw ValidationError("--for is required with --role: how long, e.g. --for 30m") }
        let body: Components.Schemas.NewRequest = if let chosen {
            .ActionRequest(.init(resource: resource, action: chosen.input, duration: duration, reason: reason, ticket: ticket))
        } else {
            .RoleRequest(.init(resource: resource, role: role ?? "", duration: duration ?? "", reason: reason, ticket: ticket))
        }
        let (filed, again) = try await client.run { api in
            switch try await api.createRequest(body: .json(body)) {
            case .created(let answer): (try answer.body.json, false)
            case .ok(let answer): (try answer.body.json, true)
            case let other: throw CLIError.unexpected(other)
            }
        }
        var final = filed
        let request = Output.object(filed)
        if again, options.format == .table {
            FileHandle.standardError.write(Data("the identical request \(Output.string(request, "id")) is already waiting; nobody was notified again\n".utf8))
        }
        if Output.string(request, "state") == "quarantined", options.format == .table {
            FileHandle.standardError.write(Data("request \(Output.string(request, "id")) is held for review by the anti-spam policy; a reviewer must release it\n".utf8))
        }
        if wait, Output.string(request, "state") == "pending" {
            if options.format == .table {
                FileHandle.standardError.write(Data("request \(Output.string(request, "id")) filed; waiting for \(Output.string(request, "approvals_required")) approval(s)...\n".utf8))
            }
            final = try await waitForDecision(client, id: filed.id, limit: waitLimit)
        }
        try options.show(final) { Output.request($0) }
        switch final.state.rawValue {
        case "approved", "pending", "quarantined": return
        case "denied": throw CLIError.outcome(code: 4)
        default: throw CLIError.outcome(code: 1)
        }
    }

    /// Long-polls the request (`?wait=25s`): each call returns as soon as the request is decided,
    /// so the answer arrives at once, without a tight loop. Progress goes to stderr.
    func waitForDecision(_ client: APIClient, id: String, limit: TimeSpan) async throws -> Components.Schemas.AccessRequest {
        let deadline = Date().addingTimeInterval(TimeInterval(limit.seconds))
        var lastApprovals = 0
        let started = Date()
        while true {
            let left = Int(deadline.timeIntervalSinceNow.rounded(.up))
            let asked = max(1, min(25, left))
            let polled = Date()
            let request = try await client.run {
                try await $0.getRequest(path: .init(id: id), query: .init(wait: "\(asked)s")).ok.body.json
            }
            // Answered well before its time yet undecided: a stopping server does that. The next poll
            // first asks whether the address still answers (a refused connection is said at once).
            if Date().timeIntervalSince(polled) < Double(asked) - 1 { APIClient.askAgain() }
            let state = request.state.rawValue
            if request.state != .pending && request.state != .quarantined { return request }
            let approvals = request.approvals.filter { $0.decision == .approve && $0.counted != false }.count
            if options.format == .table {
                if approvals != lastApprovals {
                    FileHandle.standardError.write(Data("\(approvals) of \(request.approvalsRequired) approval(s) so far...\n".utf8))
                } else {
                    FileHandle.standardError.write(Data("still \(state) after \(Int(Date().timeIntervalSince(started)))s...\n".utf8))
                }
            }
            lastApprovals = approvals
            guard Date() < deadline else {
                throw CLIError.failure("still \(state) after \(limit); check later with `gatehouse show \(id)`")
            }
        }
    }
}

struct RequestsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "requests", abstract: "List requests: yours, or those waiting for your approval.")

    @Flag(name: .customLong("to-approve"), help: "Pending requests you can decide.") var toApprove = false
    @Flag(help: "Every request (admins).") var all = false
    @Option(help: "Only requests in this state (pending, approved, denied, expired, canceled, quarantined).", completion: Completions.requestStates) var state: String?
    @Option(parsing: .unconditional, help: "At most this many (1-1000).") var limit: Int = 100
    @Option(help: "Start at this page (the cursor printed under the previous one).") var cursor: String?
    @OptionGroup var options: ClientOptions

    func validate() throws {
        try ValidationError.checkLimit(limit)
        if toApprove && all { throw ValidationError("choose --to-approve or --all, not both") }
        if let state, RequestState(rawValue: state) == nil {
            throw ValidationError("--state must be one of \(RequestState.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() async throws {
        let scope: Components.Schemas.RequestScope = toApprove ? .toApprove : all ? .all : .mine
        let list = try await options.client().run {
            try await $0.listRequests(query: .init(scope: scope, state: state.flatMap { .init(rawValue: $0) }, limit: limit, cursor: cursor)).ok.body.json
        }
        try options.show(list) { body in
            let rows = (body["requests"] as? [[String: Any]] ?? []).map { r in
                ["id", "state", "requester", "resource", "role", "duration", "created_at", "reason"].map { Output.string(r, $0) }
            }
            Output.table(["id", "state", "requester", "resource", "role", "for", "created", "reason"], rows)
            Output.nextPage(body)
        }
    }
}

struct ShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show one request with its approvals.")
    @Argument(help: "Request id.", completion: Completions.ownRequests) var id: String
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let request = try await options.client().run { try await $0.getRequest(path: .init(id: id)).ok.body.json }
        try options.show(request) { Output.request($0) }
    }
}

struct ApproveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "approve", abstract: "Approve a request.")
    @Argument(help: "Request id.", completion: Completions.requestsToApprove) var id: String
    @Option(help: "A comment for the record.") var comment: String?
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let request = try await options.client().run {
            try await $0.approveRequest(path: .init(id: id), body: .json(.init(comment: comment))).ok.body.json
        }
        try options.show(request) { Output.request($0) }
    }
}

struct DenyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "deny", abstract: "Deny a request.")
    @Argument(help: "Request id.", completion: Completions.requestsToApprove) var id: String
    @Option(help: "Why it is denied (shown to the requester).") var reason: String
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let request = try await options.client().run {
            try await $0.denyRequest(path: .init(id: id), body: .json(.init(comment: reason))).ok.body.json
        }
        try options.show(request) { Output.request($0) }
    }
}

struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancel your pending request.")
    @Argument(help: "Request id.", completion: Completions.ownRequests) var id: String
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let request = try await options.client().run { try await $0.cancelRequest(path: .init(id: id)).ok.body.json }
        try options.show(request) { Output.request($0) }
    }
}

struct GrantsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "grants", abstract: "List grants: yours, or everyone's (admins).")
    @Flag(help: "Everyone's grants (admins).") var all = false
    @Flag(help: "Only grants active now.") var active = false
    @Option(parsing: .unconditional, help: "At most this many (1-1000).") var limit: Int = 100
    @Option(help: "Start at this page (the cursor printed under the previous one).") var cursor: String?
    @OptionGroup var options: ClientOptions

    func validate() throws { try ValidationError.checkLimit(limit) }

    func run() async throws {
        let list = try await options.client().run {
            try await $0.listGrants(query: .init(scope: all ? .all : .mine, active: active ? true : nil, limit: limit, cursor: cursor)).ok.body.json
        }
        try options.show(list) { body in
            let rows = (body["grants"] as? [[String: Any]] ?? []).map { g in
                ["id", "state", "principal", "resource", "role", "starts_at", "expires_at"].map { Output.string(g, $0) }
            }
            Output.table(["id", "state", "principal", "resource", "role", "starts", "expires"], rows)
            Output.nextPage(body)
        }
    }
}

struct ReleaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "release", abstract: "End your grant early.")
    @Argument(help: "Grant id.", completion: Completions.ownGrants) var id: String
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let grant = try await options.client().run { try await $0.releaseGrant(path: .init(id: id)).ok.body.json }
        try options.show(grant) { Output.grant($0) }
    }
}

struct RevokeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "revoke", abstract: "End someone's grant (admins).")
    @Argument(help: "Grant id.") var id: String
    @Option(help: "Why it is revoked.") var reason: String
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let grant = try await options.client().run {
            try await $0.revokeGrant(path: .init(id: id), body: .json(.init(reason: reason))).ok.body.json
        }
        try options.show(grant) { Output.grant($0) }
    }
}

struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check", abstract: "May I (or PRINCIPAL) use this role on this resource now?",
        discussion: "Exit code 0: allowed; 3: approval required (the command to run is printed); 4: denied.")
    @Argument(help: "The resource.", completion: Completions.resources) var resource: String
    @Option(help: "The role.", completion: Completions.roles) var role: String?
    @OptionGroup var action: ActionOptions
    @Option(help: "Check for another principal (admins).") var principal: String?
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let chosen = try action.action()
        guard (role == nil) != (chosen == nil) else {
            throw ValidationError(role == nil ? "give --role ROLE, or one exact action with --sql, --sql-file or --shell"
                                              : "give --role ROLE or one exact action (--sql, --sql-file, --shell), not both: a grant of a role covers the actions it allows")
        }
        let body: Components.Schemas.CheckInput = if let chosen {
            .ActionCheck(.init(resource: resource, action: chosen.input, principal: principal))
        } else {
            .RoleCheck(.init(resource: resource, role: role ?? "", principal: principal))
        }
        let result = try await options.client().run { try await $0.check(body: .json(body)).ok.body.json }
        try Self.report(result, options: options)
    }

    /// Prints a check result and maps it to the exit code (0 allow, 3 approval required, 4 deny).
    static func report(_ answer: Components.Schemas.CheckResult, options: ClientOptions) throws {
        let decision = answer.decision.rawValue
        try options.show(answer) { result in
            if let classification = result["classification"] as? [String: Any] {
                let categories = Set((classification["findings"] as? [[String: Any]] ?? []).map { Output.string($0, "category") }).sorted()
                print("risk: \(Output.string(classification, "risk"))\(categories.isEmpty ? "" : " (" + categories.joined(separator: ", ") + ")")")
            }
            switch decision {
            case "allow":
                print("allow: \(Output.string(result, "reason"))")
            case "approval_required":
                print("approval required: \(Output.string(result, "reason"))")
                for command in result["request_commands"] as? [String] ?? [Output.string(result, "request_command")] {
                    print("run: \(Output.safe(command))")
                }
            default:
                print("deny: \(Output.string(result, "reason"))")
            }
        }
        switch decision {
        case "allow": return
        case "approval_required": throw CLIError.outcome(code: 3)
        default: throw CLIError.outcome(code: 4)
        }
    }
}

struct WhoamiCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "whoami", abstract: "Show who the token belongs to.")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let identity = try await options.client().run { try await $0.whoami().ok.body.json }
        try options.show(identity) { me in
            var fields = [("principal", Output.string(me, "principal")), ("admin", Output.string(me, "admin") == "1" ? "yes" : "no"),
                          ("groups", (me["groups"] as? [String] ?? []).joined(separator: ", ")),
                          ("credential", me["credential"] as? String == "session" ? "sign-in session" : "API token")]
            if let ends = me["expires_at"] as? String { fields.append(("session ends", ends)) }
            let requestable = (me["requestable"] as? [[String: Any]] ?? []).map { entry in
                let roles = entry["roles"] as? [String] ?? []
                let actions = entry["actions"] as? Bool == true ? ["one-shot actions"] : []
                return "\(entry["resource"] as? String ?? "?") (\((roles + actions).joined(separator: ", ")))"
            }
            fields.append(("may request", requestable.isEmpty ? "nothing" : requestable.joined(separator: "; ")))
            Output.fields(fields)
        }
    }
}
