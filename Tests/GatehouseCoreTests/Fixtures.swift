import Foundation
import Testing
@testable import GatehouseCore

/// Shared test data: one small team and one resource with three roles of increasing power.
enum Fixture {
    /// A fixed instant (2027-01-15), well inside the range where millisecond timestamps round-trip.
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    static func span(_ text: String) -> TimeSpan {
        // Force-unwrapping is fine here: the fixtures only use literals known to parse.
        try! TimeSpan.parse(text)
    }

    static let principals: [String: PrincipalEntry] = [
        "alice": PrincipalEntry(groups: ["engineers"]),
        "bob": PrincipalEntry(groups: ["engineers", "dba"]),
        "carol": PrincipalEntry(groups: ["dba"]),
        "dave": PrincipalEntry(groups: ["dba", "security"]),   // in both approver groups of `admin`
        "erin": PrincipalEntry(groups: ["security"]),
        "deploy-bot": PrincipalEntry(groups: ["automation", "dba"], kind: .service),
        "mallory": PrincipalEntry(groups: ["contractors"]),
    ]

    static let readRole = Role(name: "read", requesters: ["engineers"], approvals: 0,
                               maxDuration: span("8h"), allows: .read)
    static let writeRole = Role(name: "write", requesters: ["engineers", "automation"], approvers: ["dba"], approvals: 1,
                                maxDuration: span("1h"), allows: .write,
                                reason: ReasonRule(minLength: 10, ticketPattern: "(INC|CHG)-[0-9]+"))
    static let adminRole = Role(name: "admin", requesters: ["engineers", "dba"], approvers: ["dba", "security"], approvals: 2,
                                maxDuration: span("30m"), allows: .dangerous)

    static func policy(principals: [String: PrincipalEntry] = Fixture.principals,
                       roles: [Role] = [readRole, writeRole, adminRole],
                       pendingTTL: TimeSpan = TimeSpan(seconds: 86_400)) -> Policy {
        let db = Resource(name: "prod-db", kind: .postgres, labels: ["env": "prod"],
                          roles: Dictionary(uniqueKeysWithValues: roles.map { ($0.name, $0) }))
        let api = Resource(name: "billing-api", kind: .http,
                           roles: ["operate": Role(name: "operate", requesters: ["engineers"], approvers: ["dba"], approvals: 1,
                                                   maxDuration: span("2h"), allows: .write)])
        return Policy(principals: principals, resources: ["prod-db": db, "billing-api": api],
                      adminGroups: ["security"], pendingTTL: pendingTTL)
    }

    static func input(_ role: String = "write", duration: String = "30m",
                      reason: String = "INC-4411 fix stuck migration", ticket: String? = nil,
                      resource: String = "prod-db") -> NewRequestInput {
        NewRequestInput(resource: resource, role: role, duration: duration, reason: reason, ticket: ticket)
    }

    /// Opens a request that must stay pending (the fixture roles `write` and `admin` need approvals).
    static func pending(_ role: String = "write", by requester: String = "alice", duration: String = "30m",
                        policy: Policy = Fixture.policy(), at now: Date = t0,
                        sourceLocation: SourceLocation = #_sourceLocation) throws -> AccessRequest {
        let outcome = try RequestLifecycle.open(input(role, duration: duration), requester: requester, policy: policy, now: now,
                                                requestId: "req_1", grantId: "grt_0")
        guard case let .pending(request) = outcome else {
            Issue.record("expected a pending request, got \(outcome)", sourceLocation: sourceLocation)
            throw FixtureError.unexpectedOutcome
        }
        return request
    }

    static func grant(principal: String = "alice", resource: String = "prod-db", role: String = "write",
                      allows: RiskLevel = .write, startsAt: Date = t0, duration: TimeInterval = 3_600) -> Grant {
        Grant(id: "grt_\(principal)_\(role)", requestId: "req_x", principal: principal, resource: resource, role: role,
              allows: allows, startsAt: startsAt, expiresAt: startsAt.addingTimeInterval(duration))
    }
}

enum FixtureError: Error { case unexpectedOutcome }

/// Runs a core call and returns the `GatehouseError` it threw, or nil when it succeeded.
func thrownError<T>(sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> T) -> GatehouseError? {
    do {
        _ = try body()
        return nil
    } catch let error as GatehouseError {
        return error
    } catch {
        Issue.record("expected a GatehouseError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Expects `body` to fail with a `GatehouseError` of this code (and kind / field when given); returns it.
@discardableResult
func expectGatehouseError<T>(code: String, kind: GatehouseError.Kind? = nil, field: String?? = nil,
                             sourceLocation: SourceLocation = #_sourceLocation,
                             _ body: () throws -> T) -> GatehouseError? {
    guard let error = thrownError(sourceLocation: sourceLocation, body) else {
        Issue.record("expected error `\(code)` but the call succeeded", sourceLocation: sourceLocation)
        return nil
    }
    #expect(error.code == code, "message: \(error.message)", sourceLocation: sourceLocation)
    if let kind { #expect(error.kind == kind, sourceLocation: sourceLocation) }
    if let field { #expect(error.field == field, sourceLocation: sourceLocation) }
    return error
}
