import Crypto
import Foundation
import Testing
@testable import GatehouseCore

@Suite("Break-glass")
struct BreakGlassTests {
    static func policy(_ settings: (inout BreakGlassPolicy) -> Void = { _ in }) -> Policy {
        var policy = Fixture.policy()
        policy.breakGlass.enabled = true
        policy.breakGlass.requesters = ["dba"]
        policy.breakGlass.notify = ["security"]
        settings(&policy.breakGlass)
        return policy
    }

    static func input(duration: String = "", reason: String = "INC-9 database is down, killing runaway queries") -> NewRequestInput {
        NewRequestInput(resource: "prod-db", role: "admin", duration: duration, reason: reason)
    }

    @Test("grants at once, marked, for the policy's maximum by default, decided by break-glass")
    func grants() throws {
        let (request, grant) = try BreakGlass.open(Self.input(), requester: "carol", policy: Self.policy(), now: Fixture.t0,
                                                   requestId: "req_b", grantId: "grt_b")
        #expect(request.state == .approved)
        #expect(request.decidedBy == "break-glass")
        #expect(grant.breakGlass)
        #expect(grant.isActive(at: Fixture.t0))
        #expect(grant.expiresAt == Fixture.t0.addingTimeInterval(15 * 60))
        #expect(grant.allows == .dangerous)
    }

    @Test("refused when disabled, for others than the allowed groups, for service accounts, beyond the maximum, without a real reason")
    func refusals() {
        func code(_ policy: Policy, _ who: String, _ input: NewRequestInput) -> String? {
            do {
                _ = try BreakGlass.open(input, requester: who, policy: policy, now: Fixture.t0, requestId: "r", grantId: "g")
                return nil
            } catch { return error.code }
        }
        #expect(code(Self.policy { $0.enabled = false }, "carol", Self.input()) == "break_glass_disabled")
        #expect(code(Self.policy(), "alice", Self.input()) == "not_allowed_break_glass")
        #expect(code(Self.policy(), "deploy-bot", Self.input()) == "not_allowed_break_glass")
        // A service account in a group that may is told why it may not (not "only people in <its own group>").
        do {
            _ = try BreakGlass.open(Self.input(), requester: "deploy-bot", policy: Self.policy(), now: Fixture.t0, requestId: "r", grantId: "g")
        } catch {
            #expect(error.message.contains("is a service account"), "\(error.message)")
        }
        #expect(code(Self.policy(), "carol", Self.input(duration: "16m")) == "duration_over_maximum")
        #expect(code(Self.policy(), "carol", Self.input(reason: "help")) == "reason_too_short")
        #expect(code(Self.policy(), "carol", NewRequestInput(resource: "prod-db", role: "root", duration: "", reason: "INC-9 it is down")) != nil)
    }

    @Test("`requesters` narrows who may request the role, never widens it")
    func narrowing() throws {
        let open = Self.policy { $0.requesters = [] }
        _ = try BreakGlass.open(Self.input(), requester: "alice", policy: open, now: Fixture.t0, requestId: "r", grantId: "g")
        #expect(throws: GatehouseError.self) {
            _ = try BreakGlass.open(Self.input(), requester: "erin", policy: open, now: Fixture.t0, requestId: "r", grantId: "g")
        }
        // dba narrows admin's requesters (engineers, dba): alice (engineers only) is out; nobody
        // outside the role's requesters gets in through break_glass.requesters.
        #expect(throws: GatehouseError.self) {
            _ = try BreakGlass.open(Self.input(), requester: "alice", policy: Self.policy(), now: Fixture.t0, requestId: "r", grantId: "g")
        }
        let api = NewRequestInput(resource: "billing-api", role: "operate", duration: "", reason: "INC-9 payments are failing")
        #expect(throws: GatehouseError.self) {
            _ = try BreakGlass.open(api, requester: "carol", policy: Self.policy(), now: Fixture.t0, requestId: "r", grantId: "g")
        }
    }

    @Test("the review is by someone else who may review, with a comment, once")
    func review() throws {
        let use = BreakGlassUse(grantId: "g", requestId: "r", principal: "carol", resource: "prod-db", role: "admin", reason: "x",
                                at: Fixture.t0, expiresAt: Fixture.t0, reviewRequired: true)
        let policy = Self.policy()
        #expect(throws: GatehouseError.self) { try BreakGlass.review(use, reviewer: "carol", comment: "fine", policy: policy, now: Fixture.t0) }
        #expect(throws: GatehouseError.self) { try BreakGlass.review(use, reviewer: "alice", comment: "fine", policy: policy, now: Fixture.t0) }
        #expect(throws: GatehouseError.self) { try BreakGlass.review(use, reviewer: "erin", comment: "  ", policy: policy, now: Fixture.t0) }
        let reviewed = try BreakGlass.review(use, reviewer: "erin", comment: "killed 3 queries; justified", policy: policy, now: Fixture.t0)
        #expect(!reviewed.awaitsReview)
        #expect(reviewed.reviewedBy == "erin")
        #expect(throws: GatehouseError.self) { try BreakGlass.review(reviewed, reviewer: "dave", comment: "again", policy: policy, now: Fixture.t0) }
    }
}
