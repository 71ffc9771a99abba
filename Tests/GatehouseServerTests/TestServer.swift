import AsyncHTTPClient
import Foundation
import GatehouseAPI
import GatehouseClient
import GatehouseTestSupport
import GatehouseApp
import GatehouseCore
import GatehouseServer
import GatehouseStore
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import OpenAPIRuntime
import ServiceLifecycle

/// A real Gatehouse server on a loopback port, on a real SQLite file in a fresh folder (or a fresh
/// PostgreSQL database, see `TestDatabase`), with a clock the test moves. Talks HTTP through AsyncHTTPClient like any client would.
final class TestServer: Sendable {
    static let adminToken = "test-admin-token-0123456789"
    static let policyYAML = """
        version: 1
        principals:
          alice: {groups: [engineers]}
          bob:   {groups: [engineers, dba]}
          carol: {groups: [dba]}
          dave:  {groups: [dba, security]}
          erin:  {groups: [security]}
          frank: {groups: [dba]}
          deploy-bot: {groups: [automation, dba], kind: service}
        admins: [security]
        resources:
          prod-db:
            kind: postgres
            labels: {env: prod}
            roles:
              read:  {requesters: [engineers], approvals: 0, max_duration: 8h, allows: read}
              write: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 1h,
                      allows: write, reason: {min_length: 10, ticket: "(INC|CHG)-[0-9]+"}}
              admin: {requesters: [engineers], approvers: [dba, security], approvals: 2, max_duration: 30m,
                      allows: dangerous}
            actions: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 1h}
          prod-host:
            kind: shell
            roles:
              operate: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 1h, allows: write}
            actions: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 15m}
          billing-api:
            kind: http
            roles:
              operate: {requesters: [engineers, automation], approvers: [dba], approvals: 1, max_duration: 2h, allows: write}
        guard:
          sql: {forbidden: [drop_database, alter_system]}
          shell: {dangerous: ["helm uninstall"]}
        pending_ttl: 1h
        antispam: {enabled: false}
        """

    let folder: URL
    let port: Int
    let clock: ManualClock
    let service: UseCases
    let policyPath: String
    let database: TestDatabase
    private let group: ServiceGroup
    private let runTask: Task<Void, any Error>

    var databasePath: String { folder.appendingPathComponent("gatehouse.db").path }
    var baseURL: String { "http://127.0.0.1:\(port)" }

    /// `realTime`: the test's clock runs with the real one (tests that meet a real identity provider,
    /// whose tokens carry real times); it can still be moved ahead.
    /// `outbox`: also run the webhook and Slack outbox, polling every 100 ms.
    static func start(policy: String = policyYAML, store kind: TestDatabase.Kind = TestDatabase.configuredKind,
                      realTime: Bool = false, outbox: Bool = false, limits: HTTPLimits = HTTPLimits(),
                      trustedProxies: TrustedProxies = .none) async throws -> TestServer {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gatehouse-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let policyPath = folder.appendingPathComponent("policy.yaml").path
        try policy.write(toFile: policyPath, atomically: true, encoding: .utf8)
        var logger = Logger(label: "gatehouse-test")
        logger.logLevel = .warning
        // An invalid policy is the test's mistake: say so before a store is opened (and left unclosed).
        let initialPolicy = try PolicyLoader.loadValid(file: policyPath)
        let database = try await TestDatabase.fresh(kind, folder: folder)
        let store = try await database.open(logger: logger)
        let clock = realTime ? ManualClock(Date(), followingRealTime: true) : ManualClock()
        let metrics = GatehouseMetrics()
        let service = UseCases(store: store, policies: PolicyHolder(initialPolicy, path: policyPath),
                               clock: clock, logger: logger, metrics: metrics)
        do { _ = try await service.tokens.bootstrapAdmin(token: adminToken) } catch {
            await store.close()
            throw error
        }
        let (portStream, portContinuation) = AsyncStream<Int>.makeStream()
        let app = try GatehouseHTTP.makeApplication(service: service, metrics: metrics, host: "127.0.0.1", port: 0, logger: logger, limits: limits,
                                                    trustedProxies: trustedProxies) { channel in
            portContinuation.yield(channel.localAddress?.port ?? 0)
            portContinuation.finish()
        }
        var services: [any Service] = [app]
        if outbox { services.append(WebhookDispatcher(service: service, interval: .milliseconds(100), logger: logger)) }
        let group = ServiceGroup(services: services, logger: logger)
        let runTask = Task { try await group.run() }
        var port = 0
        for await value in portStream { port = value }
        return TestServer(folder: folder, port: port, clock: clock, service: service, policyPath: policyPath, database: database,
                          group: group, runTask: runTask)
    }

    private init(folder: URL, port: Int, clock: ManualClock, service: UseCases, policyPath: String, database: TestDatabase,
                 group: ServiceGroup, runTask: Task<Void, any Error>) {
        self.database = database
        self.folder = folder
        self.port = port
        self.clock = clock
        self.service = service
        self.policyPath = policyPath
        self.group = group
        self.runTask = runTask
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await runTask.value
        await service.store.close()
        await database.drop()
        try? FileManager.default.removeItem(at: folder)
    }

    /// Runs `body` against a fresh server and always stops it.
    static func with<T>(policy: String = policyYAML, store kind: TestDatabase.Kind = TestDatabase.configuredKind,
                        realTime: Bool = false, outbox: Bool = false, limits: HTTPLimits = HTTPLimits(), trustedProxies: TrustedProxies = .none,
                        _ body: (TestServer) async throws -> T) async throws -> T {
        let server = try await start(policy: policy, store: kind, realTime: realTime, outbox: outbox, limits: limits, trustedProxies: trustedProxies)
        do {
            let result = try await body(server)
            await server.stop()
            return result
        } catch {
            await server.stop()
            throw error
        }
    }

    struct Reply: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: Data
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        func string(_ key: String) -> String? { json[key] as? String }
    }

    func writePolicy(_ yaml: String, reload: Bool = false) throws {
        try yaml.write(toFile: policyPath, atomically: true, encoding: .utf8)
        if reload { _ = service.policies.reload(logger: Logger(label: "test")) }
    }
}

/// The tests' HTTP client. Its pooled connections are dropped after 5 s idle, well before the
/// server's own 30 s idle timeout: a request never goes out on a connection the server is closing.
/// Up to 32 connections per server, so the concurrency tests' requests (20 at once) each have one
/// rather than queue for the pool while the suite's other tests load the machine.
enum TestHTTP {
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(5), concurrentHTTP1ConnectionsPerHostSoftLimit: 32)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()
}

/// HTTP to a Gatehouse server, as any client would talk to it: the in-process test server or a
/// `gatehouse serve` process.
protocol GatehouseHTTPClient: Sendable {
    var baseURL: String { get }
    var timeout: TimeAmount { get }
}

extension TestServer: GatehouseHTTPClient {}

extension GatehouseHTTPClient {
    var timeout: TimeAmount { .seconds(30) }

    // MARK: HTTP


    func send(_ method: HTTPMethod, _ path: String, token: String?, json: [String: Any]? = nil, rawBody: Data? = nil,
              contentType: String = "application/json", headers: [(String, String)] = []) async throws -> TestServer.Reply {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let json {
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json)))
        } else if let rawBody {
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(bytes: rawBody))
        }
        let response = try await TestHTTP.client.execute(request, timeout: timeout)
        let body = try await response.body.collect(upTo: 16 * 1024 * 1024)
        return TestServer.Reply(status: Int(response.status.code), headers: response.headers, body: Data(buffer: body))
    }

    // MARK: conveniences

    /// One operation of the client generated from openapi.yaml, speaking as `token`. The answer is decoded
    /// against the contract (a 2xx or problem answer openapi.yaml does not describe fails the test here), and
    /// returned as it came over the wire, so the test can look at its status, headers and body.
    func call(_ token: String?, _ operation: @Sendable (Client) async throws -> some Sendable) async throws -> TestServer.Reply {
        let recorder = AnswerRecorder()
        let client = Client.gatehouse(URL(string: baseURL)!, token: token, httpClient: TestHTTP.client, timeout: timeout,
                                      problems: .returned, observers: [recorder])
        do {
            _ = try await operation(client)
        } catch {
            let cause = gatehouseCause(error)
            guard cause is AnswerMismatch else { throw cause }
            throw TestFailure("the answer is not what openapi.yaml describes: \(cause); as sent: \(recorder.reply.map { "\($0.status) \(String(decoding: $0.body, as: UTF8.self))" } ?? "nothing")")
        }
        guard let reply = recorder.reply else { throw TestFailure("no answer was recorded") }
        return reply
    }

    func token(for principal: String) async throws -> String {
        let reply = try await createToken(TestServer.adminToken, principal: principal)
        guard reply.status == 201, let token = reply.string("token") else {
            throw TestFailure("token create for \(principal) answered \(reply.status): \(String(decoding: reply.body, as: UTF8.self))")
        }
        return token
    }

    func tokens(_ names: String...) async throws -> [String: String] {
        var out: [String: String] = [:]
        for name in names { out[name] = try await token(for: name) }
        return out
    }

    func request(_ token: String, resource: String = "prod-db", role: String = "write", duration: String = "30m",
                 reason: String = "INC-4411 fix stuck migration") async throws -> TestServer.Reply {
        try await call(token) {
            try await $0.createRequest(body: .json(.RoleRequest(.init(resource: resource, role: role, duration: duration, reason: reason))))
        }
    }

    func approve(_ token: String, _ id: String, comment: String? = nil) async throws -> TestServer.Reply {
        try await call(token) { try await $0.approveRequest(path: .init(id: id), body: .json(.init(comment: comment))) }
    }

    func check(_ token: String, resource: String = "prod-db", role: String = "write") async throws -> TestServer.Reply {
        try await call(token) { try await $0.check(body: .json(.RoleCheck(.init(resource: resource, role: role)))) }
    }

    func requestAction(_ token: String, resource: String = "prod-db", kind: Components.Schemas.ActionInput.KindPayload = .sql, text: String,
                       reason: String = "INC-4411 clean up the orphaned rows") async throws -> TestServer.Reply {
        try await call(token) {
            try await $0.createRequest(body: .json(.ActionRequest(.init(resource: resource, action: .init(kind: kind, text: text), reason: reason))))
        }
    }

    func checkAction(_ token: String, resource: String = "prod-db", kind: Components.Schemas.ActionInput.KindPayload = .sql,
                     text: String, principal: String? = nil) async throws -> TestServer.Reply {
        try await call(token) { try await $0.check(body: .json(.ActionCheck(.init(resource: resource, action: .init(kind: kind, text: text), principal: principal)))) }
    }

    func readRequest(_ token: String?, _ id: String) async throws -> TestServer.Reply {
        try await call(token) { try await $0.getRequest(path: .init(id: id)) }
    }

    func whoami(_ token: String?) async throws -> TestServer.Reply {
        try await call(token) { try await $0.whoami() }
    }

    func verifyAudit(_ token: String?) async throws -> TestServer.Reply {
        try await call(token) { try await $0.verifyAudit() }
    }

    func readGrant(_ token: String?, _ id: String) async throws -> TestServer.Reply {
        try await call(token) { try await $0.getGrant(path: .init(id: id)) }
    }

    func listRequests(_ token: String?, scope: Components.Schemas.RequestScope? = nil, state: Components.Schemas.RequestState? = nil,
                      limit: Int? = nil, cursor: String? = nil) async throws -> TestServer.Reply {
        try await call(token) { try await $0.listRequests(query: .init(scope: scope, state: state, limit: limit, cursor: cursor)) }
    }

    func listGrants(_ token: String?, scope: Components.Schemas.GrantScope? = nil, active: Bool? = nil, limit: Int? = nil,
                    cursor: String? = nil) async throws -> TestServer.Reply {
        try await call(token) { try await $0.listGrants(query: .init(scope: scope, active: active, limit: limit, cursor: cursor)) }
    }

    func listAudit(_ token: String?, limit: Int? = nil) async throws -> TestServer.Reply {
        try await call(token) { try await $0.listAudit(query: .init(limit: limit)) }
    }

    func listDeliveries(_ token: String?, limit: Int? = nil) async throws -> TestServer.Reply {
        try await call(token) { try await $0.listWebhookDeliveries(query: .init(limit: limit)) }
    }

    func report(_ token: String?, _ id: String, comment: String) async throws -> TestServer.Reply {
        try await call(token) { try await $0.reportRequest(path: .init(id: id), body: .json(.init(comment: comment))) }
    }

    func deny(_ token: String?, _ id: String, comment: String) async throws -> TestServer.Reply {
        try await call(token) { try await $0.denyRequest(path: .init(id: id), body: .json(.init(comment: comment))) }
    }

    func cancel(_ token: String?, _ id: String) async throws -> TestServer.Reply {
        try await call(token) { try await $0.cancelRequest(path: .init(id: id)) }
    }

    func revokeToken(_ token: String?, _ id: String) async throws -> TestServer.Reply {
        try await call(token) { try await $0.revokeToken(path: .init(id: id)) }
    }

    func reloadPolicy(_ token: String?) async throws -> TestServer.Reply {
        try await call(token) { try await $0.reloadPolicy() }
    }

    func listPrincipals(_ token: String?, blocked: Bool? = nil, throttled: Bool? = nil) async throws -> TestServer.Reply {
        try await call(token) { try await $0.listPrincipals(query: .init(blocked: blocked, throttled: throttled)) }
    }

    func listNotifications(_ token: String?, recipient: String? = nil, limit: Int? = nil) async throws -> TestServer.Reply {
        try await call(token) { try await $0.listNotifications(query: .init(recipient: recipient, limit: limit)) }
    }

    func unblock(_ token: String?, _ principal: String) async throws -> TestServer.Reply {
        try await call(token) { try await $0.unblockPrincipal(path: .init(name: principal)) }
    }

    func revokeSessions(_ token: String?, _ principal: String) async throws -> TestServer.Reply {
        try await call(token) { try await $0.revokeSessions(path: .init(name: principal)) }
    }

    func release(_ token: String?, _ id: String) async throws -> TestServer.Reply {
        try await call(token) { try await $0.releaseGrant(path: .init(id: id)) }
    }

    func revokeGrant(_ token: String?, _ id: String, reason: String) async throws -> TestServer.Reply {
        try await call(token) { try await $0.revokeGrant(path: .init(id: id), body: .json(.init(reason: reason))) }
    }

    func listTokens(_ token: String?) async throws -> TestServer.Reply {
        try await call(token) { try await $0.listTokens() }
    }

    func createToken(_ token: String?, principal: String) async throws -> TestServer.Reply {
        try await call(token) { try await $0.createToken(body: .json(.init(principal: principal))) }
    }

    func listSessions(_ token: String?) async throws -> TestServer.Reply {
        try await call(token) { try await $0.listSessions() }
    }

    func logout(_ token: String?) async throws -> TestServer.Reply {
        try await call(token) { try await $0.logout() }
    }

    func ready() async throws -> TestServer.Reply {
        try await call(nil) { try await $0.ready() }
    }

    func health() async throws -> TestServer.Reply {
        try await call(nil) { try await $0.health() }
    }

    func listBreakGlass(_ token: String?, awaitingReview: Bool? = nil) async throws -> TestServer.Reply {
        try await call(token) { try await $0.listBreakGlass(query: .init(awaitingReview: awaitingReview)) }
    }

    func reviewBreakGlass(_ token: String?, _ id: String, comment: String) async throws -> TestServer.Reply {
        try await call(token) { try await $0.reviewBreakGlass(path: .init(id: id), body: .json(.init(comment: comment))) }
    }

    func review(_ token: String?, _ id: String, _ decision: Components.Schemas.ReviewInput.DecisionPayload, comment: String? = nil) async throws -> TestServer.Reply {
        try await call(token) { try await $0.reviewRequest(path: .init(id: id), body: .json(.init(decision: decision, comment: comment))) }
    }

    func auditCount() async throws -> Int {
        let reply = try await listAudit(TestServer.adminToken, limit: 10000)
        return (reply.json["events"] as? [Any])?.count ?? -1
    }
}

typealias TestFailure = GatehouseTestSupport.TestFailure

/// Keeps the last answer exactly as it came over the wire, for `call`.
final class AnswerRecorder: ClientMiddleware, @unchecked Sendable {
    private let lock = NSLock()
    private var last: TestServer.Reply?

    var reply: TestServer.Reply? { lock.withLock { last } }

    func intercept(_ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
                   next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)) async throws -> (HTTPResponse, HTTPBody?) {
        let (response, answer) = try await next(request, body, baseURL)
        let data = answer == nil ? Data() : try await Data(collecting: answer!, upTo: 16 * 1024 * 1024)
        var headers = HTTPHeaders()
        for field in response.headerFields { headers.add(name: field.name.rawName, value: field.value) }
        lock.withLock { last = TestServer.Reply(status: response.status.code, headers: headers, body: data) }
        return (response, answer == nil ? nil : HTTPBody(data))
    }
}

/// A Hummingbird router served on a loopback port the kernel picks (stand-ins for other services).
struct LocalHTTPServer: Sendable {
    let port: Int
    let group: ServiceGroup
    let task: Task<Void, any Error>

    static func start(_ router: Router<BasicRequestContext>, label: String) async -> LocalHTTPServer {
        var logger = Logger(label: label)
        logger.logLevel = .error
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in
                                  continuation.yield(channel.localAddress?.port ?? 0)
                                  continuation.finish()
                              }, logger: logger)
        let group = ServiceGroup(services: [app], logger: logger)
        let task = Task { try await group.run() }
        var port = 0
        for await value in ports { port = value }
        return LocalHTTPServer(port: port, group: group, task: task)
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}
