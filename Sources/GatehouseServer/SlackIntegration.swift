import AsyncHTTPClient
import Foundation
import GatehouseApp
import GatehouseCore
import GatehouseStore
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// Slack's Web API, for the methods Gatehouse calls: `chat.postMessage`, `chat.update`,
/// `views.open`, `users.info`, and answers to an interaction's `response_url`.
struct SlackAPI: Sendable {
    let settings: SlackSettings
    let client: HTTPClient

    static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(4))
        // A redirect would carry the bot token somewhere the policy never named.
        configuration.redirectConfiguration = .disallow
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    struct Failure: Error, CustomStringConvertible {
        var description: String
        /// Slack's `error` code, when Slack answered one.
        var code: String? = nil

        /// Errors that no retry fixes: the message or channel is gone, or the app was removed from it.
        var isPermanent: Bool {
            ["message_not_found", "channel_not_found", "is_archived", "not_in_channel", "cant_update_message", "edit_window_closed"].contains(code ?? "")
        }
    }

    /// Calls a Web API method with a JSON body; Slack answers HTTP 200 with `ok` true or an `error`.
    func call(_ method: String, _ body: [String: Any]) async throws -> [String: Any] {
        try await post(method, contentType: "application/json; charset=utf-8", body: ByteBuffer(bytes: WebhookMessage.jsonBytes(body)))
    }

    /// A Web API method posted with the bot token (read at every call, so a rotated token is used at once).
    func post(_ method: String, contentType: String, body: ByteBuffer) async throws -> [String: Any] {
        let token: String
        do { token = try settings.botToken.read("the Slack bot token") } catch { throw Failure(description: error.message) }
        var request = HTTPClientRequest(url: "\(settings.apiURL)/\(method)")
        request.method = .POST
        request.headers.add(name: "authorization", value: "Bearer \(token)")
        request.headers.add(name: "content-type", value: contentType)
        request.headers.add(name: "user-agent", value: "gatehouse")
        request.body = .bytes(body)
        return try await send(request, method)
    }

    /// `users.info`: the person behind a click (a form-encoded method).
    func profile(user: String, team: String) async throws -> SlackProfile {
        let answer = try await post("users.info", contentType: "application/x-www-form-urlencoded", body: ByteBuffer(string: "user=\(user)"))
        guard let object = answer["user"] as? [String: Any], object["id"] as? String == user else {
            throw Failure(description: "users.info did not describe \(user)")
        }
        let profile = object["profile"] as? [String: Any] ?? [:]
        let name = [profile["real_name"], profile["display_name"], object["real_name"], object["name"]]
            .compactMap { $0 as? String }.first { !$0.isEmpty }
        return SlackProfile(user: user, team: object["team_id"] as? String ?? team, name: name, email: profile["email"] as? String,
                            emailConfirmed: object["is_email_confirmed"] as? Bool ?? false, deleted: object["deleted"] as? Bool ?? false,
                            isBot: object["is_bot"] as? Bool ?? false)
    }

    func send(_ request: HTTPClientRequest, _ method: String) async throws -> [String: Any] {
        let response = try await client.execute(request, timeout: .seconds(settings.timeout.seconds))
        let body = try await response.body.collect(upTo: 1 << 20)
        if response.status.code == 429 {
            throw Failure(description: "\(method): rate limited by Slack (retry after \(response.headers.first(name: "retry-after") ?? "?") s)")
        }
        guard response.status.code == 200 else { throw Failure(description: "\(method): HTTP \(response.status.code)") }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] else {
            throw Failure(description: "\(method): the answer is not JSON")
        }
        guard object["ok"] as? Bool == true else {
            let code = object["error"] as? String ?? "not ok"
            throw Failure(description: "\(method): \(code)", code: code)
        }
        return object
    }

    /// An answer to an interaction (ephemeral unless said otherwise). Only Slack's own hooks (or the
    /// stand-in `api_url` names) are called: the URL comes from a payload.
    func respond(to url: String?, _ body: [String: Any]) async {
        guard let url, SlackInteraction.isResponseURLAllowed(url, apiURL: settings.apiURL) else { return }
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json; charset=utf-8")
        request.body = .bytes(ByteBuffer(bytes: WebhookMessage.jsonBytes(body)))
        if let response = try? await client.execute(request, timeout: .seconds(settings.timeout.seconds)) {
            _ = try? await response.body.collect(upTo: 64 * 1024)
        }
    }
}

/// Sends the Slack work the outbox holds: renders each request's message from its current state.
struct SlackSender: Sendable {
    let service: UseCases
    let logger: Logger

    /// (HTTP-like status, failure): 200 when done, a failure text to retry.
    func deliver(_ delivery: WebhookDelivery, settings: SlackSettings) async -> (Int?, String?) {
        guard let operation = SlackOperation.decode(delivery.body) else { return (nil, "unreadable Slack work") }
        let api = SlackAPI(settings: settings, client: SlackAPI.http)
        let target = String(delivery.endpoint.dropFirst(SlackOperation.endpointPrefix.count))
        let link = service.policies.policy.notifications.baseURL
        do {
            switch operation {
            case .post(let requestId):
                guard let channel = try await destination(target) else { return (200, nil) }
                guard let view = try await service.slack.requestForMessage(requestId) else { return (200, nil) }
                let rendered = SlackMessages.request(view.request, approvals: view.approvals, link: link.map { "\($0)/requests/\(requestId)" })
                var body = rendered
                body["channel"] = channel
                body["unfurl_links"] = false
                let answer = try await api.call("chat.postMessage", body)
                guard let ts = answer["ts"] as? String, let posted = answer["channel"] as? String else {
                    return (nil, "chat.postMessage answered without channel and ts")
                }
                try await service.slack.recordMessage(SlackMessageRef(requestId: requestId, channel: posted, ts: ts))
                // A decision made while the message was on its way found no copy to update: do it now.
                if let now = try await service.slack.requestForMessage(requestId), now.request.state != view.request.state || now.approvals.count != view.approvals.count {
                    try await update(requestId, api: api, link: link)
                }
            case .update(let requestId):
                try await update(requestId, api: api, link: link)
            case .digest(let recipient, let ids):
                guard let channel = try await destination(target) ?? settings.channel else { return (200, nil) }
                var requests: [AccessRequest] = []
                for id in ids { if let view = try await service.slack.requestForMessage(id) { requests.append(view.request) } }
                var body = SlackMessages.digest(recipient: recipient, requests: requests, link: link.map { "\($0)/inbox" })
                body["channel"] = channel
                _ = try await api.call("chat.postMessage", body)
            case .notice(let message):
                guard var body = (try? JSONSerialization.jsonObject(with: Data(message.utf8))) as? [String: Any] else { return (nil, "unreadable notice") }
                body["channel"] = target
                _ = try await api.call("chat.postMessage", body)
            }
            return (200, nil)
        } catch let failure as SlackAPI.Failure {
            return (nil, failure.description)
        } catch {
            return (nil, "\(error)")
        }
    }

    /// A channel as it is, or `@principal`'s direct messages (nil: that person has no Slack link).
    func destination(_ target: String) async throws -> String? {
        guard target.hasPrefix("@") else { return target }
        return try await service.slack.slackUser(of: String(target.dropFirst()))
    }

    /// Updates every copy of a request's message to the request as it is now; reads it again after,
    /// and updates again when it changed meanwhile (another instance may have rendered an older state).
    /// A copy Slack no longer has is skipped; the others are still updated, and a failure is retried.
    func update(_ requestId: String, api: SlackAPI, link: String?) async throws {
        var shown: (RequestState, Int)?
        for _ in 0..<3 {
            guard let view = try await service.slack.requestForMessage(requestId) else { return }
            let now = (view.request.state, view.approvals.count)
            if let shown, shown == now { return }
            let rendered = SlackMessages.request(view.request, approvals: view.approvals, link: link.map { "\($0)/requests/\(requestId)" })
            var failures: [String] = []
            for copy in try await service.slack.messages(of: requestId) {
                var body = rendered
                body["channel"] = copy.channel
                body["ts"] = copy.ts
                do { _ = try await api.call("chat.update", body) } catch let failure as SlackAPI.Failure where failure.isPermanent {
                    logger.info("a Slack copy can no longer be updated", metadata: ["channel": "\(copy.channel)", "error": "\(failure)"])
                } catch {
                    failures.append("\(copy.channel): \(error)")
                }
            }
            if !failures.isEmpty { throw SlackAPI.Failure(description: failures.joined(separator: "; ")) }
            shown = now
        }
    }
}

/// `POST /v1/integrations/slack/interactions`: Slack's signed callbacks for the buttons and the Deny
/// modal. Answers at once (Slack waits 3 seconds) and does the work after, answering the person
/// with an ephemeral message. A click Slack did not sign, or signed over 5 minutes ago, decides nothing.
final class SlackInteractions: Sendable {
    let service: UseCases
    let logger: Logger
    /// Interactions handled in the last 10 minutes: a repeated delivery is answered and dropped.
    private let seen = Mutex<[String: Date]>([:])

    init(service: UseCases, logger: Logger) {
        self.service = service
        self.logger = logger
    }

    static let path = "/v1/integrations/slack/interactions"

    func register(on router: Router<GatehouseRequestContext>) {
        router.post(RouterPath(Self.path)) { request, _ in try await self.handle(request) }
    }

    func handle(_ request: Request) async throws -> Response {
        guard let settings = service.policies.policy.notifications.slack else {
            throw GatehouseError(.notFound, "slack_not_configured", "this Gatehouse has no Slack app (`notifications.slack` in the policy)")
        }
        var request = request
        let body: ByteBuffer
        do { body = try await request.collectBody(upTo: 64 * 1024) } catch {
            throw GatehouseError(.tooLarge, "body_too_large", "an interaction is at most 64 KiB")
        }
        let bytes = Array(buffer: body)
        let secret: String
        do { secret = try settings.signingSecret.read("the Slack signing secret") } catch {
            logger.error("Slack interaction refused: the signing secret is unavailable", metadata: ["error": "\(error.message)"])
            throw GatehouseError(.unavailable, "slack_secret_unavailable", "the Slack signing secret is not available to this server; nothing was done")
        }
        if let refusal = SlackSignature.check(timestamp: request.headers[.init("x-slack-request-timestamp")!],
                                              signature: request.headers[.init("x-slack-signature")!],
                                              body: bytes, secret: secret, now: service.clock.now()) {
            service.metrics.slackInteraction("refused")
            logger.warning("Slack interaction refused", metadata: ["code": "\(refusal.rawValue)"])
            throw GatehouseError(.unauthorized, refusal.rawValue, refusal.message)
        }
        let interaction: SlackInteraction
        do { interaction = try SlackInteraction.parse(formBody: bytes) } catch {
            throw GatehouseError.invalid("payload", "slack_payload_invalid", error.message)
        }
        let api = SlackAPI(settings: settings, client: SlackAPI.http)
        // A Slack Connect guest from another organisation decides nothing.
        guard interaction.team == settings.teamID, interaction.userTeam.map({ $0 == settings.teamID }) ?? true else {
            if firstDelivery(interaction.deliveryKey) {
                Task { await self.refuse(interaction, requestId: nil, principal: nil, code: "slack_workspace_refused",
                                         message: "only people of Gatehouse's own Slack workspace decide from Slack", api: api) }
            }
            return Response(status: .ok)
        }
        // Forms are checked before anything is remembered: a corrected form comes back with the same view id and hash.
        switch interaction.kind {
        case .deny(_, let comment):
            let trimmed = comment.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty || trimmed.count > SlackInteraction.commentLimit {
                return Self.json(["response_action": "errors", "errors": [SlackInteraction.commentBlock: "Say why, in 1 to 1000 characters: the requester reads it."]])
            }
        case .link(let code):
            if SlackInteraction.normalizedLinkCode(code) == nil {
                return Self.json(["response_action": "errors", "errors": [SlackInteraction.codeBlock: "A link code is 8 letters and digits, like K7QF-9XMW."]])
            }
        default:
            break
        }
        guard firstDelivery(interaction.deliveryKey) else {
            service.metrics.slackInteraction("repeated")
            return Response(status: .ok)
        }
        service.metrics.slackInteraction("accepted")
        switch interaction.kind {
        case .ignored:
            return Response(status: .ok)
        case .unknown(let what):
            Task { await self.refuse(interaction, requestId: nil, principal: nil, code: "slack_unknown_action", message: "Gatehouse has no action `\(what)`; nothing was decided", api: api) }
            return Response(status: .ok)
        case .approve(let id):
            Task { await self.decide(interaction, requestId: id, decision: .approve, comment: nil, api: api) }
            return Response(status: .ok)
        case .openDeny(let id, let trigger):
            // Slack's trigger lasts 3 seconds: the form opens first; who may deny is checked when it is sent.
            Task { await self.openDeny(interaction, requestId: id, trigger: trigger, api: api) }
            return Response(status: .ok)
        case .deny(let id, let comment):
            let trimmed = comment.trimmingCharacters(in: .whitespacesAndNewlines)
            Task { await self.decide(interaction, requestId: id, decision: .deny, comment: trimmed, api: api) }
            return Response(status: .ok)
        case .startLink(let trigger):
            Task {
                do { _ = try await api.call("views.open", ["trigger_id": trigger, "view": SlackMessages.linkModal(responseURL: interaction.responseURL)]) } catch {
                    await api.respond(to: interaction.responseURL, SlackMessages.ephemeral("Gatehouse could not open the link form (\(error)); click the button again."))
                }
            }
            return Response(status: .ok)
        case .link(let code):
            return await link(interaction, code: code, api: api)
        }
    }

    /// Tries of a link code per Slack account: 5 wrong codes in 15 minutes, then no more.
    private let linkTries = Mutex<[String: [Date]]>([:])

    func link(_ interaction: SlackInteraction, code: String, api: SlackAPI) async -> Response {
        let now = Date()
        let recent = linkTries.withLock { tries in
            tries[interaction.user] = (tries[interaction.user] ?? []).filter { now.timeIntervalSince($0) < 900 }
            return tries[interaction.user]?.count ?? 0
        }
        guard recent < 5 else {
            return Self.json(["response_action": "errors", "errors": [SlackInteraction.codeBlock: "Too many wrong codes from this account; try again in 15 minutes."]])
        }
        do {
            let profile = try await api.profile(user: interaction.user, team: interaction.team)
            switch try await service.slack.link(profile: profile, code: code) {
            case .success(let principal):
                await api.respond(to: interaction.responseURL, SlackMessages.ephemeral("This Slack account is linked to \(principal): its Approve and Deny clicks count as \(principal)'s. Click again to decide."))
                return Self.json(["response_action": "clear"])
            case .failure(let refusal):
                linkTries.withLock { $0[interaction.user, default: []].append(now) }
                forget(interaction.deliveryKey)
                await service.slack.refused(interaction, requestId: nil, principal: nil, code: refusal.code, message: refusal.message)
                return Self.json(["response_action": "errors", "errors": [SlackInteraction.codeBlock: String(refusal.message.prefix(150))]])
            }
        } catch {
            forget(interaction.deliveryKey)
            logger.warning("Slack link failed", metadata: ["user": "\(interaction.user)", "error": "\(error)"])
            return Self.json(["response_action": "errors", "errors": [SlackInteraction.codeBlock: "Gatehouse could not link the account just now; try again."]])
        }
    }

    func forget(_ key: String) {
        _ = seen.withLock { $0.removeValue(forKey: key) }
    }

    func firstDelivery(_ key: String) -> Bool {
        let now = Date()
        return seen.withLock { seen in
            if seen.count > 10_000 { seen = seen.filter { now.timeIntervalSince($0.value) < 600 } }
            if let at = seen[key], now.timeIntervalSince(at) < 600 { return false }
            seen[key] = now
            return true
        }
    }

    /// The caller behind a click, or nil after telling the person why not.
    func caller(_ interaction: SlackInteraction, requestId: String, api: SlackAPI) async -> Caller? {
        do {
            let profile = try await api.profile(user: interaction.user, team: interaction.team)
            switch try await service.slack.caller(profile: profile) {
            case .success(let caller): return caller
            case .failure(let refusal):
                await refuse(interaction, requestId: requestId, principal: nil, code: refusal.code, message: refusal.message, api: api)
                return nil
            }
        } catch let error as GatehouseError {
            await refuse(interaction, requestId: requestId, principal: nil, code: error.code, message: error.message, api: api)
        } catch {
            logger.warning("Slack user could not be looked up", metadata: ["user": "\(interaction.user)", "error": "\(error)"])
            await api.respond(to: interaction.responseURL, SlackMessages.ephemeral("Gatehouse could not ask Slack who you are (\(error)); nothing was decided. Try again, or use the web inbox."))
        }
        return nil
    }

    func decide(_ interaction: SlackInteraction, requestId: String, decision: ApprovalDecision, comment: String?, api: SlackAPI) async {
        guard let caller = await caller(interaction, requestId: requestId, api: api) else { return }
        do {
            let view = try await service.slack.decide(caller: caller, requestId: requestId, decision: decision, comment: comment)
            let counted = view.approvals.filter { $0.decision == .approve }.count
            let text: String
            switch view.request.state {
            case .approved: text = "You approved \(requestId); \(view.request.requester) now holds the access."
            case .denied: text = "You denied \(requestId)."
            default: text = "Your approval of \(requestId) is recorded (\(counted) of \(max(view.request.approvalsRequired, 1)))."
            }
            service.metrics.slackInteraction(decision == .approve ? "approved" : "denied")
            await api.respond(to: interaction.responseURL, SlackMessages.ephemeral(text))
        } catch let error as GatehouseError {
            await refuse(interaction, requestId: requestId, principal: caller.principal, code: error.code, message: error.message, api: api)
        } catch {
            await refuse(interaction, requestId: requestId, principal: caller.principal, code: "internal", message: "the decision failed; nothing was decided", api: api)
        }
    }

    func openDeny(_ interaction: SlackInteraction, requestId: String, trigger: String, api: SlackAPI) async {
        do {
            guard let view = try await service.slack.requestForMessage(requestId), view.request.state == .pending else {
                await refuse(interaction, requestId: requestId, principal: nil, code: "not_decidable", message: "\(requestId) is not waiting for a decision any more", api: api)
                return
            }
            _ = try await api.call("views.open", ["trigger_id": trigger, "view": SlackMessages.denyModal(view.request, responseURL: interaction.responseURL)])
        } catch {
            await api.respond(to: interaction.responseURL, SlackMessages.ephemeral("Gatehouse could not open the Deny form (\(error)); nothing was decided. Deny it in the web inbox instead."))
        }
    }

    func refuse(_ interaction: SlackInteraction, requestId: String?, principal: String?, code: String, message: String, api: SlackAPI) async {
        service.metrics.slackInteraction("refused")
        await service.slack.refused(interaction, requestId: requestId, principal: principal, code: code, message: message)
        let text = "Nothing was decided: \(message)"
        await api.respond(to: interaction.responseURL, code == "slack_not_linked" ? SlackMessages.notLinked(text) : SlackMessages.ephemeral(text))
    }

    static func json(_ object: [String: Any]) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: WebhookMessage.jsonBytes(object))))
    }
}
