import Foundation
import Testing
@testable import GatehouseCore

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
