import Crypto
import Foundation

/// Where a secret is kept: an environment variable or a file, never the policy itself.
public enum SecretReference: Sendable, Equatable {
    case environment(String)
    case file(String)

    /// The secret, read now (surrounding whitespace dropped); `what` names it in the error.
    public func read(_ what: String) throws(SecretUnavailable) -> String {
        try read(what, variable: SecretReference.processVariable)
    }

    /// The same, with environment variables taken from `environment`.
    public func read(_ what: String, environment: [String: String]) throws(SecretUnavailable) -> String {
        try read(what) { environment[$0] }
    }

    /// One variable of this process's environment. (`ProcessInfo.environment` copies the whole environment
    /// into a dictionary; secrets are read for every message sent.)
    public static func processVariable(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    private func read(_ what: String, variable: (String) -> String?) throws(SecretUnavailable) -> String {
        switch self {
        case .environment(let name):
            guard let value = variable(name)?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty else {
                throw SecretUnavailable(message: "environment variable \(name), which should hold \(what), is not set")
            }
            return value
        case .file(let path):
            let text: String
            do { text = try TextFile.read(path) } catch {
                throw SecretUnavailable(message: "cannot read \(path), which should hold \(what): \(error.why)")
            }
            let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !value.isEmpty else { throw SecretUnavailable(message: "\(path), which should hold \(what), is empty") }
            return value
        }
    }
}

public struct SecretUnavailable: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// `notifications.slack`: request messages posted with Slack's Web API, with Approve and Deny
/// buttons whose clicks come back, signed, to `/v1/integrations/slack/interactions`.
public struct SlackSettings: Sendable, Equatable {
    /// The bot token (`xoxb-...`): `chat:write`, `users:read`, `users:read.email`.
    public var botToken: SecretReference
    /// The app's signing secret: every interaction Slack sends is signed with it.
    public var signingSecret: SecretReference
    /// The workspace (`T0123ABCD`) whose people may click: anyone else (a Slack Connect guest from
    /// another organisation) decides nothing.
    public var teamID: String
    /// Slack's Web API (another URL only for a stand-in).
    public var apiURL = "https://slack.com/api"
    /// Where request messages go when no route names a channel.
    public var channel: String?
    /// Resource → channel.
    public var resourceChannels: [String: String] = [:]
    /// Approver group → channel: a request goes to the channel of each group that may approve it.
    public var approverGroupChannels: [String: String] = [:]
    /// Also a direct message to each approver told at once who has linked their Slack account.
    public var directMessages = false
    /// How long one Web API call may take.
    public var timeout = TimeSpan(seconds: 10)

    public init(botToken: SecretReference, signingSecret: SecretReference, teamID: String) {
        self.botToken = botToken
        self.signingSecret = signingSecret
        self.teamID = teamID
    }

    /// The channels a request's message goes to: its resource's channel and the channels of the
    /// groups that may approve it; the default channel when no route applies.
    public func channels(for request: AccessRequest, policy: Policy) -> [String] {
        var out: [String] = []
        if let channel = resourceChannels[request.resource] { out.append(channel) }
        let approvers = policy.resources[request.resource]?.role(named: request.role)?.approvers ?? []
        for group in approvers { if let channel = approverGroupChannels[group], !out.contains(channel) { out.append(channel) } }
        if out.isEmpty, let channel { out.append(channel) }
        return out
    }

    /// A channel id (`C0123ABCD`, `G...`) or a public channel's name (`#access-requests`).
    public static func isChannel(_ text: String) -> Bool {
        if text.hasPrefix("#") {
            let name = text.dropFirst()
            return (1...80).contains(name.count) && name.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" || $0 == "_" }
        }
        guard let first = text.first, "CG".contains(first), (9...20).contains(text.count) else { return false }
        return text.allSatisfy { $0.isASCII && ($0.isUppercase || $0.isNumber) }
    }

    /// Slack's user, team and similar ids: upper-case letters and digits.
    public static func isSlackID(_ text: String) -> Bool {
        (2...32).contains(text.count) && text.allSatisfy { $0.isASCII && ($0.isUppercase || $0.isNumber) }
    }
}

/// Slack's request signing: `X-Slack-Signature: v0=` + hex HMAC-SHA256 of `v0:<timestamp>:<body>`
/// under the signing secret, with `X-Slack-Request-Timestamp` at most five minutes from now.
public enum SlackSignature {
    public static let maximumAge: TimeInterval = 300

    public enum Refusal: String, Sendable, Equatable {
        case missing = "slack_signature_missing"
        case stale = "slack_timestamp_stale"
        case mismatch = "slack_signature_invalid"

        public var message: String {
            switch self {
            case .missing: "the interaction carries no X-Slack-Signature and X-Slack-Request-Timestamp; only Slack may call this endpoint"
            case .stale: "the interaction's X-Slack-Request-Timestamp is more than 5 minutes from now (a replay, or a clock off); nothing was done"
            case .mismatch: "the X-Slack-Signature does not match the body under the app's signing secret; nothing was done"
            }
        }
    }

    public static func signature(timestamp: String, body: [UInt8], secret: String) -> String {
        var content = Array("v0:\(timestamp):".utf8)
        content += body
        let mac = HMAC<SHA256>.authenticationCode(for: content, using: SymmetricKey(data: Array(secret.utf8)))
        return "v0=" + Hex.encode(Array(mac))
    }

    /// Nil when the interaction is Slack's, and recent.
    public static func check(timestamp: String?, signature: String?, body: [UInt8], secret: String, now: Date) -> Refusal? {
        guard let timestamp, let signature, !signature.isEmpty else { return .missing }
        guard let seconds = Int64(timestamp), abs(now.timeIntervalSince1970 - Double(seconds)) <= maximumAge else { return .stale }
        let expected = Self.signature(timestamp: timestamp, body: body, secret: secret)
        return TokenSecret.constantTimeEqual(signature.utf8, Array(expected.utf8)) ? nil : .mismatch
    }
}

/// What a person did in Slack, read from the `payload` form field Slack posts.
public struct SlackInteraction: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// A click on Approve.
        case approve(requestId: String)
        /// A click on Deny: open the modal that asks for the comment.
        case openDeny(requestId: String, triggerId: String)
        /// The Deny modal was submitted with its comment.
        case deny(requestId: String, comment: String)
        /// A click on "Enter a link code": open the modal that asks for it.
        case startLink(triggerId: String)
        /// The link modal was submitted with the code the web inbox showed its person.
        case link(code: String)
        /// A click Gatehouse has nothing to do for (the link button), or a modal closed.
        case ignored
        /// A button or modal Gatehouse never made.
        case unknown(String)
    }

    public static let approveAction = "gatehouse_approve"
    public static let denyAction = "gatehouse_deny"
    public static let openAction = "gatehouse_open"
    public static let denyModal = "gatehouse_deny"
    public static let linkAction = "gatehouse_link"
    public static let linkModal = "gatehouse_link"
    public static let commentBlock = "comment"
    public static let codeBlock = "code"
    public static let commentLimit = 1000

    public var kind: Kind
    public var team: String
    public var user: String
    /// The workspace of the user, when Slack names it (it differs from `team` for a Slack Connect guest).
    public var userTeam: String?
    /// Where an ephemeral answer goes (for a modal: the one of the click that opened it).
    public var responseURL: String?
    /// One id per interaction; a delivery Slack repeats carries the same one.
    public var deliveryKey: String

    public struct Malformed: Error, Sendable, Equatable {
        public var message: String
    }

    /// Reads Slack's `application/x-www-form-urlencoded` body: `payload=<JSON>`.
    public static func parse(formBody body: [UInt8]) throws(Malformed) -> SlackInteraction {
        let text = String(decoding: body, as: UTF8.self)
        var payload: String?
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, parts[0] == "payload" else { continue }
            payload = String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding
        }
        guard let payload, let object = (try? JSONSerialization.jsonObject(with: Data(payload.utf8))) as? [String: Any] else {
            throw Malformed(message: "the body must be a form with a `payload` field holding Slack's interaction JSON")
        }
        return try parse(payload: object)
    }

    public static func parse(payload: [String: Any]) throws(Malformed) -> SlackInteraction {
        let type = payload["type"] as? String ?? ""
        guard let user = (payload["user"] as? [String: Any])?["id"] as? String, isSlackIDValue(user) else {
            throw Malformed(message: "the interaction names no Slack user (`user.id`)")
        }
        let userTeam = (payload["user"] as? [String: Any])?["team_id"] as? String
        let team = ((payload["team"] as? [String: Any])?["id"] as? String) ?? userTeam ?? ""
        guard SlackSettings.isSlackID(team) else { throw Malformed(message: "the interaction names no Slack workspace (`team.id`)") }
        func make(_ kind: Kind, _ responseURL: String?, _ key: String) -> SlackInteraction {
            SlackInteraction(kind: kind, team: team, user: user, userTeam: userTeam, responseURL: responseURL, deliveryKey: key)
        }
        let trigger = payload["trigger_id"] as? String ?? ""
        switch type {
        case "block_actions":
            guard let action = (payload["actions"] as? [[String: Any]])?.first, let actionId = action["action_id"] as? String else {
                throw Malformed(message: "a block_actions interaction without `actions`")
            }
            let value = action["value"] as? String ?? ""
            let key = "\(trigger)|\(action["action_ts"] as? String ?? "")|\(actionId)"
            let responseURL = payload["response_url"] as? String
            let kind: Kind
            switch actionId {
            case approveAction where isRequestId(value): kind = .approve(requestId: value)
            case denyAction where isRequestId(value) && !trigger.isEmpty: kind = .openDeny(requestId: value, triggerId: trigger)
            case linkAction where !trigger.isEmpty: kind = .startLink(triggerId: trigger)
            case openAction: kind = .ignored
            default: kind = .unknown(String(actionId.prefix(80)))
            }
            return make(kind, responseURL, key)
        case "view_submission", "view_closed":
            guard let view = payload["view"] as? [String: Any] else { throw Malformed(message: "a \(type) interaction without `view`") }
            let callback = view["callback_id"] as? String ?? ""
            let key = "\(view["id"] as? String ?? "")|\(view["hash"] as? String ?? "")|\(type)"
            guard type == "view_submission" else { return make(.ignored, nil, key) }
            let metadata = (view["private_metadata"] as? String).flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) } as? [String: Any] ?? [:]
            let values = (view["state"] as? [String: Any])?["values"] as? [String: Any]
            func value(_ block: String) -> String { ((values?[block] as? [String: Any])?[block] as? [String: Any])?["value"] as? String ?? "" }
            let responseURL = metadata["response_url"] as? String
            switch callback {
            case denyModal:
                guard let requestId = metadata["request_id"] as? String, isRequestId(requestId) else {
                    throw Malformed(message: "the Deny form names no request")
                }
                return make(.deny(requestId: requestId, comment: value(commentBlock)), responseURL, key)
            case linkModal:
                return make(.link(code: value(codeBlock)), responseURL, key)
            default:
                return make(.unknown(String(callback.prefix(80))), nil, key)
            }
        default:
            return make(.unknown(String(type.prefix(80))), nil, "\(trigger)|\(type)")
        }
    }

    static func isSlackIDValue(_ text: String) -> Bool { SlackSettings.isSlackID(text) }

    static func isRequestId(_ text: String) -> Bool { text.hasPrefix("req_") && Identifier.isWellFormed(text) }

    /// Whether an answer may be sent to this `response_url`: Slack's own hooks, or a stand-in on
    /// this machine that the policy's `api_url` names (same scheme, host and port). Anything else
    /// could be a payload aiming Gatehouse at an internal address.
    public static func isResponseURLAllowed(_ url: String, apiURL: String) -> Bool {
        guard let target = URLComponents(string: url), let host = target.host?.lowercased(), target.scheme?.lowercased() == "https" || target.scheme?.lowercased() == "http" else { return false }
        if target.scheme?.lowercased() == "https", host == "hooks.slack.com", target.port == nil { return true }
        guard let api = URLComponents(string: apiURL), let apiHost = api.host?.lowercased(), ProxySettings.isLoopback(apiHost) else { return false }
        return api.scheme?.lowercased() == target.scheme?.lowercased() && apiHost == host && api.port == target.port
    }

    /// A link code as the web inbox shows it (`K7QF-9XMW`), read leniently: case, spaces and dashes do not matter.
    public static func normalizedLinkCode(_ text: String) -> String? {
        let kept = text.uppercased().filter { !$0.isWhitespace && $0 != "-" }
        guard kept.count == 8, kept.allSatisfy({ LinkCode.alphabet.contains($0) }) else { return nil }
        return kept
    }
}

/// What Slack's `users.info` says of the person who clicked.
public struct SlackProfile: Sendable, Equatable {
    public var user: String
    public var team: String
    /// The name Slack shows (real name, else display name).
    public var name: String?
    public var email: String?
    public var emailConfirmed: Bool
    public var deleted: Bool
    public var isBot: Bool

    public init(user: String, team: String, name: String? = nil, email: String?, emailConfirmed: Bool, deleted: Bool, isBot: Bool) {
        self.user = user
        self.name = name
        self.team = team
        self.email = email
        self.emailConfirmed = emailConfirmed
        self.deleted = deleted
        self.isBot = isBot
    }

    /// How the web inbox names this account when someone links it: name, e-mail and id.
    public var label: String {
        let parts = [name.map { TextRules.visible($0) }, email.map { TextRules.visible($0) }].compactMap { $0 }.filter { !$0.isEmpty }
        return String(((parts.isEmpty ? "" : parts.joined(separator: ", ") + " · ") + "Slack user \(user) in workspace \(team)").prefix(300))
    }

    /// The e-mail address to match with the identity provider's, or nil when Slack has not confirmed it.
    public var confirmedEmail: String? {
        guard emailConfirmed, !deleted, !isBot, let email, email.unicodeScalars.allSatisfy(\.isASCII), email.contains("@") else { return nil }
        return email.lowercased()
    }
}

/// One piece of Slack work kept in the outbox (endpoint `slack:<channel>`, `slack:@<principal>` or
/// `slack:update`): what to render and send when it is due.
public enum SlackOperation: Sendable, Equatable {
    /// Post a request's message (its state when sent).
    case post(requestId: String)
    /// Update every posted copy of a request's message.
    case update(requestId: String)
    /// A digest for one recipient.
    case digest(recipient: String, requestIds: [String])
    /// A message rendered already (break-glass).
    case notice(message: String)

    public static let endpointPrefix = "slack:"

    public var kind: String {
        switch self {
        case .post: "post"
        case .update: "update"
        case .digest: "digest"
        case .notice: "notice"
        }
    }

    public var encoded: String {
        var object: [String: Any] = ["op": kind]
        switch self {
        case .post(let id), .update(let id): object["request_id"] = id
        case .digest(let recipient, let ids):
            object["recipient"] = recipient
            object["request_ids"] = ids
        case .notice(let message): object["message"] = message
        }
        return String(decoding: WebhookMessage.json(object), as: UTF8.self)
    }

    public static func decode(_ text: String) -> SlackOperation? {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else { return nil }
        switch object["op"] as? String {
        case "post": return (object["request_id"] as? String).map { .post(requestId: $0) }
        case "update": return (object["request_id"] as? String).map { .update(requestId: $0) }
        case "digest":
            guard let recipient = object["recipient"] as? String else { return nil }
            return .digest(recipient: recipient, requestIds: object["request_ids"] as? [String] ?? [])
        case "notice": return (object["message"] as? String).map { .notice(message: $0) }
        default: return nil
        }
    }
}

/// The one-time code a signed-in person makes in the web inbox and types into Slack's link form:
/// whoever types it in Slack proves they saw the inbox page of that person. 8 characters of an
/// alphabet without look-alikes (40 bits), 10 minutes, once, and few tries per Slack account.
public enum LinkCode {
    public static let alphabet = Array("ABCDEFGHJKMNPQRSTVWXYZ23456789")
    public static let lifetime: TimeInterval = 600

    public static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        let chars = (0..<8).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] }
        return String(chars.prefix(4)) + "-" + String(chars.suffix(4))
    }
}
