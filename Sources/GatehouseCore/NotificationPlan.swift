import Foundation

/// Who hears about a newly filed (or released) request, and how: each approver at once while
/// within their notification budget, otherwise in their one open digest; a throttled request only
/// in digests; a quarantined one only to the reviewers, in their digests. Pure: the caller reads
/// the recipients' budget TATs, stores the consumed ones and writes the notifications.
public enum NotificationPlan {
    public enum Route: Sendable, Equatable {
        /// A message of its own now; store the budget's new TAT (nil: no budget applies).
        case immediate(budgetTAT: Int64?)
        /// Into the recipient's open digest (or a new one).
        case digest
    }

    public struct Delivery: Sendable, Equatable {
        public var recipient: String
        public var route: Route
    }

    /// The budget key of an approver's notifications (shares the rate-limit table with the filing gate).
    public static func budgetKey(_ recipient: String) -> String { "n:" + recipient }

    /// Who is told about `request`: the human approvers of a pending request other than its requester,
    /// the human reviewers of a quarantined one, nobody otherwise.
    public static func recipients(of request: AccessRequest, policy: Policy) -> [String] {
        let people: Set<String>
        if request.state == .quarantined {
            people = policy.members(of: policy.reviewerGroups).filter { policy.principals[$0]?.kind == .user }
        } else if request.state == .pending, let role = policy.resources[request.resource]?.role(named: request.role) {
            people = policy.eligibleApprovers(for: role)
        } else {
            return []
        }
        return people.subtracting([request.requester]).sorted()
    }

    /// How each recipient is told. `budgetTATs` holds the stored budget TAT of each recipient.
    public static func plan(_ request: AccessRequest, throttled: Bool, policy: Policy, budgetTATs: [String: Int64],
                            now: Date) -> [Delivery] {
        let spam = policy.antiSpam
        return recipients(of: request, policy: policy).map { recipient in
            guard request.state == .pending, !throttled else { return Delivery(recipient: recipient, route: .digest) }
            guard spam.enabled, let budget = spam.approverNotifications else {
                return Delivery(recipient: recipient, route: .immediate(budgetTAT: nil))
            }
            let outcome = GCRA.attempt(tat: budgetTATs[budgetKey(recipient)], now: now.unixMilliseconds, limit: budget)
            return Delivery(recipient: recipient, route: outcome.allowed ? .immediate(budgetTAT: outcome.tat) : .digest)
        }
    }

    /// The one-line text of a request in a notification.
    public static func summary(_ r: AccessRequest) -> String {
        let what = r.action.map { "one \($0.kind.rawValue) action" } ?? "the \(r.role) role"
        let reason = r.reason.count > 200 ? String(r.reason.prefix(200)) + "…" : r.reason
        return "\(r.requester) asks for \(what) on \(r.resource) for \(r.duration): \(reason) (request \(r.id))"
    }

    public static func digestSummary(_ count: Int, latest: String) -> String {
        "\(count) request(s) are waiting for you; latest: \(latest)"
    }
}
