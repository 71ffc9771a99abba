import Foundation
import Testing
@testable import GatehouseCore

/// The rules the application layer used to compute itself, now pure: the filing gate's order and
/// texts, the notification plan, who may do what with a request, and the comments a denial and a
/// report must carry.
@Suite("Filing gate")
struct FilingGateTests {
    let t0 = Fixture.t0
    let spam = AntiSpamPolicy()

    func situation(history: SpamHistory = SpamHistory(), throttledUntil: Date? = nil, open: [AccessRequest] = [],
                   tats: [String: Int64] = [:]) -> FilingGate.Situation {
        FilingGate.Situation(history: history, throttledUntil: throttledUntil, open: open, tats: tats)
    }

    func buckets(ip: String? = "10.0.0.1") -> [FilingGate.RateBucket] {
        FilingGate.rateBuckets(requester: "alice", resource: "prod-db", sourceIP: ip, policy: spam)
    }

    func denied(_ n: Int) -> SpamHistory {
        SpamHistory(own: (0..<n).map { i in
            PastRequest(id: "req_\(i)", requester: "alice", resource: "prod-db", role: "write", reason: "INC-1 try \(i)", state: .denied,
                        createdAt: t0.addingTimeInterval(Double(-600 + i)), decidedAt: t0.addingTimeInterval(Double(-60 + i)), decidedBy: "bob")
        })
    }

    @Test("bucket keys: per principal, per principal and resource, per source address, in that order")
    func bucketKeys() {
        #expect(buckets().map(\.key) == ["p:alice", "r:alice/prod-db", "ip:10.0.0.1"])
        #expect(buckets().map(\.policy) == ["per-principal", "per-resource", "per-source-ip"])
        #expect(buckets(ip: nil).map(\.key) == ["p:alice", "r:alice/prod-db"])
    }

    @Test("a fresh principal passes and consumes one unit of every bucket")
    func freshPasses() {
        let verdict = FilingGate.judge(resource: "prod-db", buckets: buckets(), situation: situation(), policy: spam, now: t0)
        guard case .pass(let consume) = verdict else { Issue.record("expected pass, got \(verdict)"); return }
        #expect(consume.map(\.key) == ["p:alice", "r:alice/prod-db", "ip:10.0.0.1"])
        let interval = spam.perPrincipal!.intervalMilliseconds
        #expect(consume[0].tat == t0.unixMilliseconds + interval)
    }

    @Test("the denial cooldown comes before the throttle, the pending cap and the rates")
    func cooldownFirst() {
        let full = Dictionary(uniqueKeysWithValues: buckets().map { ($0.key, t0.unixMilliseconds + 10_000_000) })
        let open = (0..<5).map { _ in try! Fixture.pending() }
        let verdict = FilingGate.judge(resource: "prod-db", buckets: buckets(),
                                       situation: situation(history: denied(2), throttledUntil: t0.addingTimeInterval(60), open: open, tats: full),
                                       policy: spam, now: t0)
        guard case .refused(let refusal, let kind) = verdict else { Issue.record("expected refusal, got \(verdict)"); return }
        #expect(refusal.policy == "denial-cooldown")
        #expect(kind == .cooldown)
        #expect(refusal.message.contains("were denied in a row"))
    }

    @Test("then the throttle, then the pending cap, then the first full bucket")
    func order() {
        let full = Dictionary(uniqueKeysWithValues: buckets().map { ($0.key, t0.unixMilliseconds + 10_000_000) })
        let open = (0..<5).map { _ in try! Fixture.pending() }
        func refusedBy(_ s: FilingGate.Situation) -> String? {
            if case .refused(let refusal, _) = FilingGate.judge(resource: "prod-db", buckets: buckets(), situation: s, policy: spam, now: t0) {
                return refusal.policy
            }
            return nil
        }
        #expect(refusedBy(situation(throttledUntil: t0.addingTimeInterval(60), open: open, tats: full)) == "throttle")
        #expect(refusedBy(situation(throttledUntil: t0.addingTimeInterval(-1), open: open, tats: full)) == "pending")
        #expect(refusedBy(situation(open: Array(open.prefix(4)), tats: full)) == "per-principal")
        var onlyResource = full
        onlyResource["p:alice"] = nil
        #expect(refusedBy(situation(tats: onlyResource)) == "per-resource")
        #expect(refusedBy(situation(tats: ["ip:10.0.0.1": t0.unixMilliseconds + 10_000_000])) == "per-source-ip")
    }

    @Test("a refusal by a rate names the limit and when to try again, and consumes nothing")
    func rateRefusalText() {
        let verdict = FilingGate.judge(resource: "prod-db", buckets: buckets(),
                                       situation: situation(tats: ["r:alice/prod-db": t0.unixMilliseconds + 10_000_000]), policy: spam, now: t0)
        guard case .refused(let refusal, let kind) = verdict else { Issue.record("expected refusal, got \(verdict)"); return }
        #expect(kind == .limit)
        #expect(refusal.message.hasPrefix("too many your requests for prod-db: the limit is 60 per 1h with bursts of 10; try again in"))
        #expect(refusal.quota == 60)
        #expect(refusal.windowSeconds == 3600)
        #expect(refusal.retryAfterSeconds > 0)
    }
}

@Suite("Notification plan")
struct NotificationPlanTests {
    let t0 = Fixture.t0

    func policy(budget: RateLimit? = RateLimit(count: 10, period: TimeSpan(seconds: 3600), burst: 5)) -> Policy {
        var policy = Fixture.policy()
        policy.antiSpam.approverNotifications = budget
        return policy
    }

    @Test("a pending request goes to its human approvers, never its requester nor a service account")
    func approvers() throws {
        let byBob = try Fixture.pending("write", by: "bob")
        #expect(NotificationPlan.recipients(of: byBob, policy: policy()) == ["carol", "dave"])
        let byAlice = try Fixture.pending("admin", by: "alice")
        #expect(NotificationPlan.recipients(of: byAlice, policy: policy()) == ["bob", "carol", "dave", "erin"])
    }

    @Test("a quarantined request goes to the reviewers only, in digests; a decided one to nobody")
    func held() throws {
        var request = try Fixture.pending("write", by: "alice")
        request.state = .quarantined
        let plan = NotificationPlan.plan(request, throttled: false, policy: policy(), budgetTATs: [:], now: t0)
        #expect(plan.map(\.recipient) == ["dave", "erin"])
        #expect(plan.allSatisfy { $0.route == .digest })
        request.state = .approved
        #expect(NotificationPlan.plan(request, throttled: false, policy: policy(), budgetTATs: [:], now: t0).isEmpty)
    }

    @Test("within the budget at once; past it, or throttled, into the digest")
    func budget() throws {
        let request = try Fixture.pending("write", by: "alice")
        let spent = [NotificationPlan.budgetKey("carol"): t0.unixMilliseconds + 10_000_000]
        let plan = NotificationPlan.plan(request, throttled: false, policy: policy(), budgetTATs: spent, now: t0)
        #expect(plan.first { $0.recipient == "carol" }?.route == .digest)
        guard case .immediate(let tat)? = plan.first(where: { $0.recipient == "bob" })?.route else {
            Issue.record("bob is within budget: \(plan)")
            return
        }
        #expect(tat == t0.unixMilliseconds + policy().antiSpam.approverNotifications!.intervalMilliseconds)
        let throttled = NotificationPlan.plan(request, throttled: true, policy: policy(), budgetTATs: [:], now: t0)
        #expect(throttled.allSatisfy { $0.route == .digest })
    }

    @Test("without a budget (or with anti-spam off) everyone is told at once")
    func noBudget() throws {
        let request = try Fixture.pending("write", by: "alice")
        #expect(NotificationPlan.plan(request, throttled: false, policy: policy(budget: nil), budgetTATs: [:], now: t0)
            .allSatisfy { $0.route == .immediate(budgetTAT: nil) })
        var off = policy()
        off.antiSpam.enabled = false
        #expect(NotificationPlan.plan(request, throttled: false, policy: off, budgetTATs: [:], now: t0)
            .allSatisfy { $0.route == .immediate(budgetTAT: nil) })
    }
}

@Suite("Request permissions")
struct RequestPermissionTests {
    let policy = Fixture.policy()

    @Test("deciding: an eligible human approver who is not the requester")
    func decide() throws {
        let request = try Fixture.pending("write", by: "bob")
        #expect(RequestPermissions.canDecide("carol", request, policy: policy))
        #expect(!RequestPermissions.canDecide("bob", request, policy: policy))        // a dba, but the requester
        #expect(!RequestPermissions.canDecide("deploy-bot", request, policy: policy)) // a service account in dba
        #expect(!RequestPermissions.canDecide("erin", request, policy: policy))       // an admin, not an approver
        #expect(!RequestPermissions.canDecide("ghost", request, policy: policy))
    }

    @Test("seeing: admins, the requester, approvers, and reviewers while the request is held")
    func see() throws {
        var request = try Fixture.pending("write", by: "alice")
        #expect(RequestPermissions.canSee("alice", isAdmin: false, request, policy: policy))
        #expect(RequestPermissions.canSee("carol", isAdmin: false, request, policy: policy))
        #expect(RequestPermissions.canSee("admin", isAdmin: true, request, policy: policy))
        #expect(!RequestPermissions.canSee("mallory", isAdmin: false, request, policy: policy))
        #expect(!RequestPermissions.canSee("erin", isAdmin: false, request, policy: Policy(principals: policy.principals, resources: policy.resources)))
        request.state = .quarantined
        let reviewers = Policy(principals: policy.principals, resources: policy.resources)   // reviewers: the security group
        #expect(RequestPermissions.canSee("erin", isAdmin: false, request, policy: reviewers))
    }

    @Test("cancelling: the requester or an admin; approvable resources list where an approver has work")
    func cancelAndResources() throws {
        let request = try Fixture.pending("write", by: "alice")
        #expect(RequestPermissions.canCancel("alice", isAdmin: false, request))
        #expect(RequestPermissions.canCancel("erin", isAdmin: true, request))
        #expect(!RequestPermissions.canCancel("carol", isAdmin: false, request))
        #expect(RequestPermissions.approvableResources("carol", policy: policy).sorted() == ["billing-api", "prod-db"])
        #expect(RequestPermissions.approvableResources("erin", policy: policy) == ["prod-db"])
        #expect(RequestPermissions.approvableResources("alice", policy: policy).isEmpty)
    }
}

@Suite("Comments on denials and reports")
struct RequiredCommentTests {
    @Test("a denial without a comment, or with only white space, is refused and names the field", arguments: [nil, "", "  \n\t "])
    func denyNeedsComment(comment: String?) throws {
        let request = try Fixture.pending("write", by: "alice")
        let error = expectGatehouseError(code: "missing_comment", kind: .invalid, field: "comment") {
            try RequestLifecycle.decide(request, existing: [], approver: "carol", decision: .deny, comment: comment,
                                        policy: Fixture.policy(), now: Fixture.t0.addingTimeInterval(60), grantId: "grt_1")
        }
        #expect(error?.message.contains("say why") == true)
    }

    @Test("an approval needs no comment (white space counts as none); an over-long comment is refused")
    func approveWithout() throws {
        let request = try Fixture.pending("write", by: "alice")
        let outcome = try RequestLifecycle.decide(request, existing: [], approver: "carol", decision: .approve, comment: "   ",
                                                  policy: Fixture.policy(), now: Fixture.t0.addingTimeInterval(60), grantId: "grt_1")
        guard case .approved(let approval, _, _) = outcome else { Issue.record("expected approved, got \(outcome)"); return }
        #expect(approval.comment == nil)
        expectGatehouseError(code: "comment_too_long", field: "comment") {
            try RequestLifecycle.requiredComment(String(repeating: "x", count: 5000), for: .deny)
        }
    }

    @Test("a report says what looked suspicious")
    func reportNeedsComment() throws {
        let error = expectGatehouseError(code: "missing_comment", field: "comment") { try RequestLifecycle.requiredComment(nil, for: .report) }
        #expect(error?.message.contains("suspicious") == true)
        #expect(try RequestLifecycle.requiredComment(" odd hours ", for: .report) == " odd hours ")
    }
}

@Suite("Audit actions")
struct AuditActionTests {
    @Test("every audit action round-trips through its text, and the announced ones map to a webhook event")
    func mapping() {
        for action in AuditAction.allCases {
            #expect(AuditAction(rawValue: action.rawValue) == action)
            #expect(WebhookEvent(auditAction: action.rawValue) == WebhookEvent(auditAction: action))
        }
        let announced = AuditAction.allCases.filter { WebhookEvent(auditAction: $0) != nil }.map(\.rawValue).sorted()
        #expect(announced == ["break_glass.reviewed", "break_glass.used", "grant.expired", "grant.released", "grant.revoked", "grant.started",
                              "grant.used", "notification.digest", "request.approved", "request.created", "request.denied", "request.expired",
                              "request.quarantined", "request.released", "request.reported"])
        #expect(WebhookEvent(auditAction: "not.an.action") == nil)
    }
}

@Suite("Requested access: a role or one exact action")
struct RequestedAccessTests {
    static func policy() -> Policy {
        var policy = Fixture.policy()
        policy.resources["prod-db"]?.actions = Role(name: Role.actionRoleName, requesters: ["engineers"], approvers: ["dba"], approvals: 1,
                                                    maxDuration: Fixture.span("1h"), allows: .dangerous)
        return policy
    }

    static let delete = Action(kind: .sql, text: "DELETE FROM orders")
    static let classification = ActionClassification(kind: .sql, findings: [Finding(category: "delete_without_where", level: .dangerous,
                                                                                     statement: 1, position: 0, detail: "DELETE without WHERE")],
                                                     statements: 1)

    func open(_ input: NewRequestInput, classification: ActionClassification? = nil) throws(GatehouseError) -> RequestLifecycle.OpenOutcome {
        try RequestLifecycle.open(input, classification: classification, requester: "alice", policy: Self.policy(), now: Fixture.t0,
                                  requestId: "req_1", grantId: "grt_1")
    }

    @Test("an action request is stored under the role name `action` with the exact action and its risk")
    func action() throws {
        let outcome = try open(NewRequestInput(resource: "prod-db", access: .action(Self.delete), duration: "30m", reason: "INC-1 purge old rows"),
                               classification: Self.classification)
        guard case .pending(let request) = outcome else { Issue.record("expected pending, got \(outcome)"); return }
        #expect(request.role == "action")
        #expect(request.action?.digest == Self.delete.digest)
        #expect(request.action?.risk == .dangerous)
    }

    @Test("an action that was not classified is not filed; a role request carries no action")
    func unclassified() throws {
        expectGatehouseError(code: "unclassified_action", field: "action") {
            try open(NewRequestInput(resource: "prod-db", access: .action(Self.delete), duration: "30m", reason: "INC-1 purge old rows"))
        }
        guard case .pending(let request) = try open(Fixture.input()) else { Issue.record("expected pending"); return }
        #expect(request.action == nil)
        #expect(NewRequestInput(resource: "prod-db", access: .action(Self.delete), duration: "", reason: "x").role == Role.actionRoleName)
    }

    @Test("break-glass grants a role, never one exact action")
    func breakGlassRole() {
        var policy = Self.policy()
        policy.breakGlass.enabled = true
        expectGatehouseError(code: "break_glass_role") {
            try BreakGlass.open(NewRequestInput(resource: "prod-db", access: .action(Self.delete), duration: "", reason: "INC-9 it is down"),
                                requester: "alice", policy: policy, now: Fixture.t0, requestId: "req_1", grantId: "grt_1")
        }
    }
}
