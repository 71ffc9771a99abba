import Foundation
import Testing
@testable import GatehouseCore

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
