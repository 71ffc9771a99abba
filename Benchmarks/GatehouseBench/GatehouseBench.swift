import AsyncHTTPClient
import Foundation
import GatehouseAPI
import GatehouseClient
import GatehouseCore
import GatehouseStore
import NIOCore
import NIOFoundationCompat

/// Load set-up and request+approve cycles for BENCHMARKS.md. `check` throughput is measured with wrk
/// (see scripts/bench.sh); this tool prepares the store for it and measures the write path.
@main
struct GatehouseBench {
    static func main() async throws {
        let args = Array(CommandLine.arguments.dropFirst())
        guard let mode = args.first else {
            print("usage: gatehouse-bench classify [--seconds S] | score | audit-log --database URL --events N | history|active-grants --database URL --count N | revoke-delay --url A,B --admin-token T [--rounds N] | setup|cycles|flood --url URL --admin-token T [--users N] [--resources N] [--lua FILE] [--seconds S] [--concurrency C] [--rate R] [--principals P] [--lead S]")
            exit(2)
        }
        func option(_ name: String, _ fallback: String) -> String {
            guard let index = args.firstIndex(of: "--\(name)"), index + 1 < args.count else { return fallback }
            return args[index + 1]
        }
        // Several instances: --url A,B (cycles file on one and approve on the next).
        let apis = option("url", "http://127.0.0.1:8080").split(separator: ",").map { API(base: String($0), admin: option("admin-token", "")) }
        let api = apis[0]
        let users = Int(option("users", "200"))!
        let resources = Int(option("resources", "5"))!
        switch mode {
        case "setup":
            try await setup(api, users: users, resources: resources, lua: option("lua", "check.lua"))
        case "receive":
            try await Receiver.run(port: Int(option("port", "18282"))!, log: option("log", "lags.txt"))
        case "score":
            ScoreBench.run(seconds: Double(option("seconds", "4"))!)
        case "classify":
            ClassifyBench.run(seconds: Double(option("seconds", "8"))!)
            await ClassifyBench.remembered(seconds: Double(option("seconds", "8"))! / 4)
        case "flood":
            try await flood(api, resources: resources, seconds: Double(option("seconds", "15"))!, rate: Double(option("rate", "20"))!,
                            flooders: Int(option("concurrency", "8"))!, principals: Int(option("principals", "1"))!,
                            lead: Double(option("lead", "0"))!)
        case "audit-log":
            // A store whose audit log holds N events, each appended as the server appends them (linked
            // into the hash chain), in transactions of 10,000: the data for the growth measurements.
            let events = Int(option("events", "10000"))!
            let (written, seconds) = try await writeInBatches(url: option("database", "sqlite:bench-audit.db"), count: events, batch: 10_000) { session, range in
                try await session.appendAudit(range.map {
                    AuditEntry(actor: "u\($0 % 200)", action: "grant.checked", subject: "grt_\($0)", resource: "db\($0 % 5)",
                               details: ["role": "read", "decision": "allow"])
                }, at: Date())
            }
            print(String(format: "audit-log: %d events in %.1fs", written, seconds))
        case "history":
            // A year of past requests, each approved with a grant that has since expired (and was ended by
            // the sweeper, as the server does), spread over u000..u199 and db0..db4: the data for the listing
            // and check growth measurements.
            let count = Int(option("count", "10000"))!
            let yearAgo = Date().addingTimeInterval(-365 * 86_400)
            let (written, seconds) = try await writeInBatches(url: option("database", "sqlite:bench-history.db"), count: count) { session, range in
                for n in range {
                    let at = yearAgo.addingTimeInterval(Double(n) / Double(count) * 360 * 86_400)
                    let user = String(format: "u%03d", n % 200)
                    let request = try approvedRequest("h\(n)", requester: user, resource: "db\((n / 200) % 5)", duration: "30m", reason: "INC-\(n) past work", at: at)
                    try await session.insertRequest(request)
                    let grant = Grant(id: "grt_h\(n)", requestId: request.id, principal: user, resource: request.resource,
                                      role: "write", allows: .write, startsAt: at, expiresAt: at.addingTimeInterval(1_800),
                                      endedAt: at.addingTimeInterval(1_800), endReason: .expired)
                    try await session.insertGrant(grant)
                    _ = try await session.endGrant(grant)
                }
            }
            print(String(format: "history: %d past requests and grants in %.1fs", written, seconds))
            // Cursors half way down the history, for measuring a deep page.
            let middle = count / 2, at = yearAgo.addingTimeInterval(Double(middle) / Double(count) * 360 * 86_400)
            print("requests-cursor \(PageCursor(at: at, id: "req_h\(middle)").text)")
            print("grants-cursor \(PageCursor(at: at, id: "grt_h\(middle)").text)")
        case "active-grants":
            // Grants in force now (approved within the last hour, 8 hours long), one per principal and
            // resource: u000..u199 on db0..db(count/200 - 1), so that each pair holds one, as a large
            // organisation's would; the data for check cost against the number of active grants.
            let count = Int(option("count", "10000"))!
            let now = Date()
            let (written, seconds) = try await writeInBatches(url: option("database", "sqlite:bench-active.db"), count: count) { session, range in
                for n in range {
                    let at = now.addingTimeInterval(-Double(n % 3_600))
                    let user = String(format: "u%03d", n % 200)
                    let request = try approvedRequest("a\(n)", requester: user, resource: "db\(n / 200)", duration: "8h", reason: "INC-\(n) ongoing work", at: at)
                    try await session.insertRequest(request)
                    try await session.insertGrant(Grant(id: "grt_a\(n)", requestId: request.id, principal: user, resource: request.resource,
                                                        role: "write", allows: .write, startsAt: at, expiresAt: at.addingTimeInterval(8 * 3_600)))
                }
            }
            print(String(format: "active-grants: %d grants in force in %.1fs", written, seconds))
        case "revoke-delay":
            try await revokeDelay(apis, rounds: Int(option("rounds", "50"))!)
        case "cycles":
            let concurrency = Int(option("concurrency", "8"))!
            try await cycles(apis, users: users, resources: resources, seconds: Double(option("seconds", "15"))!,
                             concurrency: concurrency, principals: Int(option("principals", "\(concurrency)"))!)
        default:
            print("unknown mode \(mode)")
            exit(2)
        }
    }

    /// One token per user, and a read grant (approvals: 0) for every user on every resource.
    static func setup(_ api: API, users: Int, resources: Int, lua: String) async throws {
        var tokens: [String] = []
        for user in 0..<users {
            tokens.append(try await api.token(for: String(format: "u%03d", user)))
        }
        let start = Date()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (user, token) in tokens.enumerated() {
                group.addTask {
                    for resource in 0..<resources {
                        let filed = try await api.file(token, resource: "db\(resource)", role: "read", duration: "8h", reason: "benchmark read grant for u\(user)")
                        guard filed.status == 201 else { throw BenchError("setup request failed: \(filed)") }
                    }
                }
            }
            try await group.waitForAll()
        }
        print("setup: \(users * resources) active grants in \(String(format: "%.1f", Date().timeIntervalSince(start)))s")
        // wrk script: each request checks a random user's grant on a random resource. Every request is
        // formatted once at start (wrk's advice for scripted requests), so the load generator's own Lua
        // work per request stays small next to the server's.
        let tokenList = tokens.map { "\"\($0)\"" }.joined(separator: ",")
        try """
            local tokens = {\(tokenList)}
            local resources = \(resources)
            local requests = {}
            for _, t in ipairs(tokens) do
              for r = 0, resources - 1 do
                local body = '{"resource":"db' .. r .. '","role":"read"}'
                requests[#requests + 1] = wrk.format("POST", "/v1/check", {["Host"] = "gatehouse", ["Authorization"] = "Bearer " .. t, ["Content-Type"] = "application/json"}, body)
              end
            end
            math.randomseed(os.time())
            request = function()
              return requests[math.random(#requests)]
            end
            """.write(toFile: lua, atomically: true, encoding: .utf8)
        // The same with a SQL action (read-level statements from the mix): what classification adds to a check.
        let statements = ClassifyBench.mix.filter { $0.hasPrefix("SELECT") }.map { "\"" + $0.replacingOccurrences(of: "'", with: "\\'") + "\"" }
        try """
            local tokens = {\(tokenList)}
            local statements = {\(statements.joined(separator: ","))}
            local resources = \(resources)
            local requests = {}
            for _, t in ipairs(tokens) do
              for r = 0, resources - 1 do
                for _, s in ipairs(statements) do
                  local body = '{"resource":"db' .. r .. '","action":{"kind":"sql","text":"' .. s .. '"}}'
                  requests[#requests + 1] = wrk.format("POST", "/v1/check", {["Host"] = "gatehouse", ["Authorization"] = "Bearer " .. t, ["Content-Type"] = "application/json"}, body)
                end
              end
            end
            math.randomseed(os.time())
            request = function()
              return requests[math.random(#requests)]
            end
            """.write(toFile: lua.replacingOccurrences(of: ".lua", with: "-action.lua"), atomically: true, encoding: .utf8)
    }

    /// Request + approve cycles for `seconds`, from `concurrency` workers; prints cycles/s and latency percentiles.
    /// `principals` requesters (u000...), each worker taking its own share in turn (worker w files as
    /// u(w), u(w + concurrency), ...): by default one each, so a worker's principal files a request as soon as
    /// the last was approved, hundreds a minute; with 200, each person files a few a minute, as a team does.
    static func cycles(_ apis: [API], users: Int, resources: Int, seconds: Double, concurrency: Int, principals: Int) async throws {
        let api = apis[0]
        // Each worker files its next request after the last one was approved, and workers share no
        // principal, so none is ever "the identical pending request" of another.
        var tokens: [String] = []
        for index in 0..<max(principals, concurrency) { tokens.append(try await api.token(for: String(format: "u%03d", index))) }
        let requesters = (0..<concurrency).map { worker in stride(from: worker, to: tokens.count, by: concurrency).map { tokens[$0] } }
        let approvers = try await [api.token(for: "ops1"), api.token(for: "ops2")]
        let deadline = Date().addingTimeInterval(seconds)
        let start = Date()
        let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for worker in 0..<concurrency {
                group.addTask {
                    var own: [Double] = []
                    var n = 0
                    while Date() < deadline {
                        let t0 = Date()
                        let created = try await apis[worker % apis.count].file(requesters[worker][n % requesters[worker].count], resource: "db\((worker + n) % resources)", role: "write",
                                                                               duration: "5m", reason: "INC-\(worker * 100_000 + n) benchmark cycle")
                        guard created.status == 201, let id = created.request?.id else { throw BenchError("request failed: \(created)") }
                        let approved = try await apis[(worker + 1) % apis.count].approve(approvers[n % 2], id)
                        guard approved.state == .approved else { throw BenchError("approve failed: \(approved)") }
                        own.append(Date().timeIntervalSince(t0) * 1000)
                        n += 1
                    }
                    return own
                }
            }
            return try await group.reduce(into: [Double]()) { $0 += $1 }.sorted()
        }
        let elapsed = Date().timeIntervalSince(start)
        print(String(format: "cycles: %d request+approve cycles in %.1fs = %.0f cycles/s; cycle latency p50 %.2f ms, p99 %.2f ms (concurrency %d, %d principal(s), %d instance(s))",
                     latencies.count, elapsed, Double(latencies.count) / elapsed, percentile(latencies, 0.5), percentile(latencies, 0.99), concurrency,
                     max(principals, concurrency), apis.count))
    }
}

extension GatehouseBench {
    /// Honest request+approve cycles at a steady `rate` per second (each by one of u001..u199, so no honest
    /// principal meets its own limits), first alone, then while `flooders` workers (each on a keep-alive
    /// connection of its own) file requests as fast as they can, as one principal (`flood-bot`) or
    /// spread over `principals` (`flood-bot1`...). Prints the honest p99 of both phases, their ratio, and
    /// how many flood requests per second the server turned away.
    /// `lead`: seconds the flood runs before the honest phase is measured (0: both start together,
    /// so the flooders' first attempts, which the store must judge, fall inside the measurement).
    static func flood(_ api: API, resources: Int, seconds: Double, rate: Double, flooders: Int, principals: Int, lead: Double) async throws {
        let approvers = try await [api.token(for: "ops1"), api.token(for: "ops2")]
        var honest: [String] = []
        for user in 1..<200 { honest.append(try await api.token(for: String(format: "u%03d", user))) }
        var bots: [String] = []
        for n in 0..<max(principals, 1) { bots.append(try await api.token(for: principals <= 1 ? "flood-bot" : "flood-bot\(n + 1)")) }
        let botTokens = bots
        let tokens = honest
        var botAPI = api
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: max(flooders, 8))
        botAPI.client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        let attacker = botAPI
        func honestPhase(_ phase: Int) async throws -> [Double] {
            // At most two cycles per honest principal per phase: four in all, inside the default burst of 5.
            let count = min(Int(seconds * rate), 2 * tokens.count)
            let start = Date()
            var latencies: [Double] = []
            for n in 0..<count {
                let due = start.addingTimeInterval(Double(n) / rate)
                if due > Date() { try await Task.sleep(for: .milliseconds(Int(due.timeIntervalSinceNow * 1000))) }
                let t0 = Date()
                let index = phase * count + n
                let created = try await api.file(tokens[index % tokens.count], resource: "db\(index % resources)", role: "write", duration: "5m",
                                                 reason: "INC-\(700_000 + index) scheduled maintenance step \(index)")
                guard created.status == 201, let id = created.request?.id else { throw BenchError("honest request refused: \(created)") }
                _ = try await api.approve(approvers[n % 2], id)
                latencies.append(Date().timeIntervalSince(t0) * 1000)
            }
            return latencies.sorted()
        }
        func p99(_ values: [Double]) -> Double { percentile(values, 0.99) }
        func p50(_ values: [Double]) -> Double { percentile(values, 0.5) }
        let quiet = try await honestPhase(0)
        let done = ManagedFlag()
        let floodStart = Date()
        async let flooded: [Int: Int] = withThrowingTaskGroup(of: [Int: Int].self) { group in
            for worker in 0..<flooders {
                group.addTask {
                    var statuses: [Int: Int] = [:]
                    var n = 0
                    while !done.value {
                        let reply = try await attacker.file(botTokens[worker % botTokens.count], resource: "db\((worker + n) % resources)", role: "read",
                                                            duration: "\(10 + n % 100)m", reason: "automated access \(worker)-\(n)")
                        statuses[reply.status, default: 0] += 1
                        n += 1
                    }
                    return statuses
                }
            }
            return try await group.reduce(into: [:]) { total, part in total.merge(part, uniquingKeysWith: +) }
        }
        if lead > 0 { try await Task.sleep(for: .milliseconds(Int(lead * 1000))) }
        let loaded = try await honestPhase(1)
        done.value = true
        let statuses = try await flooded
        try await attacker.client.shutdown()
        let floodSeconds = Date().timeIntervalSince(floodStart)
        let refused = statuses.filter { $0.key == 429 || $0.key == 403 }.values.reduce(0, +)
        let accepted = statuses.filter { $0.key == 200 || $0.key == 201 }.values.reduce(0, +)
        print(String(format: "flood: honest cycles at %.0f/s: alone p50 %.2f ms p99 %.2f ms; during the flood p50 %.2f ms p99 %.2f ms; p99 ratio %.2f",
                     rate, p50(quiet), p99(quiet), p50(loaded), p99(loaded), p99(loaded) / max(p99(quiet), 0.001)))
        print(String(format: "flood: %d flood requests in %.1fs: %.0f/s turned away (429/403), %d accepted; statuses %@",
                     refused + accepted, floodSeconds, Double(refused) / floodSeconds, accepted,
                     statuses.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")))
    }
}

extension GatehouseBench {
    /// Opens the store at `url` and runs `body` over 0..<count in transactions of `batch`; the count written
    /// and the seconds it took.
    static func writeInBatches(url: String, count: Int, batch: Int = 5_000,
                               _ body: @escaping @Sendable (StoreSession, Range<Int>) async throws -> Void) async throws -> (Int, Double) {
        let store = try await GatehouseStore.open(url: url)
        let start = Date()
        var written = 0
        do {
            while written < count {
                let range = written..<min(written + batch, count)
                try await store.write { try await body($0, range) }
                written = range.upperBound
            }
        } catch {
            await store.close()
            throw error
        }
        await store.close()
        return (written, Date().timeIntervalSince(start))
    }

    /// A write request filed and approved by ops1 at `at`, whose grant is `grt_<key>`.
    static func approvedRequest(_ key: String, requester: String, resource: String, duration: String, reason: String, at: Date) throws -> AccessRequest {
        AccessRequest(id: "req_\(key)", requester: requester, resource: resource, role: "write", duration: try TimeSpan.parse(duration),
                      reason: reason, ticket: nil, state: .approved, approvalsRequired: 1, createdAt: at,
                      pendingExpiresAt: at.addingTimeInterval(86_400), decidedAt: at, decidedBy: "ops1", grantId: "grt_\(key)")
    }
}

extension GatehouseBench {
    /// Two instances on one database (`--url A,B`): a grant made on A and checked on B (so B answers it
    /// from its cache), then revoked on A; B is asked again and again until it no longer allows. Prints the
    /// delay from the revocation's answer to B's first refusal, p50/p99/max over `rounds`.
    /// The requesters are rv000..rv099, whom no other run uses: a grant left open by the cycles runs
    /// (u000... on the same resources, 5 minutes) would otherwise keep B allowing after the revocation,
    /// and the delay measured would be that grant's remaining life. B must not allow before each grant exists.
    static func revokeDelay(_ apis: [API], rounds: Int) async throws {
        guard apis.count >= 2 else { throw BenchError("revoke-delay needs --url A,B (two instances on one database)") }
        let (a, b) = (apis[0], apis[1])
        var delays: [Double] = []
        var grantDelays: [Double] = []
        func milliseconds(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }
        let approver = try await a.token(for: "ops1")
        for round in 0..<rounds {
            let name = String(format: "rv%03d", round % 100)
            let requester = try await a.token(for: name)
            let resource = "db\(round % 5)"
            let filed = try await a.file(requester, resource: resource, role: "write", duration: "5m", reason: "INC-\(900_000 + round) revocation delay")
            guard filed.status == 201, let id = filed.request?.id else { throw BenchError("request failed: \(filed)") }
            let check = { () async throws -> Components.Schemas.CheckResult.DecisionPayload in
                try await b.speaking(as: requester).check(body: .json(.RoleCheck(.init(resource: resource, role: "write")))).ok.body.json.decision
            }
            guard try await check() != .allow else { throw BenchError("\(name) is already allowed write on \(resource) before its grant: another grant would hide the revocation") }
            guard let grant = try await a.approve(approver, id).grantId else { throw BenchError("no grant for \(id)") }
            // B's cache held the denial until its watch saw the approval; then it allows, from its cache
            // after the first answer.
            let approved = ContinuousClock.now
            while try await check() != .allow {
                guard ContinuousClock.now - approved < .seconds(10) else { throw BenchError("instance B does not allow the new grant \(grant) after 10 s") }
            }
            grantDelays.append(milliseconds(ContinuousClock.now - approved))
            for _ in 0..<3 { guard try await check() == .allow else { throw BenchError("instance B stopped allowing the new grant \(grant)") } }
            _ = try await a.speaking(as: a.admin).revokeGrant(path: .init(id: grant), body: .json(.init(reason: "benchmark revocation"))).ok
            let revoked = ContinuousClock.now
            var allowed = 0
            while try await check() == .allow { allowed += 1 }
            let delay = milliseconds(ContinuousClock.now - revoked)
            delays.append(delay)
            // A slow round says what it saw: how many checks still allowed, and when.
            if delay > 1000 {
                print(String(format: "revoke-delay: round %d (grant %@ of %@ on %@): refused after %.1f ms and %d allowing checks",
                             round, grant, name, resource, delay, allowed))
            }
        }
        delays.sort()
        grantDelays.sort()
        print(String(format: "revoke-delay: %d revocations on A, first refusal on B after p50 %.1f ms, p99 %.1f ms, max %.1f ms",
                     delays.count, percentile(delays, 0.5), percentile(delays, 0.99), delays.last ?? 0))
        print(String(format: "revoke-delay: %d approvals on A, first allow on B after p50 %.1f ms, p99 %.1f ms, max %.1f ms",
                     grantDelays.count, percentile(grantDelays, 0.5), percentile(grantDelays, 0.99), grantDelays.last ?? 0))
    }
}

/// The value at fraction `p` of `sorted` (0 when empty).
func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

/// A flag the flood workers poll to stop.
final class ManagedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var _value = false
    var value: Bool {
        get { lock.withLock { _value } }
        set { lock.withLock { _value = newValue } }
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The benchmark's side of the API, through the client generated from openapi.yaml.
struct API: Sendable {
    /// The flooding principal gets a client (and connection pool) of its own, as an attacker on another
    /// machine would: sharing one would make honest requests queue for the attacker's connections.
    var client: HTTPClient = .shared
    let base: String
    let admin: String

    /// The generated client speaking as `token`; refusals come back as typed answers, not errors.
    func speaking(as token: String) -> Client {
        Client.gatehouse(URL(string: base)!, token: token, httpClient: client, timeout: .seconds(30), problems: .returned)
    }

    func token(for principal: String) async throws -> String {
        try await speaking(as: admin).createToken(body: .json(.init(principal: principal))).created.body.json.token
    }

    struct Filed: Sendable {
        var status: Int
        var request: Components.Schemas.AccessRequest?
    }

    /// Files a role request; the status is the server's, whatever it was.
    func file(_ token: String, resource: String, role: String, duration: String, reason: String) async throws -> Filed {
        let body = Components.Schemas.NewRequest.RoleRequest(.init(resource: resource, role: role, duration: duration, reason: reason))
        switch try await speaking(as: token).createRequest(body: .json(body)) {
        case .created(let answer): return Filed(status: 201, request: try answer.body.json)
        case .ok(let answer): return Filed(status: 200, request: try answer.body.json)
        case .tooManyRequests: return Filed(status: 429)
        case .`default`(let status, _): return Filed(status: status)
        }
    }

    func approve(_ token: String, _ id: String) async throws -> Components.Schemas.AccessRequest {
        switch try await speaking(as: token).approveRequest(path: .init(id: id)) {
        case .ok(let answer): return try answer.body.json
        case let other: throw BenchError("approve failed: \(other)")
        }
    }
}
