import Foundation
import Testing
@testable import GatehouseCore

@Suite("GrantLifecycle")
struct GrantLifecycleTests {
    let t0 = Fixture.t0
    let grant = Fixture.grant(principal: "alice", duration: 3_600)

    @Test("isActive is false exactly at expiresAt and true one millisecond before")
    func activeBoundary() {
        #expect(grant.isActive(at: grant.expiresAt.addingTimeInterval(-0.001)))
        #expect(!grant.isActive(at: grant.expiresAt))
        #expect(!grant.isActive(at: grant.expiresAt.addingTimeInterval(0.001)))
        #expect(grant.isActive(at: grant.startsAt))
        #expect(!grant.isActive(at: grant.startsAt.addingTimeInterval(-0.001)), "not active before it starts")
        #expect(grant.state(at: grant.expiresAt.addingTimeInterval(-0.001)) == "active")
        #expect(grant.state(at: grant.expiresAt) == "expired", "an unswept grant past expiry reads as expired")
    }

    @Test("the holder releases their grant")
    func release() throws {
        let now = t0.addingTimeInterval(600)
        let released = try GrantLifecycle.release(grant, by: "alice", now: now)
        #expect(released.endReason == .released)
        #expect(released.endedAt == now)
        #expect(released.endedBy == "alice")
        #expect(released.expiresAt == grant.expiresAt, "expiry is kept for the record")
        #expect(!released.isActive(at: now))
        #expect(released.state(at: now) == "released")
    }

    @Test("only the holder can release", arguments: ["bob", "erin", "ALICE", ""])
    func releaseByOthers(principal: String) {
        expectGatehouseError(code: "not_your_grant", kind: .forbidden) {
            try GrantLifecycle.release(grant, by: principal, now: t0.addingTimeInterval(10))
        }
    }

    @Test("only an admin can revoke, and must say why")
    func revoke() throws {
        let now = t0.addingTimeInterval(60)
        expectGatehouseError(code: "admin_only", kind: .forbidden) {
            try GrantLifecycle.revoke(grant, by: "alice", isAdmin: false, reason: "done", now: now)
        }
        for blank in ["", "   ", "\n\t"] {
            expectGatehouseError(code: "missing_reason", kind: .invalid, field: "reason") {
                try GrantLifecycle.revoke(grant, by: "erin", isAdmin: true, reason: blank, now: now)
            }
        }
        expectGatehouseError(code: "reason_too_long", kind: .unprocessable, field: "reason") {
            try GrantLifecycle.revoke(grant, by: "erin", isAdmin: true, reason: String(repeating: "ü", count: 2_049), now: now)
        }
        expectGatehouseError(code: "control_character", kind: .invalid, field: "reason") {
            try GrantLifecycle.revoke(grant, by: "erin", isAdmin: true, reason: "gone\u{1B}[2J", now: now)
        }
        expectGatehouseError(code: "deceptive_character", kind: .invalid, field: "reason") {
            try GrantLifecycle.revoke(grant, by: "erin", isAdmin: true, reason: "gone \u{202E}", now: now)
        }
        let revoked = try GrantLifecycle.revoke(grant, by: "erin", isAdmin: true, reason: "  suspicious activity ", now: now)
        #expect(revoked.endReason == .revoked)
        #expect(revoked.endedBy == "erin")
        #expect(revoked.endedAt == now)
        #expect(revoked.endComment == "suspicious activity")
        #expect(!revoked.isActive(at: now))
    }

    @Test("an expired grant cannot be released or revoked")
    func cannotEndExpired() {
        for now in [grant.expiresAt, grant.expiresAt.addingTimeInterval(1)] {
            let error = expectGatehouseError(code: "grant_not_active", kind: .conflict) {
                try GrantLifecycle.release(grant, by: "alice", now: now)
            }
            #expect(error?.message.contains("expired") == true)
            expectGatehouseError(code: "grant_not_active", kind: .conflict) {
                try GrantLifecycle.revoke(grant, by: "erin", isAdmin: true, reason: "cleanup", now: now)
            }
        }
    }

    @Test("an ended grant cannot be ended again")
    func cannotEndTwice() throws {
        let released = try GrantLifecycle.release(grant, by: "alice", now: t0.addingTimeInterval(10))
        let error = expectGatehouseError(code: "grant_not_active", kind: .conflict) {
            try GrantLifecycle.release(released, by: "alice", now: t0.addingTimeInterval(20))
        }
        #expect(error?.message.contains("released") == true)
        expectGatehouseError(code: "grant_not_active", kind: .conflict) {
            try GrantLifecycle.revoke(released, by: "erin", isAdmin: true, reason: "again", now: t0.addingTimeInterval(20))
        }
        let swept = GrantLifecycle.expire(grant)
        expectGatehouseError(code: "grant_not_active", kind: .conflict) {
            try GrantLifecycle.release(swept, by: "alice", now: t0.addingTimeInterval(20))
        }
    }

    @Test("the sweeper ends a grant at its expiry, not at sweep time")
    func sweep() {
        let swept = GrantLifecycle.expire(grant)
        #expect(swept.endReason == .expired)
        #expect(swept.endedAt == grant.expiresAt)
        #expect(swept.endedBy == "system")
        #expect(swept.state(at: grant.startsAt) == "expired")
    }
}
