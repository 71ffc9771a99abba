/// Every kind of audit event Gatehouse writes. The webhook mapping (`WebhookEvent`) switches over
/// all of them, so a new action cannot be added without deciding whether it is announced.
public enum AuditAction: String, Sendable, CaseIterable {
    case tokenCreated = "token.created"
    case tokenRevoked = "token.revoked"
    case webSignedIn = "web.signed_in"
    case signedIn = "identity.signed_in"
    case signInRefused = "identity.sign_in_refused"
    case signedOut = "identity.signed_out"
    case sessionsRevoked = "identity.sessions_revoked"
    case requestCreated = "request.created"
    case requestApproved = "request.approved"
    case requestDenied = "request.denied"
    case requestCanceled = "request.canceled"
    case requestExpired = "request.expired"
    case requestLimited = "request.limited"
    case requestQuarantined = "request.quarantined"
    case requestExtraApproval = "request.extra_approval"
    case requestReported = "request.reported"
    case requestReleased = "request.released"
    case requestRejected = "request.rejected"
    case approvalRecorded = "approval.recorded"
    case grantStarted = "grant.started"
    case grantExpired = "grant.expired"
    case grantReleased = "grant.released"
    case grantRevoked = "grant.revoked"
    case grantUsed = "grant.used"
    case actionChecked = "action.checked"
    case principalBlocked = "principal.blocked"
    case principalThrottled = "principal.throttled"
    case principalUnblocked = "principal.unblocked"
    case breakGlassUsed = "break_glass.used"
    case breakGlassRefused = "break_glass.refused"
    case breakGlassReviewed = "break_glass.reviewed"
    case notificationDigest = "notification.digest"
    case webhookFailed = "webhook.failed"
    case policyReloaded = "policy.reloaded"
    case policyReloadRefused = "policy.reload_refused"
    case proxySessionStarted = "proxy.session.started"
    case proxySessionRefused = "proxy.session.refused"
    case proxySessionEnded = "proxy.session.ended"
    case proxyRefused = "proxy.refused"
    case storeImported = "store.imported"
    case slackLinked = "slack.linked"
    case slackUnlinked = "slack.unlinked"
    case slackRefused = "slack.action_refused"

    /// The events written with a change of a request's row (its filing, a decision, a hold, an expiry), each
    /// with the request as subject: `request.*`.
    public static let changingRequests = allCases.filter { $0.rawValue.hasPrefix("request.") }
}

extension AuditEntry {
    public init(actor: String, action: AuditAction, subject: String, resource: String? = nil, details: [String: String] = [:]) {
        self.init(actor: actor, action: action.rawValue, subject: subject, resource: resource, details: details)
    }

    /// Drops the details that have no value.
    public static func compact(_ details: [String: String?]) -> [String: String] {
        details.compactMapValues { $0 }
    }

    /// At most 1 KiB of an action's text for the audit log (the SHA-256 identifies the whole).
    public static func excerpt(_ text: String) -> String {
        guard text.utf8.count > 1024 else { return text }
        var cut = String(decoding: text.utf8.prefix(1024), as: UTF8.self)
        if cut.last == "\u{FFFD}" { cut.removeLast() }
        return cut + "…"
    }

    public static func requestCreated(_ r: AccessRequest) -> AuditEntry {
        AuditEntry(actor: r.requester, action: .requestCreated, subject: r.id, resource: r.resource,
                   details: compact(["principal": r.requester, "role": r.role, "duration": r.duration.description,
                                     "reason": r.reason, "ticket": r.ticket, "approvals_required": "\(r.approvalsRequired)",
                                     "action_kind": r.action?.kind.rawValue, "sha256": r.action?.digest, "risk": r.action?.risk.rawValue,
                                     "categories": r.action?.categories.joined(separator: ","), "text": r.action.map { excerpt($0.text) },
                                     "state": r.state == .pending ? nil : r.state.rawValue,
                                     "spam_score": r.spam.map { "\($0.score)" }, "spam_action": r.spam?.action.rawValue,
                                     "signals": r.spam.flatMap { $0.signals.isEmpty ? nil : $0.summary }]))
    }

    public static func grantStarted(_ g: Grant) -> AuditEntry {
        AuditEntry(actor: "system", action: .grantStarted, subject: g.id, resource: g.resource,
                   details: compact(["principal": g.principal, "role": g.role, "allows": g.allows.rawValue, "request_id": g.requestId,
                                     "expires_at": g.expiresAt.rfc3339, "sha256": g.actionDigest]))
    }

    public static func grantExpired(_ g: Grant) -> AuditEntry {
        AuditEntry(actor: "system", action: .grantExpired, subject: g.id, resource: g.resource,
                   details: ["principal": g.principal, "role": g.role, "expired_at": g.expiresAt.rfc3339])
    }

    public static func requestExpired(_ r: AccessRequest) -> AuditEntry {
        AuditEntry(actor: "system", action: .requestExpired, subject: r.id, resource: r.resource, details: ["principal": r.requester])
    }

    /// The details of an anti-spam audit event: the score, the action it picked and every signal that fired.
    public static func spamDetails(_ verdict: SpamVerdict, _ extra: [String: String]) -> [String: String] {
        var details = extra
        details["score"] = "\(verdict.score)"
        details["action"] = verdict.action.rawValue
        details["signals"] = verdict.summary
        if !verdict.signals.isEmpty { details["signal_details"] = verdict.signals.map { "\($0.signal.rawValue): \($0.detail)" }.joined(separator: "; ") }
        return details
    }
}
