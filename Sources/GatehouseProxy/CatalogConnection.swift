import Foundation
import GatehouseCore
import GatehouseGuard
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// The proxy's own connection to a resource's database, for reading function definitions from its
/// catalog (`FunctionReach`). It signs in as the sessions do (the proxy's user, the same TLS and
/// password rules), read-only, with `search_path` set to `pg_catalog`; it is opened at the first
/// lookup and again after any failure. Lookups share it, pipelined; each gets `timeout`.
final class CatalogConnection: FunctionCatalog {
    /// How long a lookup (with a sign-in, when the connection is new) may take before the statement
    /// is refused. The database gives up sooner on its side (`serverSettings`), so a lookup stuck
    /// behind a lock does not leave a backend waiting.
    static let seconds: Int64 = 10
    static let timeout = TimeAmount.seconds(seconds)
    static let serverSettings = [("statement_timeout", "5s"), ("lock_timeout", "3s")]

    let settings: ProxySettings
    let password: String
    let tls: NIOSSLContext?
    private let current = NIOLockedValueBox<(wire: CatalogWire?, stopped: Bool)>((nil, false))

    init(settings: ProxySettings, password: String, tls: NIOSSLContext?) {
        self.settings = settings
        self.password = password
        self.tls = tls
    }

    /// Every function or procedure outside the system schemas with one of these names (found through
    /// pg_proc's name index), with its definition when it is written in SQL or PL/pgSQL; which of them a
    /// call reaches (its schema, `pg_temp`, attribute notation) is decided by `FunctionCallSite.reaches`.
    static let lookup = """
        SELECT p.oid::pg_catalog.int8, p.xmin::pg_catalog.text, n.nspname::pg_catalog.text, p.proname::pg_catalog.text,
               pg_catalog.pg_get_function_identity_arguments(p.oid), l.lanname::pg_catalog.text, p.prosecdef,
               CASE WHEN p.prokind IN ('f', 'p') AND l.lanname IN ('sql', 'plpgsql') THEN pg_catalog.pg_get_functiondef(p.oid) END
        FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        JOIN pg_catalog.pg_language l ON l.oid = p.prolang
        WHERE p.proname = ANY ($1::pg_catalog.name[]) AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        """

    /// `names` as a PostgreSQL array literal: each element double-quoted, `"` and `\` escaped.
    static func arrayLiteral(_ names: [String]) -> String {
        "{" + names.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
            .joined(separator: ",") + "}"
    }

    func functions(named calls: [FunctionCallSite]) async throws -> [FunctionDefinition] {
        let parameter = Self.arrayLiteral(Array(Set(calls.map(\.name))).sorted())
        let (wire, fresh) = try connection()
        do {
            return try await lookup(parameter, on: wire)
        } catch let error as CatalogError where !fresh && error.connectionLost {
            // A connection that ended while idle (the database restarted, or closed it): once more on a new one.
            return try await lookup(parameter, on: try connection().wire)
        }
    }

    private func lookup(_ parameter: String, on wire: CatalogWire) async throws -> [FunctionDefinition] {
        do {
            try await wire.ready.futureResult.get()
            let rows = try await wire.query(Self.lookup, parameter: parameter).get()
            return try rows.map(Self.definition)
        } catch let error as CatalogError {
            throw error
        } catch {
            throw CatalogError(message: "\(error)")
        }
    }

    static func definition(_ row: [String?]) throws -> FunctionDefinition {
        guard row.count == 8, let oidText = row[0], let oid = Int64(oidText), let version = row[1], let schema = row[2], let name = row[3],
              let language = row[5] else {
            throw CatalogError(message: "the database's catalog answered in an unexpected shape")
        }
        return FunctionDefinition(oid: oid, version: version, schema: schema, name: name, arguments: row[4] ?? "", language: language,
                                  securityDefiner: row[6] == "t", definition: row[7])
    }

    /// The open connection (fresh: opened now), or a new one when there is none or it has failed.
    private func connection() throws -> (wire: CatalogWire, fresh: Bool) {
        try current.withLockedValue { current in
            guard !current.stopped else { throw CatalogError(message: "the proxy is stopping") }
            if let wire = current.wire, !wire.isClosed { return (wire, false) }
            let wire = CatalogWire(eventLoop: MultiThreadedEventLoopGroup.singleton.any())
            wire.start(settings: settings, password: password, tls: tls)
            current.wire = wire
            return (wire, true)
        }
    }

    /// Ends the connection; lookups after this fail.
    func close() {
        current.withLockedValue { current in
            current.wire?.fail("the proxy is stopping")
            current = (nil, true)
        }
    }
}

struct CatalogError: Error, CustomStringConvertible {
    var message: String
    /// The connection closed under the lookup (as opposed to the database answering with an error).
    var connectionLost = false
    var description: String { message }
}

/// One catalog connection's wire: sign-in through `UpstreamLogin`, then extended-protocol queries with
/// one text parameter, answered in order. Runs on its event loop.
final class CatalogWire: UpstreamReceiver, @unchecked Sendable {
    let eventLoop: EventLoop
    let ready: EventLoopPromise<Void>
    private let closed = NIOLockedValueBox(false)
    private var login: UpstreamLogin?
    private var signedIn = false
    private var decoder = BackendDecoder()
    private var inbound = ByteBuffer()
    private var channel: Channel?
    private var pending: [Pending] = []

    private struct Pending {
        var promise: EventLoopPromise<[[String?]]>
        var rows: [[String?]] = []
        var error: String?
    }

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
        self.ready = eventLoop.makePromise()
    }

    var isClosed: Bool { closed.withLockedValue { $0 } }

    func start(settings: ProxySettings, password: String, tls: NIOSSLContext?) {
        let startup = Wire.startup([("user", settings.user), ("database", settings.database), ("client_encoding", "UTF8"),
                                    ("application_name", "gatehouse-catalog"), ("default_transaction_read_only", "on"),
                                    ("search_path", "pg_catalog")] + CatalogConnection.serverSettings)
        eventLoop.execute { [self] in
            login = UpstreamLogin(user: settings.user, password: password, weakAllowed: settings.weakPasswordAllowed)
            let handler = NIOLoopBound(UpstreamHandler(connection: self, tlsMode: settings.upstreamTLS, tls: tls,
                                                       serverHostname: settings.upstreamHost, startup: startup), eventLoop: eventLoop)
            ClientBootstrap(group: eventLoop)
                .connectTimeout(CatalogConnection.timeout)
                .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler.value) }
                }
                .connect(host: settings.upstreamHost, port: settings.upstreamPort)
                .whenComplete { [self] result in
                    switch result {
                    case .success(let channel):
                        self.channel = channel
                        if isClosed { channel.close(promise: nil) }
                    case .failure(let error):
                        fail("cannot reach the database at \(settings.upstreamHost):\(settings.upstreamPort): \(error)")
                    }
                }
            eventLoop.scheduleTask(in: CatalogConnection.timeout) { [self] in
                if !signedIn { fail("the database did not finish the proxy's sign-in within \(CatalogConnection.seconds) s") }
            }
        }
    }

    /// Runs `sql` with `parameter` as its `$1`; the rows as text.
    func query(_ sql: String, parameter: String) -> EventLoopFuture<[[String?]]> {
        eventLoop.flatSubmit { [self] in
            guard !isClosed, signedIn, let channel else {
                return eventLoop.makeFailedFuture(CatalogError(message: "the catalog connection is closed", connectionLost: true))
            }
            let promise = eventLoop.makePromise(of: [[String?]].self)
            pending.append(Pending(promise: promise))
            var bytes = Wire.parse(statement: "", query: sql)
            var bind = Wire.message(UInt8(ascii: "B")) { buffer in
                buffer.writeBytes([0, 0])  // unnamed portal, unnamed statement
                buffer.writeInteger(Int16(0))  // parameters in text
                buffer.writeInteger(Int16(1))
                let value = Array(parameter.utf8)
                buffer.writeInteger(Int32(value.count))
                buffer.writeBytes(value)
                buffer.writeInteger(Int16(0))  // results in text
            }
            var execute = Wire.message(UInt8(ascii: "E")) { buffer in
                buffer.writeInteger(UInt8(0))
                buffer.writeInteger(Int32(0))
            }
            var sync = Wire.message(UInt8(ascii: "S")) { _ in }
            bytes.writeBuffer(&bind)
            bytes.writeBuffer(&execute)
            bytes.writeBuffer(&sync)
            channel.writeAndFlush(bytes, promise: nil)
            let timer = eventLoop.scheduleTask(in: CatalogConnection.timeout) { [self] in
                fail("the database did not answer the catalog lookup within \(CatalogConnection.seconds) s")
            }
            promise.futureResult.whenComplete { _ in timer.cancel() }
            return promise.futureResult
        }
    }

    /// Ends the connection: the sign-in and every lookup still waiting fail with `why`.
    func fail(_ why: String, connectionLost: Bool = false) {
        guard eventLoop.inEventLoop else { return eventLoop.execute { [self] in fail(why, connectionLost: connectionLost) } }
        do {
            let first = closed.withLockedValue { closed in
                defer { closed = true }
                return !closed
            }
            guard first else { return }
            let error = CatalogError(message: why, connectionLost: connectionLost)
            if !signedIn { ready.fail(error) }
            for query in pending { query.promise.fail(error) }
            pending = []
            channel?.close(promise: nil)
        }
    }

    // MARK: UpstreamReceiver

    func upstreamFailed(_ why: String) { fail(why, connectionLost: true) }
    func upstreamClosed() { fail("the database closed the catalog connection", connectionLost: true) }
    func upstreamReadComplete() {}
    func upstreamWritable(_ writable: Bool) {}

    func upstreamRead(_ bytes: inout ByteBuffer) {
        inbound.writeBuffer(&bytes)
        while !isClosed {
            let frame: BackendFrame
            do {
                guard let next = try decoder.next(&inbound) else { break }
                frame = next
            } catch {
                return fail(error.message)
            }
            if signedIn { answer(frame) } else { signIn(frame) }
        }
        inbound.discardReadBytes()
    }

    private func signIn(_ frame: BackendFrame) {
        guard var login else {
            // Signed in; the server reports its settings, then is ready.
            switch frame.message {
            case .readyForQuery:
                signedIn = true
                ready.succeed()
            case .errorResponse(let fields):
                fail(fields["M"] ?? "the database refused the catalog connection")
            default:
                break
            }
            return
        }
        let step = login.receive(frame.message)
        self.login = login
        switch step {
        case .send(let bytes): channel?.writeAndFlush(bytes, promise: nil)
        case .wait: break
        case .authenticated: self.login = nil
        case .failed(let why): fail("the proxy could not sign in to the database: \(why)")
        }
    }

    private func answer(_ frame: BackendFrame) {
        guard !pending.isEmpty else { return }
        switch frame.message {
        case .other(UInt8(ascii: "D")):
            var body = frame.bytes
            body.moveReaderIndex(forwardBy: 5)
            var row: [String?] = []
            let count = Int(body.readInteger(as: Int16.self) ?? 0)
            for _ in 0..<count {
                guard let length = body.readInteger(as: Int32.self) else { return fail("the database sent a malformed row") }
                if length < 0 { row.append(nil); continue }
                guard let value = body.readString(length: Int(length)) else { return fail("the database sent a malformed row") }
                row.append(value)
            }
            pending[0].rows.append(row)
        case .errorResponse(let fields):
            pending[0].error = fields["M"] ?? "the database answered the catalog lookup with an error"
        case .readyForQuery:
            let query = pending.removeFirst()
            if let error = query.error {
                query.promise.fail(CatalogError(message: error))
            } else {
                query.promise.succeed(query.rows)
            }
        default:
            break
        }
    }
}
