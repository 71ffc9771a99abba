import Foundation
import Testing
@testable import GatehouseCore

@Suite("Edge cases found in review")
struct ReviewFollowUpTests {
    @Test("a grant is no longer honoured once its holder leaves the role's requester groups")
    func grantEndsWithMembership() {
        let grant = Grant(id: "grt_1", requestId: "req_1", principal: "alice", resource: "prod-db", role: "write", allows: .write,
                          startsAt: Fixture.t0, expiresAt: Fixture.t0.addingTimeInterval(3600))
        let now = Fixture.t0.addingTimeInterval(60)
        let before = AccessCheck.decide(principal: "alice", resource: "prod-db", role: "write", policy: Fixture.policy(), grants: [grant], now: now)
        #expect(before == .allow(grant))
        var principals = Fixture.principals
        principals["alice"] = PrincipalEntry(groups: ["sales"])
        let after = AccessCheck.decide(principal: "alice", resource: "prod-db", role: "write", policy: Fixture.policy(principals: principals), grants: [grant], now: now)
        guard case .deny = after else {
            Issue.record("expected deny after alice left engineers, got \(after)")
            return
        }
    }

    @Test("a grant for a role removed from the policy covers nothing")
    func grantForRemovedRole() {
        let grant = Grant(id: "grt_1", requestId: "req_1", principal: "alice", resource: "prod-db", role: "admin", allows: .dangerous,
                          startsAt: Fixture.t0, expiresAt: Fixture.t0.addingTimeInterval(3600))
        let policy = Fixture.policy(roles: [Fixture.readRole, Fixture.writeRole])
        let decision = AccessCheck.decide(principal: "alice", resource: "prod-db", role: "read", policy: policy, grants: [grant],
                                          now: Fixture.t0.addingTimeInterval(60))
        guard case .approvalRequired = decision else {
            Issue.record("a grant of a removed role still counted: \(decision)")
            return
        }
    }

    @Test("zero-width joiners are allowed (emoji, Persian, Indic text); bidi overrides are not")
    func joinersAllowed() throws {
        try TextRules.check("INC-1 family 👨‍👩‍👧 fix", field: "reason")
        try TextRules.check("INC-1 می‌خواهم", field: "reason")
        #expect(throws: GatehouseError.self) { try TextRules.check("INC-1 \u{202E}txet", field: "reason") }
        #expect(throws: GatehouseError.self) { try TextRules.check("INC-1 \u{200B}hidden", field: "reason") }
    }

    @Test("durations: leading zeros and a trailing newline", arguments: [("0000000001s", Int64(1)), ("30m\n", 1800), ("007m", 420)])
    func lenientDurations(text: String, seconds: Int64) throws {
        #expect(try TimeSpan.parse(text).seconds == seconds)
    }
}
