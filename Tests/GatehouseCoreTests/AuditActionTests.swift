import Foundation
import Testing
@testable import GatehouseCore

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
