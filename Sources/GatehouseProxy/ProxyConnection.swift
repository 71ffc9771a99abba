import Foundation
import GatehouseCore
import GatehouseApp
import NIOCore
import NIOPosix
import NIOSSL

/// What every connection of one listener shares.
struct ListenerContext: Sendable {
    var resource: String
    var settings: ProxySettings
    var password: String
    var serverTLS: NIOSSLContext?
    var upstreamTLS: NIOSSLContext?
    var service: UseCases
    var registry: SessionRegistry
    var limits: WireLimits
}

/// One client connection and, once signed in, its database connection. Everything runs on the
/// client channel's event loop (the database channel uses the same loop); the protocol decisions
/// are made by `ClientSignIn`, `UpstreamLogin` and `StatementFlow`, this class does the I/O.
final class ProxyConnection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Phase {
        case signIn(ClientSignIn)
        case connecting
        case upstreamLogin(UpstreamLogin)
        case ready(StatementFlow)
        case closed
    }

    let shared: ListenerContext
    private var phase: Phase
    private var decoder: FrontendDecoder
    private var backendDecoder = BackendDecoder()
    private var inbound = ByteBuffer()
    private var upstreamInbound = ByteBuffer()
    private var context: ChannelHandlerContext?
    private var upstream: Channel?
    /// True while waiting for something asynchronous (sign-in, the database, a statement check):
    /// client bytes are buffered meanwhile, and reading stops when the buffer grows large.
    private var suspended = false
    private var pendingUpstreamFlush = false

    private(set) var identity: ProxyAuthority.ProxyIdentity?
    private(set) var grants: [Grant] = []
    private var statements = 0
    private var refused = 0
    private var checkStarted: ContinuousClock.Instant?
    private var cancelKey: CancelKey?
    private var endReason = "the client disconnected"

    init(shared: ListenerContext, plaintextAllowed: Bool) {
        self.shared = shared
        var early = shared.limits
        early.messageBytes = min(early.messageBytes, Self.signInMessageBytes)
        self.decoder = FrontendDecoder(limits: early)
        self.phase = .signIn(ClientSignIn(settings: .init(resource: shared.resource, upstreamDatabase: shared.settings.database,
                                                          tlsAvailable: shared.serverTLS != nil, plaintextAllowed: plaintextAllowed)))
    }

    var eventLoop: EventLoop? { context?.eventLoop }

    // MARK: client side

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        context.eventLoop.scheduleTask(in: shared.limits.signInTimeout) { [weak self] in
            guard let self, self.identity == nil else { return }
            self.fail(Wire.error(code: "08P01", message: "gatehouse: sign-in did not complete within \(self.shared.limits.signInTimeout.nanoseconds / 1_000_000_000) s", fatal: true),
                      reason: "sign-in timeout")
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if inbound.readableBytes == 0 { inbound = bytes } else { inbound.writeBuffer(&bytes) }
        process()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushUpstream()
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(reason: endReason)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        endReason = "connection error: \(error)"
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // A slow client: stop reading from the database until the client has taken what was sent.
        upstream?.setOption(ChannelOptions.autoRead, value: context.channel.isWritable).whenFailure { _ in }
        context.fireChannelWritabilityChanged()
    }

    /// Reads and handles client messages until one needs something asynchronous.
    private func process() {
        guard let context else { return }
        while !suspended {
            if case .closed = phase { return }
            let frame: FrontendFrame
            do {
                guard let next = try decoder.next(&inbound) else { break }
                frame = next
            } catch {
                fail(Wire.error(code: "08P01", message: "gatehouse: \(error.message)", fatal: true), reason: "protocol error: \(error.message)")
                return
            }
            switch phase {
            case .signIn(var signIn):
                let step = signIn.receive(frame.message, pendingBytes: inbound.readableBytes)
                phase = .signIn(signIn)
                signInStep(step, context: context)
            case .ready(var flow):
                let step = flow.receive(frame)
                phase = .ready(flow)
                statementStep(step)
            case .connecting, .upstreamLogin, .closed:
                // The client may not send anything before it has been told it is signed in.
                fail(Wire.error(code: "08P01", message: "gatehouse: message before sign-in completed", fatal: true), reason: "protocol error")
                return
            }
        }
        if suspended, inbound.readableBytes > 1 << 20 {
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        }
    }

    private func suspend() { suspended = true }

    private func resume() {
        guard suspended, let context else { return }
        suspended = false
        context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
        process()
        flushUpstream()
    }

    private func signInStep(_ step: ClientSignIn.Step, context: ChannelHandlerContext) {
        switch step {
        case .send(let bytes):
            context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
        case .startTLS:
            context.writeAndFlush(wrapOutboundOut(ClientSignIn.byte("S")), promise: nil)
            guard let tls = shared.serverTLS else { return }
            try? context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls), position: .first)
        case let .cancel(processID, secret):
            shared.registry.cancel(resource: shared.resource, key: CancelKey(processID: processID, secret: secret), eventLoop: context.eventLoop)
            endReason = "cancel request"
            context.close(promise: nil)
        case .fail(let bytes):
            fail(bytes, reason: "sign-in refused")
        case let .authenticate(user, token, parameters):
            suspend()
            phase = .connecting
            let client = context.channel.remoteAddress?.description ?? "unknown"
            let service = shared.service
            let resource = shared.resource
            let loop = context.eventLoop
            Task {
                do {
                    let (identity, grants) = try await service.proxy.signIn(token: token, user: user, resource: resource, client: client)
                    loop.execute { self.signedIn(identity, grants: grants, parameters: parameters) }
                } catch {
                    let (code, message) = Self.describe(error)
                    service.metrics.proxySession("refused")
                    loop.execute { self.fail(Wire.error(code: code, message: message, fatal: true), reason: "sign-in refused") }
                }
            }
        }
    }

    static func describe(_ error: Error) -> (String, String) {
        guard let error = error as? GatehouseError else { return ("58000", "gatehouse: \(error)") }
        let code = switch error.kind {
        case .unauthorized: "28P01"
        case .forbidden: "42501"
        case .unavailable: "57P03"
        default: "58000"
        }
        return (code, "gatehouse: \(error.message)")
    }

    // MARK: the database side

    private func signedIn(_ identity: ProxyAuthority.ProxyIdentity, grants: [Grant], parameters: [(String, String)]) {
        guard case .connecting = phase, let context else {
            // The client left (or timed out) while its sign-in was decided: the start is audited, so is the end.
            let service = shared.service
            Task { await service.proxy.sessionEnded(identity, reason: "the client left during sign-in", statements: 0, refused: 0) }
            return
        }
        self.identity = identity
        self.grants = grants
        shared.service.metrics.proxySession("started")
        shared.registry.add(self)
        let settings = shared.settings
        var startup: [(String, String)] = [("user", settings.user), ("database", settings.database), ("client_encoding", "UTF8"),
                                           ("standard_conforming_strings", "on")]
        // A session that may only read runs read-only on the database too: the classifier cannot see
        // inside functions, and the database refuses their writes in a read-only transaction. (A write
        // grant that arrives later needs a new session.)
        if Self.readOnly(grants) { startup.append(("default_transaction_read_only", "on")) }
        if !parameters.contains(where: { $0.0.lowercased() == "application_name" }) { startup.append(("application_name", "gatehouse-proxy")) }
        startup += parameters
        let upstreamHandler = UpstreamHandler(connection: self, tlsMode: settings.upstreamTLS, tls: shared.upstreamTLS,
                                              serverHostname: settings.upstreamHost, startup: Wire.startup(startup))
        phase = .upstreamLogin(UpstreamLogin(user: settings.user, password: shared.password))
        ClientBootstrap(group: context.eventLoop)
            .connectTimeout(.seconds(5))
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(upstreamHandler) }
            }
            .connect(host: settings.upstreamHost, port: settings.upstreamPort)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    self.upstream = channel
                    if case .closed = self.phase { channel.close(promise: nil) }
                case .failure(let error):
                    self.upstreamFailed("cannot reach the database at \(settings.upstreamHost):\(settings.upstreamPort): \(error)")
                }
            }
    }

    func upstreamFailed(_ why: String) {
        fail(Wire.error(code: "08006", message: "gatehouse: \(why)", fatal: true), reason: why)
    }

    func upstreamRead(_ bytes: inout ByteBuffer) {
        if upstreamInbound.readableBytes == 0 { upstreamInbound = bytes } else { upstreamInbound.writeBuffer(&bytes) }
        guard let context else { return }
        var becameReady = false
        // Messages that pass unchanged go to the client as one slice per run, not one write each.
        // (Sliced from a copy taken before decoding: a buffer's bytes before its reader index are not readable.)
        let source = upstreamInbound
        var run: (start: Int, end: Int)?
        func flushRun() {
            guard let pending = run else { return }
            run = nil
            if let slice = source.getSlice(at: pending.start, length: pending.end - pending.start) {
                context.write(wrapOutboundOut(slice), promise: nil)
            }
        }
        defer { flushRun() }
        while true {
            let frame: BackendFrame
            let start = upstreamInbound.readerIndex
            do {
                guard let next = try backendDecoder.next(&upstreamInbound) else { break }
                frame = next
            } catch {
                upstreamFailed(error.message)
                return
            }
            switch phase {
            case .upstreamLogin(var login):
                let step = login.receive(frame.message)
                phase = .upstreamLogin(login)
                switch step {
                case .send(let bytes):
                    upstream?.writeAndFlush(bytes, promise: nil)
                case .wait:
                    break
                case .failed(let why):
                    upstreamFailed("the proxy could not sign in to the database: \(why)")
                    return
                case .authenticated:
                    phase = .ready(StatementFlow(nonce: Self.nonce()))
                    decoder.limits = shared.limits
                    context.write(wrapOutboundOut(frame.bytes), promise: nil)
                    becameReady = true
                }
            case .ready(var flow):
                if case let .parameterStatus(name, value) = frame.message, let expected = Self.requiredSettings[name.lowercased()],
                   value.uppercased() != expected {
                    flushRun()
                    terminate("gatehouse: session ended: the database reports \(name) = \(value); statements are checked only under \(name) = \(expected)")
                    return
                }
                if case let .backendKeyData(processID, secret) = frame.message {
                    let key = CancelKey(processID: processID, secret: secret)
                    cancelKey = key
                    shared.registry.register(key, for: self)
                }
                let answer = flow.route(frame)
                phase = .ready(flow)
                switch answer {
                case .pass:
                    run = (run?.start ?? start, upstreamInbound.readerIndex)
                case .replace(let bytes):
                    flushRun()
                    context.write(wrapOutboundOut(bytes), promise: nil)
                case .drop:
                    flushRun()
                }
            case .signIn, .connecting, .closed:
                return
            }
        }
        if becameReady { resume() }
    }

    func upstreamReadComplete() {
        context?.flush()
        flushUpstream()
    }

    func upstreamClosed() {
        guard case .closed = phase else {
            fail(Wire.error(code: "08006", message: "gatehouse: the database closed the connection", fatal: true), reason: "the database closed the connection")
            return
        }
    }

    // MARK: statements

    private func statementStep(_ step: StatementFlow.Step) {
        switch step {
        case .forward(let bytes):
            writeUpstream(bytes)
        case .drop:
            break
        case .refuse(let bytes, let refusal):
            refused += 1
            writeUpstream(bytes)
            if let identity { Task { await self.shared.service.proxy.refused(identity, what: refusal.message) } }
        case .terminate:
            endReason = "the client ended the session"
            upstream?.writeAndFlush(Wire.message(UInt8(ascii: "X")) { _ in }, promise: nil)
            context?.close(promise: nil)
        case .check(let text):
            check(text)
        case .violation(let why):
            fail(Wire.error(code: "08P01", message: "gatehouse: \(why)", fatal: true), reason: "protocol error: \(why)")
        }
    }

    private func check(_ text: String) {
        guard let identity else { return }
        statements += 1
        let started = ContinuousClock.now
        let service = shared.service
        let audit = shared.settings.audit
        if service.proxy.fastAllow(identity, text: text, grants: grants, audit: audit) {
            decided(nil, started: started)
            return
        }
        suspend()
        let grants = self.grants
        let loop = context!.eventLoop
        Task {
            let refusal: Refusal?
            do {
                let result = try await service.proxy.statement(identity, text: text, grants: grants, audit: audit)
                refusal = result.refusal.map { Refusal(message: $0.message, hint: $0.hint) }
            } catch {
                let (code, message) = Self.describe(error)
                refusal = Refusal(code: code, message: message)
            }
            loop.execute {
                self.decided(refusal, started: started)
                self.resume()
            }
        }
    }

    private func decided(_ refusal: Refusal?, started: ContinuousClock.Instant) {
        guard case .ready(var flow) = phase else { return }
        let bytes = flow.decided(refusal)
        phase = .ready(flow)
        if refusal != nil { refused += 1 }
        shared.service.metrics.proxyStatement(allowed: refusal == nil, checkTime: ContinuousClock.now - started)
        writeUpstream(bytes)
    }

    private func writeUpstream(_ bytes: ByteBuffer) {
        upstream?.write(bytes, promise: nil)
        pendingUpstreamFlush = true
    }

    private func flushUpstream() {
        guard pendingUpstreamFlush else { return }
        pendingUpstreamFlush = false
        upstream?.flush()
    }

    // MARK: the session's grants

    /// The watcher's latest view of this session's access (on the event loop).
    func update(_ access: ProxyAuthority.ProxyAccess) {
        switch access {
        case .granted(let grants):
            self.grants = grants
        case .ended(let why):
            guard case .ready = phase, let identity else { return }
            let previous = grants
            grants = [] // nothing more is allowed from memory while the reason is looked up
            let loop = context!.eventLoop
            let service = shared.service
            Task {
                let detail = why.contains("no active grant")
                    ? await service.proxy.endReason(grants: previous, principal: identity.caller.principal, resource: identity.resource)
                    : why
                loop.execute { self.terminate("gatehouse: session ended: \(detail)") }
            }
        }
    }

    /// Ends the session with a FATAL error saying why.
    func terminate(_ message: String) {
        fail(Wire.error(code: "57P01", message: message, fatal: true), reason: message)
    }

    private func fail(_ error: ByteBuffer, reason: String) {
        guard let context else { return }
        if case .closed = phase { return }
        endReason = reason
        // Closing the connection does not stop a statement the database is running: cancel it.
        if case .ready = phase, let key = cancelKey {
            shared.registry.cancelNow(key, settings: shared.settings, eventLoop: context.eventLoop)
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(error)).whenComplete { _ in channel.close(promise: nil) }
        upstream?.close(promise: nil)
        finish(reason: reason)
    }

    private func finish(reason: String) {
        if case .closed = phase { return }
        phase = .closed
        upstream?.close(promise: nil)
        shared.registry.remove(self, key: cancelKey)
        guard let identity else { return }
        shared.service.metrics.proxySession("ended")
        let statements = self.statements, refused = self.refused, service = shared.service
        Task { await service.proxy.sessionEnded(identity, reason: reason, statements: statements, refused: refused) }
    }

    /// Whether every grant the session starts with allows reads only.
    static func readOnly(_ grants: [Grant]) -> Bool {
        grants.allSatisfy { $0.actionDigest == nil && $0.allows <= .read }
    }

    /// The largest message a client may send before it is signed in (a password is a token).
    static let signInMessageBytes = 8192

    /// What the classifier assumes of every session, set in the startup packet and watched in the
    /// database's ParameterStatus reports.
    static let requiredSettings = ["client_encoding": "UTF8", "standard_conforming_strings": "ON"]

    static func nonce() -> String {
        (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }
}

/// The database connection's handler: optional TLS negotiation, then hands bytes to the connection.
final class UpstreamHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let connection: ProxyConnection
    private let tlsMode: ProxySettings.UpstreamTLS
    private let tls: NIOSSLContext?
    private let serverHostname: String
    private let startup: ByteBuffer
    private var awaitingTLSAnswer = false

    init(connection: ProxyConnection, tlsMode: ProxySettings.UpstreamTLS, tls: NIOSSLContext?, serverHostname: String, startup: ByteBuffer) {
        self.connection = connection
        self.tlsMode = tlsMode
        self.tls = tls
        self.serverHostname = serverHostname
        self.startup = startup
    }

    func channelActive(context: ChannelHandlerContext) {
        if tlsMode == .disable || tls == nil {
            context.writeAndFlush(wrapOutboundOut(startup), promise: nil)
        } else {
            awaitingTLSAnswer = true
            var request = ByteBufferAllocator().buffer(capacity: 8)
            request.writeInteger(Int32(8))
            request.writeInteger(FrontendDecoder.sslRequestCode)
            context.writeAndFlush(wrapOutboundOut(request), promise: nil)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if awaitingTLSAnswer {
            awaitingTLSAnswer = false
            let answer = bytes.readInteger(as: UInt8.self)
            guard bytes.readableBytes == 0 else {
                connection.upstreamFailed("the database sent data before the TLS handshake")
                return
            }
            if answer == UInt8(ascii: "S"), let tls {
                do {
                    let handler = try NIOSSLClientHandler(context: tls, serverHostname: tlsMode == .verifyFull ? serverHostname : nil)
                    try context.pipeline.syncOperations.addHandler(handler, position: .first)
                } catch {
                    connection.upstreamFailed("TLS to the database failed: \(error)")
                    return
                }
            } else if tlsMode != .prefer {
                connection.upstreamFailed("the database does not accept TLS, and the proxy's sslmode is \(tlsMode.rawValue)")
                return
            }
            context.writeAndFlush(wrapOutboundOut(startup), promise: nil)
            return
        }
        connection.upstreamRead(&bytes)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        connection.upstreamReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.upstreamClosed()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        connection.upstreamFailed("database connection error: \(error)")
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        connection.upstreamWritable(context.channel.isWritable)
    }
}

extension ProxyConnection {
    /// A slow database: stop reading from the client until it has taken what was sent.
    func upstreamWritable(_ writable: Bool) {
        context?.channel.setOption(ChannelOptions.autoRead, value: writable).whenFailure { _ in }
    }
}
