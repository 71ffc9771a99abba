import Crypto
import Foundation
import GatehouseCore
import GatehouseTestSupport
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// A local stand-in for Slack: the Web API methods Gatehouse calls (`chat.postMessage`,
/// `chat.update`, `views.open`, `users.info`) with Slack's answers and errors, a `response_url`
/// hook, and the signed interaction payloads Slack posts when someone clicks.
final class SlackStandIn: Sendable {
    static let botToken = "xoxb-test-0000000000-abcdefabcdef"
    static let signingSecret = "8f742231b10e8888abcd99yyyzzz85a5"
    static let team = "T0GATEHSE"

    struct Call: Sendable {
        var method: String
        var data: Data
        var body: [String: Any] { (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:] }
        var channel: String? { body["channel"] as? String }
        var blocks: [[String: Any]] { body["blocks"] as? [[String: Any]] ?? [] }
        /// Whether the message still offers Approve and Deny.
        var hasButtons: Bool {
            blocks.contains { ($0["elements"] as? [[String: Any]])?.contains { $0["action_id"] as? String == SlackInteraction.approveAction } == true }
        }
        var text: String { String(decoding: data, as: UTF8.self) }
    }

    struct User: Sendable {
        var id: String
        var email: String?
        var confirmed: Bool
        var deleted = false
    }

    actor State {
        var calls: [Call] = []
        /// Ephemeral answers: to whom (the user the response_url was made for), and the text.
        var responses: [(user: String, text: String)] = []
        var users: [String: User] = [:]
        var nextTs = 1_700_000_000
        /// Answer this many `chat.postMessage` calls with HTTP 503 (Slack unreachable) before working.
        var failPosts = 0
        var failedPosts = 0

        func setFailPosts(_ count: Int) { failPosts = count }
        func shouldFail(_ method: String) -> Bool {
            guard method == "chat.postMessage", failedPosts < failPosts else { return false }
            failedPosts += 1
            return true
        }

        func record(_ method: String, _ data: Data) -> String {
            calls.append(Call(method: method, data: data))
            nextTs += 1
            return "\(nextTs).000100"
        }
        func respond(_ user: String, _ text: String) { responses.append((user, text)) }
        func add(_ user: User) { users[user.id] = user }
        func user(_ id: String) -> User? { users[id] }
    }

    let state: State
    private let server: LocalHTTPServer
    var port: Int { server.port }

    var apiURL: String { "http://127.0.0.1:\(port)/api" }
    var responseURL: String { "http://127.0.0.1:\(port)/respond" }

    static func start() async throws -> SlackStandIn {
        let state = State()
        let router = Router()
        router.post("/api/:method") { request, context -> Response in
            var request = request
            let method = context.parameters.get("method") ?? ""
            let body = Array(buffer: try await request.collectBody(upTo: 1 << 20))
            guard request.headers[.authorization] == "Bearer \(botToken)" else { return json(["ok": false, "error": "invalid_auth"]) }
            switch method {
            case "users.info":
                let form = String(decoding: body, as: UTF8.self)
                let id = form.split(separator: "&").first { $0.hasPrefix("user=") }.map { String($0.dropFirst(5)) } ?? ""
                guard let user = await state.user(id) else { return json(["ok": false, "error": "user_not_found"]) }
                var profile: [String: Any] = ["real_name": "Person \(id)", "display_name": id.lowercased()]
                if let email = user.email { profile["email"] = email }
                return json(["ok": true, "user": ["id": id, "team_id": team, "name": id.lowercased(), "deleted": user.deleted, "is_bot": false,
                                                  "is_email_confirmed": user.confirmed, "profile": profile]])
            case "chat.postMessage", "chat.update", "views.open":
                if await state.shouldFail(method) { return Response(status: .serviceUnavailable) }
                guard let object = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
                    return json(["ok": false, "error": "invalid_json"])
                }
                if method != "views.open", object["text"] == nil, object["blocks"] == nil { return json(["ok": false, "error": "no_text"]) }
                let channel = object["channel"] as? String ?? ""
                let ts = await state.record(method, Data(body))
                if method == "views.open" { return json(["ok": true, "view": ["id": "V0MODAL01"]]) }
                return json(["ok": true, "channel": channel, "ts": object["ts"] as? String ?? ts])
            default:
                return json(["ok": false, "error": "unknown_method"])
            }
        }
        router.post("/respond") { request, _ -> Response in
            var request = request
            let user = request.uri.queryParameters["for"].map(String.init) ?? ""
            let body = Array(buffer: try await request.collectBody(upTo: 1 << 20))
            if let object = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] {
                await state.respond(user, object["text"] as? String ?? "")
            }
            return Response(status: .ok)
        }
        let server = await LocalHTTPServer.start(router, label: "slack-stand-in")
        return SlackStandIn(state: state, server: server)
    }

    static func json(_ object: [String: Any]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object)) ?? Data()
        return Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    private init(state: State, server: LocalHTTPServer) {
        self.state = state
        self.server = server
    }

    func stop() async { await server.stop() }

    // MARK: what Slack sends

    /// A button click as Slack posts it: `payload=<JSON>`, form-encoded, signed.
    func click(_ action: String, request id: String, user: String, trigger: String = UUID().uuidString, team: String = team) -> [UInt8] {
        let payload: [String: Any] = [
            "type": "block_actions", "team": ["id": team, "domain": "gatehouse"], "user": ["id": user, "team_id": team],
            "api_app_id": "A0GATEHSE", "trigger_id": trigger, "response_url": responseURL + "?for=\(user)",
            "container": ["type": "message", "channel_id": "C0GENERAL01", "message_ts": "1700000001.000100"],
            "actions": [["type": "button", "action_id": action, "block_id": "decide", "value": id, "action_ts": "\(Date().timeIntervalSince1970)"]],
        ]
        return Self.form(payload)
    }

    /// A modal submitted, as Slack posts it: the view Gatehouse opened with what was typed into its
    /// one input. A view keeps its id and hash when it is sent again after Gatehouse refused it.
    func submit(_ modal: [String: Any], _ typed: String, user: String) -> [UInt8] {
        var view = modal
        let block = modal["callback_id"] as? String == SlackInteraction.linkModal ? SlackInteraction.codeBlock : SlackInteraction.commentBlock
        view["id"] = "V0\(block.uppercased())\(user)"
        view["hash"] = "1700000000.\(block)"
        view["state"] = ["values": [block: [block: ["type": "plain_text_input", "value": typed]]]]
        let payload: [String: Any] = ["type": "view_submission", "team": ["id": Self.team], "user": ["id": user, "team_id": Self.team],
                                      "api_app_id": "A0GATEHSE", "trigger_id": UUID().uuidString, "view": view]
        return Self.form(payload)
    }

    static func form(_ payload: [String: Any]) -> [UInt8] {
        let text = String(decoding: (try? JSONSerialization.data(withJSONObject: payload)) ?? Data(), as: UTF8.self)
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return Array("payload=\(text.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")".utf8)
    }

    /// The headers Slack signs a delivery with (`secret` and `at` let a test forge or age them).
    static func headers(for body: [UInt8], secret: String = signingSecret, at: Date = Date()) -> [(String, String)] {
        let timestamp = "\(Int64(at.timeIntervalSince1970))"
        return [("X-Slack-Request-Timestamp", timestamp), ("X-Slack-Signature", SlackSignature.signature(timestamp: timestamp, body: body, secret: secret))]
    }

    func calls(_ method: String) async -> [Call] { await state.calls.filter { $0.method == method } }
    func responses(for user: String) async -> [String] {
        await state.responses.filter { $0.user == user }.map(\.text)
    }
}
