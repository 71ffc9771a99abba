import Foundation
import Testing
@testable import GatehouseCore

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
        // Someone who approves only one-shot actions of a resource finds them too.
        var actionsOnly = policy
        actionsOnly.principals["frank"] = PrincipalEntry(groups: ["release"])
        actionsOnly.resources["billing-api"]?.actions = Role(name: Role.actionRoleName, requesters: ["engineers"], approvers: ["release"],
                                                             approvals: 1, maxDuration: Fixture.span("1h"), allows: .dangerous)
        #expect(RequestPermissions.approvableResources("frank", policy: actionsOnly) == ["billing-api"])
    }
}
