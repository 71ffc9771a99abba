import Foundation
import Testing
@testable import GatehouseCore

@Suite("RequestLifecycle.decide")
struct RequestDecideTests {
    let policy = Fixture.policy()
    let t0 = Fixture.t0

    func decide(_ request: AccessRequest, existing: [Approval] = [], by approver: String, _ decision: ApprovalDecision = .approve,
                comment: String? = nil, policy: Policy? = nil, at now: Date? = nil) throws(GatehouseError) -> RequestLifecycle.DecideOutcome {
        // A denial says why; tests that are not about the comment give one.
        let said = comment ?? (decision == .deny ? "not now" : nil)
        return try RequestLifecycle.decide(request, existing: existing, approver: approver, decision: decision, comment: said,
                                    policy: policy ?? self.policy, now: now ?? t0.addingTimeInterval(60), grantId: "grt_9")
    }

    func approval(_ approver: String, _ decision: ApprovalDecision = .approve, at: Date? = nil) -> Approval {
        Approval(requestId: "req_1", approver: approver, decision: decision, comment: nil, at: at ?? t0.addingTimeInterval(30))
    }

    @Test("one eligible approval approves a 1-approval request")
    func singleApproval() throws {
        let request = try Fixture.pending("write")
        let outcome = try decide(request, by: "carol", comment: "ok")
        guard case let .approved(approval, updated, grant) = outcome else {
            Issue.record("expected approved, got \(outcome)")
            return
        }
        #expect(approval.approver == "carol")
        #expect(approval.decision == .approve)
        #expect(approval.requestId == "req_1")
        #expect(updated.state == .approved)
        #expect(updated.decidedBy == "carol")
        #expect(updated.grantId == "grt_9")
        #expect(grant.id == "grt_9")
        #expect(grant.principal == "alice")
        #expect(grant.allows == .write)
    }

    @Test("nobody approves or denies their own request", arguments: [ApprovalDecision.approve, .deny])
    func selfApproval(decision: ApprovalDecision) throws {
        // bob is both an engineer (requester) and a dba (approver) for `write`.
        let request = try Fixture.pending("write", by: "bob")
        expectGatehouseError(code: "self_approval", kind: .forbidden) {
            try decide(request, by: "bob", decision)
        }
    }

    @Test("someone outside the approver groups cannot approve", arguments: ["erin", "alice", "mallory", "ghost"])
    func notAnApprover(approver: String) throws {
        let request = try Fixture.pending("write", by: "bob")
        let error = expectGatehouseError(code: "not_an_approver", kind: .forbidden) {
            try decide(request, by: approver)
        }
        #expect(error?.message.contains("human members of dba") == true)
    }

    @Test("a service account in an approver group cannot approve or deny", arguments: [ApprovalDecision.approve, .deny])
    func serviceAccountCannotApprove(decision: ApprovalDecision) throws {
        let request = try Fixture.pending("write")
        expectGatehouseError(code: "not_an_approver", kind: .forbidden) {
            try decide(request, by: "deploy-bot", decision)
        }
    }

    @Test("one person counts once: the same approver twice is a conflict")
    func samePersonTwice() throws {
        let request = try Fixture.pending("admin")
        let first = try decide(request, by: "carol")
        guard case let .recorded(carolApproval, counted) = first else {
            Issue.record("expected recorded, got \(first)")
            return
        }
        #expect(counted == 1)
        expectGatehouseError(code: "already_decided_by_you", kind: .conflict) {
            try decide(request, existing: [carolApproval], by: "carol")
        }
        // Even switching to deny is refused: one person, one decision.
        expectGatehouseError(code: "already_decided_by_you", kind: .conflict) {
            try decide(request, existing: [carolApproval], by: "carol", .deny)
        }
    }

    @Test("2-of-N: a person in both approver groups still counts once")
    func personInTwoGroupsCountsOnce() throws {
        // dave is in dba and in security, the two approver groups of `admin`.
        let request = try Fixture.pending("admin")
        let first = try decide(request, by: "dave")
        guard case let .recorded(daveApproval, counted) = first else {
            Issue.record("expected recorded after one person, got \(first)")
            return
        }
        #expect(counted == 1)
        // A duplicate record of dave's approval (e.g. stored twice) still counts once.
        let second = try decide(request, existing: [daveApproval, daveApproval], by: "erin", at: t0.addingTimeInterval(120))
        guard case let .approved(_, updated, grant) = second else {
            Issue.record("expected approved after a second distinct person, got \(second)")
            return
        }
        #expect(updated.state == .approved)
        #expect(updated.decidedBy == "erin")
        #expect(grant.allows == .dangerous)
    }

    @Test("an earlier approval by someone removed from the policy no longer counts")
    func removedApproverNoLongerCounts() throws {
        let request = try Fixture.pending("admin")
        let carolApproved = approval("carol")
        var principals = Fixture.principals
        principals["carol"] = nil
        let changed = Fixture.policy(principals: principals)
        let outcome = try decide(request, existing: [carolApproved], by: "erin", policy: changed)
        guard case let .recorded(_, counted) = outcome else {
            Issue.record("carol's approval must not count any more, got \(outcome)")
            return
        }
        #expect(counted == 1)
        // Under the old policy the same two approvals do approve.
        guard case .approved = try decide(request, existing: [carolApproved], by: "erin") else {
            Issue.record("with carol still in the policy two approvals should approve")
            return
        }
    }

    @Test("an earlier approval by someone who left the approver groups no longer counts")
    func approverMovedGroups() throws {
        let request = try Fixture.pending("admin")
        var principals = Fixture.principals
        principals["carol"] = PrincipalEntry(groups: ["engineers"])
        let outcome = try decide(request, existing: [approval("carol")], by: "erin", policy: Fixture.policy(principals: principals))
        guard case .recorded(_, approvalsCounted: 1) = outcome else {
            Issue.record("expected 1 counted approval, got \(outcome)")
            return
        }
    }

    @Test("a requester's own approval in the existing list never counts")
    func requesterApprovalInExistingIgnored() throws {
        let request = try Fixture.pending("admin", by: "bob")
        let outcome = try decide(request, existing: [approval("bob")], by: "carol")
        guard case .recorded(_, approvalsCounted: 1) = outcome else {
            Issue.record("bob's own approval must not count, got \(outcome)")
            return
        }
    }

    @Test("a requester removed from the policy cannot be approved, but can still be denied")
    func requesterIneligible() throws {
        let request = try Fixture.pending("write", by: "alice")
        var principals = Fixture.principals
        principals["alice"] = nil
        let changed = Fixture.policy(principals: principals)
        expectGatehouseError(code: "requester_ineligible", kind: .conflict) {
            try decide(request, by: "carol", policy: changed)
        }
        guard case .denied = try decide(request, by: "carol", .deny, policy: changed) else {
            Issue.record("denying must still work")
            return
        }
    }

    @Test("a requester moved out of the requester groups cannot be approved")
    func requesterLeftGroup() throws {
        let request = try Fixture.pending("write", by: "alice")
        var principals = Fixture.principals
        principals["alice"] = PrincipalEntry(groups: ["contractors"])
        expectGatehouseError(code: "requester_ineligible", kind: .conflict) {
            try decide(request, by: "carol", policy: Fixture.policy(principals: principals))
        }
    }

    @Test("a role removed from the policy cannot be decided")
    func roleRemoved() throws {
        let request = try Fixture.pending("write")
        expectGatehouseError(code: "role_removed", kind: .conflict) {
            try decide(request, by: "carol", policy: Fixture.policy(roles: [Fixture.readRole, Fixture.adminRole]))
        }
    }

    @Test("one deny denies, even when other approvals are in")
    func denyDenies() throws {
        let request = try Fixture.pending("admin")
        let outcome = try decide(request, existing: [approval("carol")], by: "erin", .deny, comment: "not during the freeze",
                                 at: t0.addingTimeInterval(300))
        guard case let .denied(approval, updated) = outcome else {
            Issue.record("expected denied, got \(outcome)")
            return
        }
        #expect(approval.decision == .deny)
        #expect(approval.approver == "erin")
        #expect(updated.state == .denied)
        #expect(updated.decidedBy == "erin")
        #expect(updated.decidedAt == t0.addingTimeInterval(300))
        #expect(updated.stateReason == "not during the freeze")
        #expect(updated.grantId == nil)
    }

    @Test("a decided request cannot be decided again",
          arguments: [RequestState.approved, .denied, .expired, .canceled, .quarantined])
    func alreadyDecided(state: RequestState) throws {
        var request = try Fixture.pending("write")
        request.state = state
        // A quarantined request waits for a reviewer, not an approver.
        let code = state == .quarantined ? "quarantined" : "already_decided"
        expectGatehouseError(code: code, kind: .conflict) {
            try decide(request, by: "carol")
        }
        expectGatehouseError(code: code, kind: .conflict) {
            try decide(request, by: "carol", .deny)
        }
    }

    @Test("approving an approved request (the real flow) is refused")
    func approveAfterApproval() throws {
        let request = try Fixture.pending("write")
        guard case let .approved(first, approved, _) = try decide(request, by: "carol") else {
            Issue.record("expected approved")
            return
        }
        expectGatehouseError(code: "already_decided", kind: .conflict) {
            try decide(approved, existing: [first], by: "bob")
        }
    }

    @Test("a decision at or after the pending TTL expires the request instead")
    func pendingTTL() throws {
        let request = try Fixture.pending("write")
        #expect(request.pendingExpiresAt == t0.addingTimeInterval(86_400))
        for late in [86_400.0, 86_401, 200_000] {
            let outcome = try decide(request, by: "carol", at: t0.addingTimeInterval(late))
            guard case let .expired(expired) = outcome else {
                Issue.record("expected expired at +\(late)s, got \(outcome)")
                continue
            }
            #expect(expired.state == .expired)
            #expect(expired.decidedBy == "system")
            #expect(expired.decidedAt == t0.addingTimeInterval(late))
            #expect(expired.grantId == nil)
        }
        guard case .approved = try decide(request, by: "carol", at: t0.addingTimeInterval(86_399)) else {
            Issue.record("one second before the TTL the approval must still work")
            return
        }
    }

    @Test("the pending TTL comes from the policy")
    func pendingTTLFromPolicy() throws {
        let shortTTL = Fixture.policy(pendingTTL: TimeSpan(seconds: 600))
        let request = try Fixture.pending("write", policy: shortTTL)
        #expect(request.pendingExpiresAt == t0.addingTimeInterval(600))
        guard case .expired = try decide(request, by: "carol", policy: shortTTL, at: t0.addingTimeInterval(600)) else {
            Issue.record("expected expired")
            return
        }
    }

    @Test("the grant starts at approval time, not request time")
    func grantStartsAtApproval() throws {
        let clock = ManualClock(t0)
        let request = try Fixture.pending("write", duration: "30m", at: clock.now())
        clock.advance(by: 600)
        let approvedAt = clock.now()
        let outcome = try decide(request, by: "carol", at: approvedAt)
        guard case let .approved(_, updated, grant) = outcome else {
            Issue.record("expected approved, got \(outcome)")
            return
        }
        #expect(updated.createdAt == t0)
        #expect(updated.decidedAt == t0.addingTimeInterval(600))
        #expect(grant.startsAt == t0.addingTimeInterval(600))
        #expect(grant.expiresAt == t0.addingTimeInterval(600 + 1_800))
        #expect(grant.isActive(at: t0.addingTimeInterval(600 + 1_799)))
        #expect(!grant.isActive(at: t0.addingTimeInterval(600 + 1_800)))
    }

    @Test("a policy raising the approvals needed applies to pending requests; lowering it does not weaken them")
    func approvalsNeededUseTheStricterCount() throws {
        let request = try Fixture.pending("write")
        #expect(request.approvalsRequired == 1)
        var stricter = Fixture.writeRole
        stricter.approvals = 2
        let raised = Fixture.policy(roles: [Fixture.readRole, stricter, Fixture.adminRole])
        guard case .recorded(_, approvalsCounted: 1) = try decide(request, by: "carol", policy: raised) else {
            Issue.record("two approvals are now needed")
            return
        }
        var looser = Fixture.adminRole
        looser.approvals = 1
        let admin = try Fixture.pending("admin")
        let lowered = Fixture.policy(roles: [Fixture.readRole, Fixture.writeRole, looser])
        guard case .recorded(_, approvalsCounted: 1) = try decide(admin, by: "carol", policy: lowered) else {
            Issue.record("the request was filed needing two approvals")
            return
        }
    }

    @Test("a grant never outlasts the role's max_duration in force when it is approved")
    func tightenedMaxDuration() throws {
        // Filed for 1h while the maximum was 1h; the policy then cuts `write` to 15m before anyone approves.
        let request = try Fixture.pending("write", duration: "1h")
        var tightened = Fixture.writeRole
        tightened.maxDuration = TimeSpan(seconds: 900)
        let policy = Fixture.policy(roles: [Fixture.readRole, tightened, Fixture.adminRole])
        let error = expectGatehouseError(code: "duration_over_maximum", kind: .conflict) {
            try decide(request, by: "carol", policy: policy)
        }
        #expect(error?.message.contains("at most 15m") == true, "\(error?.message ?? "")")
        // The approver can still deny it, so it does not sit in the inbox until it expires.
        guard case .denied = try decide(request, by: "carol", .deny, policy: policy) else {
            Issue.record("denying must still work")
            return
        }
        // A request within the new maximum is approved as usual.
        let short = try Fixture.pending("write", duration: "15m")
        guard case .approved = try decide(short, by: "carol", policy: policy) else {
            Issue.record("15m fits the new maximum")
            return
        }
    }

    @Test("a comment with control or invisible characters is refused", arguments: ["ok\u{1B}[2J", "ok\nthen", "fine\u{202E}txt.exe"])
    func commentTextRules(comment: String) throws {
        let request = try Fixture.pending("write")
        let error = thrownError { try decide(request, by: "carol", comment: comment) }
        #expect(error?.field == "comment")
        #expect(["control_character", "deceptive_character"].contains(error?.code ?? ""), "\(String(describing: error))")
    }

    @Test("an overlong comment is refused")
    func commentTooLong() throws {
        let request = try Fixture.pending("write")
        expectGatehouseError(code: "comment_too_long", kind: .unprocessable, field: "comment") {
            try decide(request, by: "carol", comment: String(repeating: "é", count: 2_049))
        }
    }

    @Test("cancel: the requester or an admin, only while pending or quarantined")
    func cancel() throws {
        let request = try Fixture.pending("write")
        let now = t0.addingTimeInterval(5)
        let canceled = try RequestLifecycle.cancel(request, by: "alice", isAdmin: false, now: now)
        #expect(canceled.state == .canceled)
        #expect(canceled.decidedBy == "alice")
        #expect(canceled.decidedAt == now)
        #expect(try RequestLifecycle.cancel(request, by: "erin", isAdmin: true, now: now).state == .canceled)
        expectGatehouseError(code: "not_your_request", kind: .forbidden) {
            try RequestLifecycle.cancel(request, by: "carol", isAdmin: false, now: now)
        }
        var quarantined = request
        quarantined.state = .quarantined
        #expect(try RequestLifecycle.cancel(quarantined, by: "alice", isAdmin: false, now: now).state == .canceled)
        var approved = request
        approved.state = .approved
        let error = expectGatehouseError(code: "already_decided", kind: .conflict) {
            try RequestLifecycle.cancel(approved, by: "alice", isAdmin: false, now: now)
        }
        #expect(error?.message.contains("release its grant") == true)
        expectGatehouseError(code: "already_decided", kind: .conflict) {
            try RequestLifecycle.cancel(canceled, by: "alice", isAdmin: false, now: now)
        }
    }

    @Test("only pending and quarantined are not final")
    func finalStates() {
        #expect(RequestState.allCases.filter { !$0.isFinal } == [.pending, .quarantined])
    }
}
