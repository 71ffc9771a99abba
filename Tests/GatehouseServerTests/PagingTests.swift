import Foundation
import GatehouseCore
import GatehouseTestSupport
import Testing

/// Request and grant listings page by keyset (`cursor` in, `next_cursor` out): every item once, newest
/// first, whatever is filed between two pages; a cursor the server did not hand out is a clear 400.
@Suite("Listings page by cursor")
struct PagingTests {
    /// Follows `next_cursor` from the first page to the last; `between` runs after each page.
    static func walk(_ key: String, between: () async throws -> Void = {},
                     _ page: (String?) async throws -> TestServer.Reply) async throws -> (ids: [String], pages: [Int]) {
        var ids: [String] = [], sizes: [Int] = [], cursor: String?
        repeat {
            let reply = try await page(cursor)
            try #require(reply.status == 200, "\(reply.json)")
            let items = reply.json[key] as? [[String: Any]] ?? []
            ids += items.compactMap { $0["id"] as? String }
            sizes.append(items.count)
            cursor = reply.string("next_cursor")
            try await between()
        } while cursor != nil && sizes.count < 50
        return (ids, sizes)
    }

    @Test("requests: pages of 3 hold each request once, newest first, also those filed in the same millisecond; later ones do not shift the pages")
    func requestPages() async throws {
        try await TestServer.with { server in
            let alice = try await server.token(for: "alice")
            var filed: [String] = []
            for n in 0..<8 {
                // Four pairs share their millisecond: the id breaks the tie.
                if n % 2 == 0 { server.clock.advance(by: 1) }
                let reply = try await server.request(alice, reason: "INC-\(500 + n) page through the order rows")
                filed.append(try #require(reply.string("id"), "\(reply.json)"))
            }
            let newestFirst = Array(zip(filed.indices, filed).sorted { a, b in
                a.0 / 2 != b.0 / 2 ? a.0 / 2 > b.0 / 2 : a.1 > b.1
            }.map(\.1))
            var later: [String] = []
            let walked = try await Self.walk("requests", between: {
                server.clock.advance(by: 1)
                later.append(try #require(try await server.request(alice, reason: "INC-\(600 + later.count) filed between two pages").string("id")))
            }) { cursor in
                try await server.listRequests(alice, limit: 3, cursor: cursor)
            }
            #expect(walked.pages == [3, 3, 2], "\(walked)")
            #expect(walked.ids == newestFirst, "every request once, newest first")
            #expect(Set(walked.ids).isDisjoint(with: later), "requests filed after the first page are on no later page")
            // The default page (100) holds them all, the later ones first.
            let all = try await server.listRequests(alice).json
            #expect((all["requests"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == later.reversed() + newestFirst)
            #expect(all["next_cursor"] == nil, "a short page is the last")
        }
    }

    @Test("grants: everyone's (admins) and one's own page by start, ties broken by id")
    func grantPages() async throws {
        try await TestServer.with { server in
            let alice = try await server.token(for: "alice")
            let start = server.clock.now().addingTimeInterval(-86_400)
            let grants = (0..<7).map { n in
                Grant(id: "grt_page\(n)", requestId: "req_page\(n)", principal: n < 5 ? "alice" : "bob", resource: "prod-db", role: "read",
                      allows: .read, startsAt: start.addingTimeInterval(Double(n / 3) * 60), expiresAt: start.addingTimeInterval(3_600),
                      endedAt: start.addingTimeInterval(3_600), endReason: .expired)
            }
            try await server.service.store.write { session in
                for grant in grants {
                    try await session.insertRequest(AccessRequest(
                        id: grant.requestId, requester: grant.principal, resource: grant.resource, role: grant.role, duration: TimeSpan(seconds: 3_600),
                        reason: "INC-800 earlier work", ticket: nil, state: .approved, approvalsRequired: 0, createdAt: grant.startsAt,
                        pendingExpiresAt: grant.startsAt, decidedAt: grant.startsAt, decidedBy: nil, grantId: grant.id))
                    try await session.insertGrant(grant)
                }
            }
            let newestFirst = grants.sorted { ($0.startsAt, $0.id) > ($1.startsAt, $1.id) }.map(\.id)
            let everyone = try await Self.walk("grants") { try await server.listGrants(TestServer.adminToken, scope: .all, limit: 2, cursor: $0) }
            #expect(everyone.ids == newestFirst)
            #expect(everyone.pages == [2, 2, 2, 1])
            let own = try await Self.walk("grants") { try await server.listGrants(alice, limit: 2, cursor: $0) }
            #expect(own.ids == newestFirst.filter { id in grants.first { $0.id == id }?.principal == "alice" })
            // Only active ones: these ended, so none, and no next page.
            let active = try await server.listGrants(TestServer.adminToken, scope: .all, active: true, limit: 2)
            #expect((active.json["grants"] as? [Any])?.isEmpty == true && active.json["next_cursor"] == nil)
        }
    }

    @Test("a cursor the server did not hand out is a 400 naming the field; a well-formed one past the end is an empty page")
    func badCursors() async throws {
        try await TestServer.with { server in
            let alice = try await server.token(for: "alice")
            for bad in ["abc", "12.", ".req_x", "1.req_x;drop", "1234567890123456.req_x", "--1.req_x", "-.req_x", "+1.req_x", "1.2.3",
                        String(repeating: "1", count: 200)] {
                for path in ["/v1/requests", "/v1/grants"] {
                    let reply = try await server.send(.GET, "\(path)?cursor=\(bad.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)", token: alice)
                    #expect(reply.status == 400, "\(path) \(bad): \(reply.status)")
                    #expect(reply.json["field"] as? String == "cursor", "\(path) \(bad): \(reply.json)")
                    #expect((reply.json["detail"] as? String ?? "").contains("next_cursor"), "\(reply.json)")
                }
            }
            _ = try await server.request(alice)
            // A time before 1970 (an imported store, a clock set wrong) is a negative cursor, taken back as handed out.
            let early = try #require(PageCursor("-5000.req_x"))
            #expect(early.at == Date(timeIntervalSince1970: -5) && early.text == "-5000.req_x")
            let past = try await server.listRequests(alice, cursor: "0.req_zzzz")
            #expect(past.status == 200 && (past.json["requests"] as? [Any])?.isEmpty == true && past.json["next_cursor"] == nil, "\(past.json)")
        }
    }

    @Test("to_approve asks only for the roles the approver approves: a page's cursor never names a request they may not see")
    func toApprovePages() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob", "erin")
            // erin (security) approves prod-db's admin role, not its write role.
            var admin: [String] = []
            for n in 0..<6 {
                server.clock.advance(by: 1)
                let write = try await server.request(t["bob"]!, reason: "INC-\(800 + n) rotate the replica keys")
                #expect(write.status == 201, "\(write.json)")
                if n % 2 == 0 {
                    let reply = try await server.request(t["alice"]!, role: "admin", reason: "INC-\(900 + n) drop the stale partitions")
                    admin.append(try #require(reply.string("id"), "\(reply.json)"))
                }
            }
            var seen: [String] = []
            var cursor: String?
            repeat {
                let page = try await server.listRequests(t["erin"]!, scope: .toApprove, limit: 1, cursor: cursor)
                try #require(page.status == 200, "\(page.json)")
                let ids = (page.json["requests"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
                seen += ids
                cursor = page.string("next_cursor")
                if let cursor { #expect(admin.contains { cursor.hasSuffix(".\($0)") }, "the cursor \(cursor) names a request erin may see") }
            } while cursor != nil && seen.count < 20
            #expect(seen == admin.reversed(), "\(seen)")
        }
    }

    @Test("the CLI passes --cursor on and says under the table how to get the next page")
    func cliPages() async throws {
        try await TestServer.with { server in
            let alice = try await server.token(for: "alice")
            for n in 0..<3 { _ = try await server.request(alice, reason: "INC-\(700 + n) page through the order rows") }
            let environment = ["GATEHOUSE_URL": server.baseURL, "GATEHOUSE_TOKEN": alice]
            let first = try await Command.run(try ServeProcess.binary().path, ["requests", "--limit", "2"], environment: environment)
            #expect(first.status == 0, "\(first)")
            let hint = try #require(first.stderr.split(separator: "\n").first { $0.hasPrefix("more: ") }, "\(first)")
            let cursor = String(try #require(hint.split(separator: " ").last))
            let second = try await Command.run(try ServeProcess.binary().path, ["requests", "--limit", "2", "--cursor", cursor, "--output", "json"],
                                               environment: environment)
            #expect(second.status == 0, "\(second)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(second.stdout.utf8)) as? [String: Any])
            #expect((json["requests"] as? [Any])?.count == 1 && json["next_cursor"] == nil, "\(json)")
            let bad = try await Command.run(try ServeProcess.binary().path, ["grants", "--cursor", "nonsense"], environment: environment)
            #expect(bad.status != 0 && bad.stderr.contains("cursor"), "\(bad)")
            // A negative limit is a value out of range, not a missing one.
            let negative = try await Command.run(try ServeProcess.binary().path, ["grants", "--limit", "-1"], environment: environment)
            #expect(negative.status != 0 && negative.stderr.contains("limit") && negative.stderr.contains("1000")
                    && !negative.stderr.contains("Missing value"), "\(negative)")
        }
    }
}
