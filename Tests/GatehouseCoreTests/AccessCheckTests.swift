import Foundation
import Testing
@testable import GatehouseCore

@Suite("AccessCheck")
struct AccessCheckTests {
    let policy = Fixture.policy()
    let t0 = Fixture.t0

    func check(_ principal: String = "alice", resource: String = "prod-db", role: String = "write",
               grants: [Grant], at now: Date? = nil) -> CheckDecision {
        AccessCheck.decide(principal: principal, resource: resource, role: role, policy: policy, grants: grants,
                           now: now ?? t0.addingTimeInterval(60))
    }

    @Test("an active grant for the role allows")
    func allowWithGrant() {
        let grant = Fixture.grant(principal: "alice", role: "write", allows: .write)
        #expect(check(grants: [grant]) == .allow(grant))
    }

    @Test("a stronger role's grant covers weaker roles", arguments: ["write", "read"])
    func strongerCoversWeaker(role: String) {
        let admin = Fixture.grant(principal: "alice", role: "admin", allows: .dangerous)
        #expect(check(role: role, grants: [admin]) == .allow(admin))
    }

    @Test("a weaker role's grant does not cover a stronger role")
    func weakerDoesNotCover() {
        let read = Fixture.grant(principal: "alice", role: "read", allows: .read)
        guard case .approvalRequired = check(role: "write", grants: [read]) else {
            Issue.record("a read grant must not allow write")
            return
        }
        guard case .approvalRequired = check(role: "admin", grants: [read]) else {
            Issue.record("a read grant must not allow admin")
            return
        }
    }

    @Test("an expired grant no longer allows: approval is required one second after expiry")
    func expiredGrant() {
        let grant = Fixture.grant(principal: "alice", role: "write", allows: .write, duration: 3_600)
        #expect(check(grants: [grant], at: grant.expiresAt.addingTimeInterval(-1)) == .allow(grant))
        let decision = check(grants: [grant], at: grant.expiresAt.addingTimeInterval(1))
        guard case let .approvalRequired(command, reason) = decision else {
            Issue.record("expected approval_required, got \(decision)")
            return
        }
        #expect(command.contains("gatehouse request prod-db --role write --for 1h"))
        #expect(reason.contains("no active grant for prod-db/write"))
        #expect(reason.contains("(INC|CHG)-[0-9]+"), "the hint names the ticket pattern")
        guard case .approvalRequired = check(grants: [grant], at: grant.expiresAt) else {
            Issue.record("at exactly expiresAt the grant is over")
            return
        }
    }

    @Test("a released or revoked grant no longer allows")
    func endedGrant() throws {
        let grant = Fixture.grant(principal: "alice")
        let released = try GrantLifecycle.release(grant, by: "alice", now: t0.addingTimeInterval(30))
        guard case .approvalRequired = check(grants: [released]) else {
            Issue.record("a released grant must not allow")
            return
        }
    }

    @Test("the grant that lasts longest is returned")
    func longestGrantWins() {
        let short = Fixture.grant(principal: "alice", role: "write", allows: .write, duration: 600)
        let long = Fixture.grant(principal: "alice", role: "admin", allows: .dangerous, duration: 1_200)
        #expect(check(grants: [short, long]) == .allow(long))
        #expect(check(grants: [long, short]) == .allow(long))
    }

    @Test("unknown resource or role is denied, even with grants")
    func unknownResource() {
        let grant = Fixture.grant(principal: "alice", resource: "old-db")
        guard case let .deny(reason) = check(resource: "old-db", grants: [grant]) else {
            Issue.record("unknown resource must be denied")
            return
        }
        #expect(reason.contains("unknown resource 'old-db'"))
        guard case .deny = check(role: "owner", grants: [Fixture.grant(principal: "alice", role: "owner")]) else {
            Issue.record("unknown role must be denied")
            return
        }
    }

    @Test("a principal who may not request is denied, not told to request")
    func nonRequesterDenied() {
        guard case let .deny(reason) = check("mallory", grants: []) else {
            Issue.record("mallory is not a requester")
            return
        }
        #expect(reason.contains("mallory may not request prod-db/write"))
    }

    @Test("a principal missing from the policy is denied even with an active grant")
    func removedPrincipalDenied() {
        let grant = Fixture.grant(principal: "ghost")
        guard case .deny = check("ghost", grants: [grant]) else {
            Issue.record("a principal not in the policy must be denied")
            return
        }
    }

    @Test("another principal's grant does not count")
    func othersGrantDoesNotCount() {
        let bobs = Fixture.grant(principal: "bob", role: "admin", allows: .dangerous)
        guard case .approvalRequired = check("alice", grants: [bobs]) else {
            Issue.record("bob's grant must not allow alice")
            return
        }
        #expect(check("bob", grants: [bobs]) == .allow(bobs))
    }

    @Test("a grant on another resource does not count")
    func otherResourceDoesNotCount() {
        let api = Fixture.grant(principal: "alice", resource: "billing-api", role: "operate", allows: .dangerous)
        guard case .approvalRequired = check(grants: [api]) else {
            Issue.record("a billing-api grant must not allow prod-db")
            return
        }
    }

    /// A one-shot approval is a grant of last resort: a role grant that already allows the action is used
    /// instead, and the one-shot stays for when no role does (its holder's write grant may end first).
    @Test("an action a role grant allows does not use up a one-shot approval of the same text; without the role grant the one-shot allows it once")
    func roleBeforeOneShot() {
        let actions = Role(name: "action", requesters: ["engineers"], approvers: ["dba"], approvals: 1, maxDuration: Fixture.span("1h"), allows: .dangerous)
        var policy = Fixture.policy()
        policy.resources["prod-db"]?.actions = actions
        let action = Action(kind: .sql, text: "UPDATE orders SET state = 'done' WHERE id = 7")
        let classification = ActionClassification(kind: .sql, findings: [Finding(category: "write", level: .write, statement: 1, position: 0, detail: "UPDATE")],
                                                  statements: 1)
        var once = Fixture.grant(principal: "alice", role: "action", allows: .write)
        once.id = "grt_once"
        once.actionDigest = action.digest
        let write = Fixture.grant(principal: "alice", role: "write", allows: .write)
        let read = Fixture.grant(principal: "alice", role: "read", allows: .read)
        func decide(_ grants: [Grant]) -> ActionDecision {
            ActionCheck.decide(principal: "alice", resource: "prod-db", action: action, classification: classification,
                               policy: policy, grants: grants, now: t0.addingTimeInterval(60))
        }
        #expect(decide([once, write]) == .allowByRole(write))
        #expect(decide([write, once]) == .allowByRole(write))
        // A read grant does not cover a write: the one-shot does.
        #expect(decide([read, once]) == .allowOnce(once))
        #expect(decide([once]) == .allowOnce(once))
    }
}
