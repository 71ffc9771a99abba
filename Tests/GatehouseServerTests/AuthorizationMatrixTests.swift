import Foundation
import GatehouseCore
import GatehouseTestSupport
import NIOHTTP1
import Testing

/// Every API operation against every kind of caller, from one table. An operation in openapi.yaml
/// without a row fails the test, so a new endpoint cannot arrive without deciding who may call it.
@Suite("Authorization matrix")
struct AuthorizationMatrixTests {
    enum Who: String, CaseIterable, CustomStringConvertible {
        case none, badToken, revokedToken, requester, unrelated, otherApprover, approver, reviewer, service, blocked, admin, bootstrap
        var description: String { rawValue }
    }

    static let policy = """
        version: 1
        principals:
          alice: {groups: [engineers]}
          ursula: {groups: [visitors]}
          otto: {groups: [analysts]}
          carol: {groups: [dba]}
          rita: {groups: [reviewers]}
          blocky: {groups: [engineers]}
          frank: {groups: [engineers]}
          erin: {groups: [security]}
          deploy-bot: {groups: [automation, dba], kind: service}
        admins: [security]
        resources:
          prod-db:
            kind: postgres
            roles:
              read:  {requesters: [engineers], approvals: 0, max_duration: 8h, allows: read}
              write: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 1h, allows: write}
          analytics:
            kind: generic
            roles:
              query: {requesters: [engineers, visitors], approvers: [analysts], approvals: 1, max_duration: 1h, allows: read}
        break_glass: {enabled: true, requesters: [engineers]}
        antispam: {enabled: false, reviewers: [reviewers]}
        """

    /// Callers that are signed in (everyone but the three without a valid token).
    static let signedIn: Set<Who> = Set(Who.allCases).subtracting([.none, .badToken, .revokedToken])

    struct Row {
        var method: HTTPMethod
        /// The path as openapi.yaml writes it (`{id}`), and as sent.
        var template: String
        var path: String
        var body: [String: Any]?
        /// Who gets an answer other than 401/403/404 (a 400 or 409 about the input or the state counts
        /// as allowed: the caller got past authorization).
        var allowed: Set<Who>
        /// Public operations: no token needed.
        var isPublic = false
    }

    @Test("every operation × no token, bad token, revoked token, requester, unrelated principal, approver of another resource, approver, reviewer, service account, blocked principal, admin, bootstrap admin")
    func matrix() async throws {
        try await TestServer.with(policy: Self.policy) { server in
            let t = try await server.tokens("alice", "ursula", "otto", "carol", "rita", "blocky", "frank", "erin", "deploy-bot")
            // The revoked token is frank's; blocky is blocked by a report.
            let frankID = try #require((try await server.listTokens(TestServer.adminToken).json["tokens"] as? [[String: Any]] ?? [])
                .first { $0["principal"] as? String == "frank" }?["id"] as? String)
            #expect(try await server.revokeToken(TestServer.adminToken, frankID).status == 200)
            let blockys = try #require(try await server.request(t["blocky"]!, role: "write", reason: "INC-1 fix the rows").string("id"))
            #expect(try await server.report(t["carol"]!, blockys, comment: "not blocky's work").status == 200)
            // alice's pending request, her grant, and a break-glass use to review.
            let request = try #require(try await server.request(t["alice"]!, role: "write", reason: "INC-2 fix the order rows").string("id"))
            let grant = try #require(try await server.request(t["alice"]!, role: "read", reason: "INC-3 look at the order rows").string("grant_id"))
            let used = try await server.send(.POST, "/v1/break-glass", token: t["alice"]!,
                                             json: ["resource": "prod-db", "role": "write", "reason": "INC-4 primary down"])
            let glass = try #require(used.string("grant_id"),
                                     "\(String(decoding: used.body, as: UTF8.self))")
            let tokens: [Who: String] = [
                .badToken: "ghs_not_a_token_0000000000000000", .revokedToken: "", .requester: t["alice"]!, .unrelated: t["ursula"]!,
                .otherApprover: t["otto"]!, .approver: t["carol"]!, .reviewer: t["rita"]!, .service: t["deploy-bot"]!, .blocked: t["blocky"]!,
                .admin: t["erin"]!, .bootstrap: TestServer.adminToken,
            ]
            let everyone = Self.signedIn
            let admins: Set<Who> = [.admin, .bootstrap]
            // In this order: a row may change state (an approval, a revocation), and the rows after it
            // are written for that state; the rows that block, unblock or end a caller come last.
            let rows: [Row] = [
                Row(method: .GET, template: "/healthz", path: "/healthz", allowed: Set(Who.allCases), isPublic: true),
                Row(method: .GET, template: "/readyz", path: "/readyz", allowed: Set(Who.allCases), isPublic: true),
                Row(method: .GET, template: "/v1/whoami", path: "/v1/whoami", allowed: everyone),
                Row(method: .POST, template: "/v1/requests", path: "/v1/requests",
                    body: ["resource": "analytics", "role": "query", "duration": "30m", "reason": "INC-5 weekly numbers"],
                    allowed: [.requester, .unrelated]),
                Row(method: .GET, template: "/v1/requests", path: "/v1/requests", allowed: everyone),
                Row(method: .GET, template: "/v1/requests/{id}", path: "/v1/requests/\(request)", allowed: admins.union([.requester, .approver])),
                // Only the approver denies (the others are refused before the request's state is looked at).
                Row(method: .POST, template: "/v1/requests/{id}/deny", path: "/v1/requests/\(request)/deny", body: ["comment": "not now"],
                    allowed: [.approver]),
                Row(method: .POST, template: "/v1/requests/{id}/review", path: "/v1/requests/\(request)/review", body: ["decision": "release"],
                    allowed: admins.union([.reviewer])),
                Row(method: .POST, template: "/v1/requests/{id}/approve", path: "/v1/requests/\(request)/approve", body: [:], allowed: [.approver]),
                Row(method: .POST, template: "/v1/requests/{id}/cancel", path: "/v1/requests/\(request)/cancel", allowed: admins.union([.requester])),
                Row(method: .POST, template: "/v1/break-glass", path: "/v1/break-glass",
                    body: ["resource": "analytics", "role": "query", "reason": "INC-6 dashboards down"], allowed: [.requester]),
                Row(method: .GET, template: "/v1/break-glass", path: "/v1/break-glass", allowed: everyone),
                // Break-glass uses are reviewed by admins, those told about them and approvers of the resource.
                Row(method: .POST, template: "/v1/break-glass/{id}/review", path: "/v1/break-glass/\(glass)/review", body: ["comment": "looked at it"],
                    allowed: admins.union([.approver, .reviewer])),
                Row(method: .GET, template: "/v1/webhooks/deliveries", path: "/v1/webhooks/deliveries", allowed: admins),
                Row(method: .GET, template: "/v1/principals", path: "/v1/principals", allowed: admins),
                Row(method: .GET, template: "/v1/notifications", path: "/v1/notifications", allowed: everyone),
                Row(method: .GET, template: "/v1/grants", path: "/v1/grants", allowed: everyone),
                Row(method: .GET, template: "/v1/grants/{id}", path: "/v1/grants/\(grant)", allowed: admins.union([.requester])),
                Row(method: .POST, template: "/v1/grants/{id}/revoke", path: "/v1/grants/\(grant)/revoke", body: ["reason": "INC-7 no longer needed"],
                    allowed: admins),
                // Release is the holder's; admins revoke instead.
                Row(method: .POST, template: "/v1/grants/{id}/release", path: "/v1/grants/\(grant)/release", allowed: [.requester]),
                Row(method: .POST, template: "/v1/check", path: "/v1/check", body: ["resource": "prod-db", "role": "read"], allowed: everyone),
                Row(method: .POST, template: "/v1/classify", path: "/v1/classify", body: ["kind": "sql", "text": "SELECT 1"], allowed: everyone),
                Row(method: .GET, template: "/v1/audit", path: "/v1/audit", allowed: admins),
                Row(method: .GET, template: "/v1/audit/verify", path: "/v1/audit/verify", allowed: admins),
                Row(method: .POST, template: "/v1/tokens", path: "/v1/tokens", body: ["principal": "deploy-bot"], allowed: admins),
                Row(method: .GET, template: "/v1/tokens", path: "/v1/tokens", allowed: admins),
                Row(method: .POST, template: "/v1/tokens/{id}/revoke", path: "/v1/tokens/\(frankID)/revoke", allowed: admins),
                Row(method: .POST, template: "/v1/auth/login", path: "/v1/auth/login", body: ["redirect_uri": "http://127.0.0.1:9/callback"],
                    allowed: Set(Who.allCases), isPublic: true),
                Row(method: .POST, template: "/v1/auth/login/complete", path: "/v1/auth/login/complete",
                    body: ["state": "st_x", "code": "c", "login_secret": "ghl_x"], allowed: Set(Who.allCases), isPublic: true),
                Row(method: .POST, template: "/v1/auth/device", path: "/v1/auth/device", allowed: Set(Who.allCases), isPublic: true),
                Row(method: .POST, template: "/v1/auth/device/poll", path: "/v1/auth/device/poll", body: ["device_secret": "ghd_x"],
                    allowed: Set(Who.allCases), isPublic: true),
                Row(method: .POST, template: "/v1/auth/logout", path: "/v1/auth/logout", allowed: everyone),
                Row(method: .GET, template: "/v1/sessions", path: "/v1/sessions", allowed: admins),
                Row(method: .POST, template: "/v1/policy/reload", path: "/v1/policy/reload", allowed: admins),
                Row(method: .POST, template: "/v1/principals/{name}/unblock", path: "/v1/principals/blocky/unblock", allowed: admins),
                Row(method: .POST, template: "/v1/requests/{id}/report", path: "/v1/requests/\(request)/report", body: ["comment": "not alice's work"],
                    allowed: admins.union([.approver, .reviewer])),
                Row(method: .POST, template: "/v1/principals/{name}/sessions/revoke", path: "/v1/principals/ursula/sessions/revoke", allowed: admins),
            ]

            // Every operation of the contract has a row.
            let contract = try Self.operations()
            let covered = Set(rows.map { "\($0.method.rawValue) \($0.template)" })
            #expect(contract.subtracting(covered).isEmpty, "operations without a row: \(contract.subtracting(covered).sorted())")
            #expect(covered.subtracting(contract).isEmpty, "rows for operations the contract does not have: \(covered.subtracting(contract).sorted())")

            var mismatches: [String] = []
            for row in rows {
                for who in Who.allCases {
                    let token = who == .none ? nil : (who == .revokedToken ? t["frank"]! : tokens[who])
                    let reply = try await server.send(row.method, row.path, token: token, json: row.body)
                    let got = reply.status
                    let ok: Bool
                    if row.isPublic {
                        ok = got != 401 && got != 403 && got < 500
                    } else if [.none, .badToken, .revokedToken].contains(who) {
                        ok = got == 401
                    } else if row.allowed.contains(who) {
                        ok = ![401, 403, 404].contains(got) && got < 500
                    } else {
                        ok = [403, 404].contains(got)
                    }
                    if !ok { mismatches.append("\(row.method.rawValue) \(row.template) as \(who): \(got) \(reply.string("code") ?? "")") }
                }
            }
            #expect(mismatches.isEmpty, "\(mismatches.count) cells differ:\n\(mismatches.joined(separator: "\n"))")
        }
    }

    /// The operations openapi.yaml declares, as "METHOD /path".
    static func operations() throws -> Set<String> {
        let text = try String(contentsOf: ServeProcess.repositoryRoot.appendingPathComponent("Sources/GatehouseServer/openapi.yaml"), encoding: .utf8)
        var out: Set<String> = []
        var path: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("components:") { break }
            if line.hasPrefix("  /"), line.hasSuffix(":") { path = String(line.dropFirst(2).dropLast()) }
            for method in ["get", "post", "put", "delete", "patch"] where line == "    \(method):" {
                if let path { out.insert("\(method.uppercased()) \(path)") }
            }
        }
        return out
    }
}
