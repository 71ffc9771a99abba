import Crypto
import Foundation

/// What a webhook endpoint can subscribe to. Each is derived from one audit event, so an event
/// is sent only once its state change has committed, and never twice under two ids.
public enum WebhookEvent: String, Sendable, CaseIterable, Codable {
    case requestCreated = "request.created"
    case requestApproved = "request.approved"
    case requestDenied = "request.denied"
    case requestExpired = "request.expired"
    case requestQuarantined = "request.quarantined"
    case requestReported = "request.reported"
    case grantStarted = "grant.started"
    case grantEnded = "grant.ended"
    case breakGlassUsed = "break_glass.used"
    case breakGlassReviewed = "break_glass.reviewed"
    case digest = "digest"

    /// The webhook event an audit action is announced as, or nil when it is not announced.
    public init?(auditAction: String) {
        guard let action = AuditAction(rawValue: auditAction) else { return nil }
        self.init(auditAction: action)
    }

    public init?(auditAction: AuditAction) {
        switch auditAction {
        // A request a reviewer released from quarantine reaches its approvers only now.
        case .requestCreated, .requestReleased: self = .requestCreated
        case .requestApproved: self = .requestApproved
        case .requestDenied: self = .requestDenied
        case .requestExpired: self = .requestExpired
        case .requestQuarantined: self = .requestQuarantined
        case .requestReported: self = .requestReported
        case .grantStarted: self = .grantStarted
        case .grantExpired, .grantReleased, .grantRevoked, .grantUsed: self = .grantEnded
        case .breakGlassUsed: self = .breakGlassUsed
        case .breakGlassReviewed: self = .breakGlassReviewed
        case .notificationDigest: self = .digest
        case .tokenCreated, .tokenRevoked, .webSignedIn, .signedIn, .signInRefused, .signedOut, .sessionsRevoked, .requestCanceled, .requestLimited, .requestExtraApproval, .requestRejected,
             .approvalRecorded, .actionChecked, .principalBlocked, .principalThrottled, .principalUnblocked, .breakGlassRefused,
             .webhookFailed, .policyReloaded, .policyReloadRefused, .proxySessionStarted, .proxySessionRefused, .proxySessionEnded,
             .proxyRefused, .storeImported, .slackLinked, .slackUnlinked, .slackRefused:
            return nil
        }
    }
}

/// One webhook endpoint from `notifications.webhooks`.
public struct WebhookEndpoint: Sendable, Equatable {
    public enum Format: String, Sendable, Equatable, CaseIterable {
        /// Standard Webhooks: a JSON event signed with HMAC-SHA256.
        case standard
        /// A Slack-compatible message (Block Kit) for an incoming-webhook URL.
        case slack
    }

    public typealias SecretSource = SecretReference

    public var name: String
    public var url: String
    public var format: Format
    public var events: Set<WebhookEvent>
    /// The signing secret (`whsec_` and base64), read when a message is signed; required for `standard`.
    public var secret: SecretSource?
    /// How long one delivery attempt may take before it counts as failed.
    public var timeout: TimeSpan

    public init(name: String, url: String, format: Format = .standard, events: Set<WebhookEvent> = Set(WebhookEvent.allCases),
                secret: SecretSource? = nil, timeout: TimeSpan = TimeSpan(seconds: 10)) {
        self.name = name
        self.url = url
        self.format = format
        self.events = events
        self.secret = secret
        self.timeout = timeout
    }

    /// The secret's key bytes, read now (from this process's environment, or the file).
    public func signingKey() throws(WebhookSecretError) -> SymmetricKey? {
        try signingKey(variable: SecretReference.processVariable)
    }

    /// The secret's key bytes, with environment variables taken from `environment`.
    public func signingKey(environment: [String: String]) throws(WebhookSecretError) -> SymmetricKey? {
        try signingKey { environment[$0] }
    }

    private func signingKey(variable: (String) -> String?) throws(WebhookSecretError) -> SymmetricKey? {
        guard let secret else { return nil }
        let text: String
        switch secret {
        case .environment(let name):
            guard let value = variable(name), !value.isEmpty else {
                throw WebhookSecretError(message: "environment variable \(name), which should hold the signing secret of webhook `\(self.name)`, is not set")
            }
            text = value
        case .file(let path):
            do { text = try TextFile.read(path) } catch {
                throw WebhookSecretError(message: "cannot read \(path), the signing secret of webhook `\(name)`: \(error.why)")
            }
        }
        return try StandardWebhooks.key(fromSecret: text.trimmingCharacters(in: .whitespacesAndNewlines), endpoint: name)
    }
}

public struct WebhookSecretError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// How failed deliveries are retried: the delay doubles from `initial` up to `maximum`; after
/// `attempts` tries the delivery is given up and audited.
public struct RetrySchedule: Sendable, Equatable {
    public var initial = TimeSpan(seconds: 5)
    public var maximum = TimeSpan(seconds: 3600)
    public var attempts = 12

    public init(initial: TimeSpan = TimeSpan(seconds: 5), maximum: TimeSpan = TimeSpan(seconds: 3600), attempts: Int = 12) {
        self.initial = initial
        self.maximum = maximum
        self.attempts = attempts
    }

    /// Seconds to wait after failed attempt number `attempt` (1-based), with up to 20 % jitter
    /// (`jitter` in 0...1) so many failing deliveries do not retry in step.
    public func delay(afterAttempt attempt: Int, jitter: Double) -> TimeInterval {
        let base = Double(initial.seconds) * pow(2, Double(max(0, attempt - 1)))
        let capped = min(base, Double(maximum.seconds))
        return capped * (1 + 0.2 * min(max(jitter, 0), 1))
    }
}

/// The `notifications:` section.
public struct NotificationSettings: Sendable, Equatable {
    public var webhooks: [WebhookEndpoint] = []
    /// Interactive request messages in Slack (`notifications.slack`).
    public var slack: SlackSettings?
    /// The public address of the web inbox, for links in messages (`https://gatehouse.example.com`).
    public var baseURL: String?
    /// How long a digest collects requests before it is sent.
    public var digestInterval = TimeSpan(seconds: 3600)
    public var retry = RetrySchedule()

    public init() {}

    public func endpoints(for event: WebhookEvent) -> [WebhookEndpoint] {
        webhooks.filter { $0.events.contains(event) }
    }
}

/// Signing per the Standard Webhooks specification: the HMAC-SHA256 of `id.timestamp.body`
/// under the secret's decoded bytes, sent as `webhook-signature: v1,<base64>`.
public enum StandardWebhooks {
    public static let secretPrefix = "whsec_"

    public static func key(fromSecret secret: String, endpoint: String) throws(WebhookSecretError) -> SymmetricKey {
        guard secret.hasPrefix(secretPrefix), let bytes = Data(base64Encoded: String(secret.dropFirst(secretPrefix.count))) else {
            throw WebhookSecretError(message: "the signing secret of webhook `\(endpoint)` must be `whsec_` followed by base64; make one with `echo whsec_$(openssl rand -base64 32)`")
        }
        guard bytes.count >= 24, bytes.count <= 64 else {
            throw WebhookSecretError(message: "the signing secret of webhook `\(endpoint)` holds \(bytes.count) bytes; use 24 to 64 random bytes (`openssl rand -base64 32`)")
        }
        return SymmetricKey(data: bytes)
    }

    public static func signature(id: String, timestamp: Int64, body: [UInt8], key: SymmetricKey) -> String {
        var content = Array("\(id).\(timestamp).".utf8)
        content += body
        let mac = HMAC<SHA256>.authenticationCode(for: content, using: key)
        return "v1," + Data(mac).base64EncodedString()
    }

    /// Whether any of the space-separated signatures in a `webhook-signature` header is valid.
    public static func verify(id: String, timestamp: Int64, body: [UInt8], signatureHeader: String, key: SymmetricKey) -> Bool {
        let expected = Array(signature(id: id, timestamp: timestamp, body: body, key: key).utf8)
        return signatureHeader.split(separator: " ").contains { candidate in
            TokenSecret.constantTimeEqual(candidate.utf8, expected)
        }
    }
}

/// What a webhook message says about one event: built from the audit event and, for requests,
/// the request as stored when the message is queued.
public struct WebhookMessage: Sendable, Equatable {
    public var id: String
    public var event: WebhookEvent
    public var at: Date
    public var audit: AuditEvent
    public var request: AccessRequest?
    /// Who is told (approvers within their budget, or the break-glass recipients).
    public var recipients: [String]
    public var link: String?

    public init(id: String, event: WebhookEvent, at: Date, audit: AuditEvent, request: AccessRequest?, recipients: [String], link: String?) {
        self.id = id
        self.event = event
        self.at = at
        self.audit = audit
        self.request = request
        self.recipients = recipients
        self.link = link
    }

    /// The message id: one per audit event, the same on every retry and for every endpoint. The
    /// event's hash makes it unique across databases too (a re-created store counts from 1 again).
    public static func id(for event: AuditEvent) -> String { "msg_\(event.seq)_\(event.hash.prefix(16))" }

    /// A one-line summary for people.
    public var summary: String {
        let details = audit.details
        let who = details["principal"] ?? audit.actor
        let target = [audit.resource, details["role"] ?? request?.role].compactMap { $0 }.joined(separator: "/")
        switch event {
        case .requestCreated:
            if let request {
                return "\(request.requester) asks for \(request.action.map { "one \($0.kind.rawValue) action on \(request.resource)" } ?? "\(request.resource)/\(request.role)") for \(request.duration): \(Self.clip(request.reason, 300))"
            }
            return "\(who) filed request \(audit.subject)"
        case .requestApproved: return "\(audit.actor) approved \(who)'s request \(audit.subject) for \(target)"
        case .requestDenied: return "\(audit.actor) denied \(who)'s request \(audit.subject) for \(target)" + (details["comment"].map { ": \(Self.clip($0, 300))" } ?? "")
        case .requestExpired: return "\(who)'s request \(audit.subject) for \(target) expired before anyone decided"
        case .requestQuarantined: return "\(who)'s request \(audit.subject) for \(target) is held for security review" + (details["signals"].map { " (\($0))" } ?? "")
        case .requestReported: return "\(audit.actor) reported \(who)'s request \(audit.subject) as suspicious; \(who) is blocked" + (details["comment"].map { ": \(Self.clip($0, 300))" } ?? "")
        case .grantStarted: return "\(who) now holds \(target) until \(details["expires_at"] ?? "?") (grant \(audit.subject))"
        case .grantEnded: return "\(who)'s grant \(audit.subject) on \(target) ended: \(audit.action.replacingOccurrences(of: "grant.", with: ""))"
        case .breakGlassUsed: return "BREAK-GLASS: \(who) took \(target) until \(details["expires_at"] ?? "?"): \(Self.clip(details["reason"] ?? "", 300))"
        case .breakGlassReviewed: return "\(audit.actor) reviewed \(who)'s break-glass use \(audit.subject): \(Self.clip(details["comment"] ?? "", 300))"
        case .digest: return details["summary"] ?? "requests are waiting for \(details["recipient"] ?? "you")"
        }
    }

    static func clip(_ text: String, _ limit: Int) -> String {
        text.count > limit ? String(text.prefix(limit)) + "…" : text
    }

    /// The Standard Webhooks body: `{"type", "timestamp", "data"}`.
    public func standardBody() -> [UInt8] {
        var data: [String: JSONValue] = [
            "audit_seq": .int(Int(audit.seq)), "audit_action": .string(audit.action), "actor": .string(audit.actor),
            "subject": .string(audit.subject), "summary": .string(summary), "details": .object(audit.details.mapValues(JSONValue.string)),
            "recipients": JSONValue(recipients),
        ]
        if let resource = audit.resource { data["resource"] = .string(resource) }
        if let link { data["url"] = .string(link) }
        if let request { data["request"] = Self.requestObject(request) }
        return JSONValue.object(["type": .string(event.rawValue), "timestamp": .string(at.rfc3339), "data": .object(data)]).bytes()
    }

    /// A Slack-compatible message: a text fallback and Block Kit blocks with a link to the request page.
    public func slackBody() -> [UInt8] {
        func text(_ kind: String, _ text: String) -> JSONValue { ["type": .string(kind), "text": .string(text)] }
        var blocks: [JSONValue] = [
            ["type": "header", "text": text("plain_text", Self.clip(Self.headline(event), 140))],
            ["type": "section", "text": text("plain_text", Self.clip(summary, 2900))],
        ]
        if let request {
            var fields = [
                text("mrkdwn", "*Requester*\n" + Self.slackEscape(request.requester)),
                text("mrkdwn", "*Resource*\n" + Self.slackEscape("\(request.resource)/\(request.role)")),
                text("mrkdwn", "*Duration*\n\(request.duration)"),
                text("mrkdwn", "*State*\n\(request.state.rawValue)"),
            ]
            if let ticket = request.ticket { fields.append(text("mrkdwn", "*Ticket*\n" + Self.slackEscape(ticket))) }
            if let spam = request.spam { fields.append(text("mrkdwn", "*Spam score*\n\(spam.score) (\(spam.action.rawValue))")) }
            blocks.append(["type": "section", "fields": .array(fields)])
        }
        if let link {
            blocks.append(["type": "actions", "elements": [[
                "type": "button", "text": text("plain_text", event == .digest ? "Open the inbox" : "Open in Gatehouse"),
                "url": .string(link), "action_id": "open",
            ]]])
        }
        // The top-level text is read as mrkdwn: a reason must not mention @channel or forge links.
        return JSONValue.object(["text": .string(Self.slackEscape(Self.clip(summary, 3000))), "blocks": .array(blocks)]).bytes()
    }

    static func headline(_ event: WebhookEvent) -> String {
        switch event {
        case .requestCreated: "Access request waiting"
        case .requestApproved: "Access request approved"
        case .requestDenied: "Access request denied"
        case .requestExpired: "Access request expired"
        case .requestQuarantined: "Access request held for review"
        case .requestReported: "Access request reported as suspicious"
        case .grantStarted: "Access granted"
        case .grantEnded: "Access ended"
        case .breakGlassUsed: "Break-glass access used"
        case .breakGlassReviewed: "Break-glass use reviewed"
        case .digest: "Access requests waiting"
        }
    }

    /// Slack's mrkdwn treats `&`, `<` and `>` as control characters.
    static func slackEscape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    static func requestObject(_ r: AccessRequest) -> JSONValue {
        var object: [String: JSONValue] = [
            "id": .string(r.id), "requester": .string(r.requester), "resource": .string(r.resource), "role": .string(r.role),
            "duration": .string(r.duration.description), "reason": .string(r.reason), "state": .string(r.state.rawValue),
            "approvals_required": .int(r.approvalsRequired), "created_at": .string(r.createdAt.rfc3339),
        ]
        if let ticket = r.ticket { object["ticket"] = .string(ticket) }
        if let action = r.action {
            object["action"] = ["kind": .string(action.kind.rawValue), "sha256": .string(action.digest), "risk": .string(action.risk.rawValue),
                                "categories": JSONValue(action.categories), "text": .string(action.normalized ?? action.text)]
        }
        // The score as the API shows it on a request (`antispam`, openapi.yaml's SpamScore).
        if let spam = r.spam {
            object["antispam"] = ["score": .int(spam.score), "action": .string(spam.action.rawValue),
                                  "signals": .array(spam.signals.map { ["signal": .string($0.signal.rawValue), "count": .int($0.count),
                                                                        "points": .int($0.points), "detail": .string($0.detail)] })]
        }
        return .object(object)
    }

    public static func jsonBytes(_ object: [String: Any]) -> [UInt8] { json(object) }

    static func json(_ object: [String: Any]) -> [UInt8] {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return Array(data)
    }
}
