import Foundation
import GatehouseCore
import GatehouseApp
import GatehouseGuard
import NIOConcurrencyHelpers
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
    /// The resource's database catalog, for judging a write session's function calls by their bodies.
    var catalog: CatalogConnection
    var functions: FunctionReach
}

/// One client connection and, once signed in, its database connection. Everything runs on the
/// client channel's event loop (the database channel uses the same loop). Every decision is made by
/// the pure `ProxySession`; this class feeds it events and does what it answers: reads, writes,
/// connects, and hands the asynchronous questions (sign-in, a statement, why access ended) to the
/// application, coming back to the event loop with the answer.
final class ProxyConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let shared: ListenerContext
    private var session: ProxySession
    private var decoder: FrontendDecoder
    private var backendDecoder = BackendDecoder()
    private var inbound = ByteBuffer()
    private var upstreamInbound = ByteBuffer()
    private var context: ChannelHandlerContext?
    private var loop: EventLoop?
    private var upstream: Channel?
    /// True while waiting for something asynchronous (sign-in, the database, a statement check):
    /// client bytes are buffered meanwhile, and reading stops when the buffer grows large.
    private var suspended = false
    private var pendingUpstreamFlush = false
    private var checkStarted: ContinuousClock.Instant?
    /// A statement waiting for the database to answer everything sent before it (`checkWhenSettled`).
    private var heldStatement: String?

    init(shared: ListenerContext, plaintextAllowed: Bool) {
        self.shared = shared
        var early = shared.limits
        early.messageBytes = min(early.messageBytes, Self.signInMessageBytes)
        self.decoder = FrontendDecoder(limits: early)
        session = ProxySession(settings: .init(resource: shared.resource, proxy: shared.settings, password: shared.password,
                                               tlsAvailable: shared.serverTLS != nil, plaintextAllowed: plaintextAllowed))
    }

    /// This handler, usable from other threads only on its own event loop.
    private var bound: NIOLoopBound<ProxyConnection>? {
        loop.map { NIOLoopBound(self, eventLoop: $0) }
    }

    // MARK: client side

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        loop = context.eventLoop
        // Accepted just before the listener closed: told once the connection is active.
        if let message = shared.registry.opened(self, eventLoop: context.eventLoop) {
            if context.channel.isActive { _ = stopping(message) } else { stoppedBeforeOpening = message }
            return
        }
        let timeout = shared.limits.signInTimeout
        let me = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: timeout) {
            let connection = me.value
            connection.execute(connection.session.signInTimedOut(after: timeout.nanoseconds / 1_000_000_000))
        }
    }

    /// The proxy's stopping message, for a connection accepted after the proxy began to stop.
    private var stoppedBeforeOpening: String?

    func channelActive(context: ChannelHandlerContext) {
        if let message = stoppedBeforeOpening { _ = stopping(message) }
        context.fireChannelActive()
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
        execute(session.clientClosed())
        releaseSessionPlace()
    }

    /// The principal whose session place this connection holds (from sign-in to the end).
    private var sessionPlace: String?

    private func releaseSessionPlace() {
        guard let principal = sessionPlace else { return }
        sessionPlace = nil
        shared.registry.releaseSession(principal: principal, resource: shared.resource)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        session.clientFailed("\(error)")
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
        while !suspended, !session.isClosed {
            let frame: FrontendFrame
            do {
                guard let next = try decoder.next(&inbound) else { break }
                frame = next
            } catch {
                execute(session.clientProtocolError(error.message))
                return
            }
            // A write grant that expired since the watcher last looked ends a read-write session before
            // anything more reaches the database (an Execute of a portal bound earlier, copy data).
            if session.isReady, session.writePowerLapsed(at: shared.service.proxy.now) {
                endLapsedWritePower()
                return
            }
            // So does the expiry of the session's last grant of any kind.
            if session.accessLapsed(at: shared.service.proxy.now) {
                endLapsedAccess()
                return
            }
            execute(session.clientMessage(frame, pendingBytes: inbound.readableBytes))
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

    // MARK: doing what the session says

    private func execute(_ action: ProxySession.Action) {
        guard let context else { return }
        switch action {
        case .none:
            break
        case .sendToClient(let bytes):
            context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
        case .startClientTLS:
            context.writeAndFlush(wrapOutboundOut(ClientSignIn.byte("S")), promise: nil)
            guard let tls = shared.serverTLS else { return }
            try? context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls), position: .first)
        case .forwardCancel(let key):
            shared.registry.cancel(resource: shared.resource, settings: shared.settings, key: key, eventLoop: context.eventLoop)
            context.close(promise: nil)
        case let .authorize(user, token):
            authorize(user: user, token: token, context: context)
        case .connectUpstream(let startup):
            connectUpstream(startup: startup, context: context)
        case .auditEndedDuringSignIn(let identity):
            let service = shared.service
            Task { await service.proxy.sessionEnded(identity, reason: "the client left during sign-in", statements: 0, refused: 0) }
        case .forward(let bytes):
            writeUpstream(bytes)
        case let .refuse(bytes, message):
            writeUpstream(bytes)
            if let identity = session.identity {
                let service = shared.service
                Task { await service.proxy.refused(identity, what: message) }
            }
        case let .check(text, grants):
            check(text, grants: grants, context: context)
        case .checkWhenSettled(let text):
            suspend()
            heldStatement = text
            checkHeldStatement()
        case .terminate:
            upstream?.writeAndFlush(Wire.message(UInt8(ascii: "X")) { _ in }, promise: nil)
            context.close(promise: nil)
        case let .close(error, _, cancelRunning, ended):
            // Closing the connection does not stop a statement the database is running: cancel it.
            if let key = cancelRunning { shared.registry.cancelNow(key, settings: shared.settings, eventLoop: context.eventLoop) }
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(error)).whenComplete { _ in channel.close(promise: nil) }
            finish(ended)
        case .finish(let ended):
            finish(ended)
        case let .lookUpEndReason(previous, principal, afterward):
            guard let bound else { return }
            let service = shared.service
            let resource = shared.resource
            Task {
                let detail = await service.proxy.endReason(grants: previous, principal: principal, resource: resource)
                bound.eventLoop.execute {
                    let connection = bound.value
                    connection.execute(database: connection.session.terminate("gatehouse: session ended: \(detail)\(afterward)"))
                }
            }
        }
    }

    private func execute(database action: ProxySession.DatabaseAction) {
        if case let .close(error, reason, cancelRunning, ended) = action {
            execute(.close(error: error, reason: reason, cancelRunning: cancelRunning, ended: ended))
        }
    }

    private func finish(_ ended: ProxySession.Ended?) {
        upstream?.close(promise: nil)
        shared.registry.remove(self, key: session.cancelKey)
        releaseSessionPlace()
        guard let ended else { return }
        shared.service.metrics.proxySession("ended")
        let service = shared.service
        Task { await service.proxy.sessionEnded(ended.identity, reason: ended.reason, statements: ended.statements, refused: ended.refused) }
    }

    // MARK: sign-in

    private func authorize(user: String, token: String, context: ChannelHandlerContext) {
        suspend()
        let client = context.channel.remoteAddress?.description ?? "unknown"
        let service = shared.service
        let resource = shared.resource
        let me = NIOLoopBound(self, eventLoop: context.eventLoop)
        let registry = shared.registry
        let limit = shared.settings.maxSessionsPerPrincipal
        Task {
            let result: Result<(ProxyAuthority.ProxyIdentity, [Grant]), any Error>
            // The place is taken atomically while the sign-in is checked, and given back if it fails.
            let reserved = NIOLockedValueBox<String?>(nil)
            do {
                result = .success(try await service.proxy.signIn(token: token, user: user, resource: resource, client: client) { principal in
                    guard registry.reserveSession(principal: principal, resource: resource, limit: limit) else {
                        return "\(principal) already holds \(limit) sessions to \(resource) through the proxy (the most allowed at once); close some and try again"
                    }
                    reserved.withLockedValue { $0 = principal }
                    return nil
                })
            } catch {
                service.metrics.proxySession("refused")
                if let principal = reserved.withLockedValue({ $0 }) { registry.releaseSession(principal: principal, resource: resource) }
                reserved.withLockedValue { $0 = nil }
                result = .failure(error)
            }
            let taken = reserved.withLockedValue { $0 }
            me.eventLoop.execute {
                let connection = me.value
                connection.sessionPlace = taken
                connection.execute(connection.session.signInDecided(result))
                // A client that left while the sign-in was checked gives its place back at once.
                if connection.session.isClosed || connection.context == nil { connection.releaseSessionPlace() }
            }
        }
    }

    private func connectUpstream(startup: ByteBuffer, context: ChannelHandlerContext) {
        guard let identity = session.identity else { return }
        shared.service.metrics.proxySession("started")
        shared.registry.add(self, identity: identity, eventLoop: context.eventLoop)
        let settings = shared.settings
        let upstreamHandler = NIOLoopBound(UpstreamHandler(connection: self, tlsMode: settings.upstreamTLS, tls: shared.upstreamTLS,
                                                           serverHostname: settings.upstreamHost, startup: startup),
                                           eventLoop: context.eventLoop)
        let me = NIOLoopBound(self, eventLoop: context.eventLoop)
        ClientBootstrap(group: context.eventLoop)
            .connectTimeout(.seconds(5))
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(upstreamHandler.value) }
            }
            .connect(host: settings.upstreamHost, port: settings.upstreamPort)
            .whenComplete { result in
                let connection = me.value
                switch result {
                case .success(let channel):
                    connection.upstream = channel
                    if connection.session.isClosed { channel.close(promise: nil) }
                case .failure(let error):
                    connection.upstreamFailed("cannot reach the database at \(settings.upstreamHost):\(settings.upstreamPort): \(error)")
                }
            }
    }

    // MARK: the database side

    func upstreamFailed(_ why: String) {
        execute(database: session.databaseFailed(why))
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
                flushRun()
                upstreamFailed(error.message)
                return
            }
            switch session.databaseMessage(frame) {
            case .pass:
                run = (run?.start ?? start, upstreamInbound.readerIndex)
            case .passAndRegister(let key):
                shared.registry.register(key, for: self)
                run = (run?.start ?? start, upstreamInbound.readerIndex)
            case .replace(let bytes):
                flushRun()
                context.write(wrapOutboundOut(bytes), promise: nil)
            case .drop:
                flushRun()
            case .sendToDatabase(let bytes):
                upstream?.writeAndFlush(bytes, promise: nil)
            case .ready:
                decoder.limits = shared.limits
                context.write(wrapOutboundOut(frame.bytes), promise: nil)
                becameReady = true
            case let .close(error, reason, cancelRunning, ended):
                flushRun()
                execute(.close(error: error, reason: reason, cancelRunning: cancelRunning, ended: ended))
                return
            case .ignore:
                return
            }
        }
        if becameReady { resume() }
        checkHeldStatement()
    }

    /// Checks the held statement once the database has answered everything before it; the session
    /// ends instead if the database reported a setting the classifier does not read under.
    private func checkHeldStatement() {
        guard let text = heldStatement, let context, !session.isClosed, session.statementsSettled else { return }
        heldStatement = nil
        check(text, grants: session.grants, context: context, held: true)
    }

    func upstreamReadComplete() {
        context?.flush()
        flushUpstream()
    }

    func upstreamClosed() {
        execute(session.databaseClosed())
    }

    // MARK: statements

    private func check(_ text: String, grants: [Grant], context: ChannelHandlerContext, held: Bool = false) {
        guard let identity = session.identity else { return }
        let started = ContinuousClock.now
        let service = shared.service
        let audit = shared.settings.audit
        // A write grant that expired since the watcher last looked: the read-write session ends now,
        // before this statement reaches the database (it would run with write power).
        if session.writePowerLapsed(at: service.proxy.now) {
            endLapsedWritePower()
            return
        }
        // A session that may write judges a function call by what the function's body does.
        let readWrite = session.startedReadWrite
        let functions = readWrite ? shared.functions : nil
        if service.proxy.fastAllow(identity, text: text, grants: grants, audit: audit, followsCalls: functions != nil, readOnlySession: !readWrite,
                                   bound: session.checkingBind) {
            decided(nil, started: started)
            if held { resume() }
            return
        }
        suspend()
        // The slow path: the Bind's values are read here, for the guard to judge pattern parameters by.
        let bound = session.boundValues
        let me = NIOLoopBound(self, eventLoop: context.eventLoop)
        Task {
            let refusal: Refusal?
            do {
                let result = try await service.proxy.statement(identity, text: text, grants: grants, audit: audit, functions: functions,
                                                               readOnlySession: !readWrite, bound: bound)
                refusal = result.refusal.map { Refusal(message: $0.message, hint: $0.hint) }
            } catch {
                let (code, message) = ProxySession.describe(error)
                refusal = Refusal(code: code, message: message)
            }
            me.eventLoop.execute {
                let connection = me.value
                connection.decided(refusal, started: started)
                connection.resume()
            }
        }
    }

    /// Ends a read-write session whose last write grant has expired: nothing more is read from the
    /// client while the reason is looked up and the session is ended.
    private func endLapsedWritePower() {
        suspend()
        let now = shared.service.proxy.now
        execute(session.accessChanged(.granted(session.grants.filter { $0.expiresAt > now })))
    }

    /// The session's last grant expired: it ends, saying which grant and how, as when the watcher sees it.
    private func endLapsedAccess() {
        suspend()
        guard let identity = session.identity else { return }
        execute(session.accessChanged(.ended("\(identity.caller.principal) has no active grant on \(identity.resource)")))
    }

    private func decided(_ refusal: Refusal?, started: ContinuousClock.Instant) {
        let action = session.statementDecided(refusal)
        if case .forward = action {
            shared.service.metrics.proxyStatement(allowed: refusal == nil, checkTime: ContinuousClock.now - started)
        }
        execute(action)
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
        execute(session.accessChanged(access))
    }

    /// The proxy stops: the session ends with a FATAL 57P01 saying so, as PostgreSQL's own shutdown says
    /// it, instead of a connection that just drops. Returns when the connection has closed (at most a second).
    func stopping(_ message: String) -> EventLoopFuture<Void>? {
        guard let channel = context?.channel else { return nil }
        execute(database: session.terminate(message))
        channel.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
        return channel.closeFuture
    }

    /// The largest message a client may send before it is signed in (a password is a token).
    static let signInMessageBytes = 8192
}

extension ProxyConnection {
    /// A slow database: stop reading from the client until it has taken what was sent.
    func upstreamWritable(_ writable: Bool) {
        context?.channel.setOption(ChannelOptions.autoRead, value: writable).whenFailure { _ in }
    }
}

extension ProxyConnection: UpstreamReceiver {}
