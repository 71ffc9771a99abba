import Foundation

/// An error the user can act on: what is wrong, which field, and what to do instead.
public struct GatehouseError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case invalid            // 400: the input is wrong
        case unauthorized       // 401: no valid token
        case forbidden          // 403: valid token, not allowed
        case notFound           // 404
        case conflict           // 409: the state does not allow it (already decided, expired)
        case tooLarge           // 413
        case unprocessable      // 422: follows the API contract, but breaks a rule of the policy or a byte limit the contract cannot state
        case tooManyRequests    // 429: a hard limit; `refusal` says which and when to retry
        case unavailable        // 503: the store cannot be reached; fail closed
    }

    public var kind: Kind
    /// Machine-readable code, e.g. `duration_over_maximum`.
    public var code: String
    public var message: String
    /// The request field at fault, when there is one.
    public var field: String?
    /// For 429: the limit, for the Retry-After and RateLimit fields (nil: no detail is given).
    public var refusal: LimitRefusal?

    public init(_ kind: Kind, _ code: String, _ message: String, field: String? = nil) {
        self.kind = kind
        self.code = code
        self.message = message
        self.field = field
    }

    public var description: String { message }

    public static func invalid(_ field: String, _ code: String, _ message: String) -> GatehouseError {
        GatehouseError(.invalid, code, message, field: field)
    }

    /// A request the contract allows that this server's policy refuses (a role's maximum duration, its
    /// reason rules, a resource's kind) or that passes a limit counted in bytes, which JSON Schema cannot say.
    public static func unprocessable(_ field: String, _ code: String, _ message: String) -> GatehouseError {
        GatehouseError(.unprocessable, code, message, field: field)
    }
}

public enum RequestState: String, Sendable, Codable, CaseIterable {
    case pending, approved, denied, expired, canceled, quarantined

    public var isFinal: Bool { self != .pending && self != .quarantined }
}

public struct AccessRequest: Sendable, Equatable, Codable {
    public var id: String
    public var requester: String
    public var resource: String
    public var role: String
    public var duration: TimeSpan
    public var reason: String
    public var ticket: String?
    public var state: RequestState
    public var approvalsRequired: Int
    public var createdAt: Date
    public var pendingExpiresAt: Date
    public var decidedAt: Date?
    /// Who or what ended the request (approver, the requester on cancel, `system` on expiry).
    public var decidedBy: String?
    public var stateReason: String?
    public var grantId: String?
    /// Set on one-shot action requests (role `action`): the exact action and how it was classified.
    public var action: RequestedAction?
    /// The spam score when it was filed, with the signals that fired and the action taken.
    public var spam: SpamVerdict?

    public init(id: String, requester: String, resource: String, role: String, duration: TimeSpan, reason: String,
                ticket: String?, state: RequestState, approvalsRequired: Int, createdAt: Date, pendingExpiresAt: Date,
                decidedAt: Date? = nil, decidedBy: String? = nil, stateReason: String? = nil, grantId: String? = nil,
                action: RequestedAction? = nil, spam: SpamVerdict? = nil) {
        self.action = action
        self.spam = spam
        self.id = id
        self.requester = requester
        self.resource = resource
        self.role = role
        self.duration = duration
        self.reason = reason
        self.ticket = ticket
        self.state = state
        self.approvalsRequired = approvalsRequired
        self.createdAt = createdAt
        self.pendingExpiresAt = pendingExpiresAt
        self.decidedAt = decidedAt
        self.decidedBy = decidedBy
        self.stateReason = stateReason
        self.grantId = grantId
    }
}

public enum ApprovalDecision: String, Sendable, Codable { case approve, deny }

public struct Approval: Sendable, Equatable, Codable {
    public var requestId: String
    public var approver: String
    public var decision: ApprovalDecision
    public var comment: String?
    public var at: Date
    /// The token or session the decision was made with: an approval made with one an admin later
    /// revokes stops counting.
    public var tokenId: String?

    public init(requestId: String, approver: String, decision: ApprovalDecision, comment: String?, at: Date, tokenId: String? = nil) {
        self.requestId = requestId
        self.approver = approver
        self.decision = decision
        self.comment = comment
        self.at = at
        self.tokenId = tokenId
    }
}

/// The exact action a one-shot request asks for, as approvers see it.
public struct RequestedAction: Sendable, Equatable, Codable {
    public var kind: Action.Kind
    public var text: String
    /// SHA-256 of the exact text: the grant is bound to it.
    public var digest: String
    public var risk: RiskLevel
    public var categories: [String]
    /// The statement rebuilt without comments (SQL), so a comment cannot mislead an approver.
    public var normalized: String?

    public init(_ action: Action, classification: ActionClassification) {
        self.kind = action.kind
        self.text = action.text
        self.digest = action.digest
        self.risk = classification.risk
        self.categories = classification.categories
        self.normalized = classification.normalized
    }

    public init(kind: Action.Kind, text: String, digest: String, risk: RiskLevel, categories: [String], normalized: String?) {
        self.kind = kind
        self.text = text
        self.digest = digest
        self.risk = risk
        self.categories = categories
        self.normalized = normalized
    }
}

/// `used`: a one-shot action grant whose action was allowed once.
public enum GrantEnd: String, Sendable, Codable { case expired, released, revoked, used }

public struct Grant: Sendable, Equatable, Codable {
    public var id: String
    public var requestId: String
    public var principal: String
    public var resource: String
    public var role: String
    public var allows: RiskLevel
    public var startsAt: Date
    public var expiresAt: Date
    public var endedAt: Date?
    public var endReason: GrantEnd?
    public var endedBy: String?
    public var endComment: String?
    /// Set on one-shot action grants: the SHA-256 of the only action they allow, once.
    public var actionDigest: String?
    /// Granted by break-glass, without approval; a post-incident review follows.
    public var breakGlass: Bool

    public init(id: String, requestId: String, principal: String, resource: String, role: String, allows: RiskLevel,
                startsAt: Date, expiresAt: Date, endedAt: Date? = nil, endReason: GrantEnd? = nil,
                endedBy: String? = nil, endComment: String? = nil, actionDigest: String? = nil, breakGlass: Bool = false) {
        self.actionDigest = actionDigest
        self.breakGlass = breakGlass
        self.id = id
        self.requestId = requestId
        self.principal = principal
        self.resource = resource
        self.role = role
        self.allows = allows
        self.startsAt = startsAt
        self.expiresAt = expiresAt
        self.endedAt = endedAt
        self.endReason = endReason
        self.endedBy = endedBy
        self.endComment = endComment
    }

    /// Active means not ended and not past its expiry, judged at `now`: expiry never waits for the sweeper.
    public func isActive(at now: Date) -> Bool {
        endedAt == nil && now >= startsAt && now < expiresAt
    }

    /// `active`, or how it ended (an unswept grant past its expiry counts as `expired`).
    public func state(at now: Date) -> String {
        if let endReason { return endReason.rawValue }
        return now < expiresAt ? "active" : GrantEnd.expired.rawValue
    }
}

/// Random identifiers with a readable prefix: `req_…`, `grt_…`, `tok_…`.
public enum Identifier {
    public static func make(_ prefix: String, bytes: Int = 10) -> String {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz")
        let chars = (0..<(bytes * 8 / 5)).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] }
        return prefix + "_" + String(chars)
    }

    /// Whether `text` can be a Gatehouse id (`req_…`, `grt_…`, `tok_…`): at most 64 ASCII letters,
    /// digits, `_` and `-`. Every way in checks ids with this before looking them up.
    public static func isWellFormed(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 64 && text.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
    }
}
