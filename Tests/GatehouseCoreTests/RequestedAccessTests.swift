import Foundation
import Testing
@testable import GatehouseCore

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

    @Test("`action` is not a role: asking for it without an action is refused, and break-glass never takes it")
    func actionIsNotARole() {
        expectGatehouseError(code: "missing_action", field: "role") {
            try open(NewRequestInput(resource: "prod-db", role: Role.actionRoleName, duration: "30m", reason: "INC-1 purge old rows"))
        }
        var policy = Self.policy()
        policy.breakGlass.enabled = true
        for access in [RequestedAccess.action(Self.delete), .role(Role.actionRoleName)] {
            expectGatehouseError(code: "break_glass_role") {
                try BreakGlass.open(NewRequestInput(resource: "prod-db", access: access, duration: "", reason: "INC-9 it is down"),
                                    requester: "alice", policy: policy, now: Fixture.t0, requestId: "req_1", grantId: "grt_1")
            }
        }
    }
}
