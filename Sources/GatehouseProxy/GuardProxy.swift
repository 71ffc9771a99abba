import Foundation
import GatehouseCore
import GatehouseApp
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle

/// The PostgreSQL guard proxy: one listener per resource with a `proxy:` section, and a watcher
/// that ends sessions whose grant has ended. Run it as a service (inside `serve --proxy`, or alone
/// with `gatehouse proxy`); it stops listening on graceful shutdown.
public final class GuardProxy: Service, Sendable {
    /// How often the watcher looks at the grants of live sessions: a session ends within this
    /// interval (plus one store read) of its grant's end.
    public static let watchInterval: Duration = .milliseconds(400)

    let service: UseCases
    let logger: Logger
    let limits: WireLimits
    let environment: [String: String]
    private let registry = SessionRegistry()
    private let onListening: @Sendable ([String: SocketAddress]) -> Void

    public init(service: UseCases, logger: Logger, limits: WireLimits = WireLimits(),
                environment: [String: String] = ProcessInfo.processInfo.environment,
                onListening: @escaping @Sendable ([String: SocketAddress]) -> Void = { _ in }) {
        self.service = service
        self.logger = logger
        self.limits = limits
        self.environment = environment
        self.onListening = onListening
    }

    /// The listeners' settings, with every problem (unreadable password or certificate) reported
    /// before anything listens.
    func contexts() throws -> [ListenerContext] {
        let resources = service.policies.policy.resources.values.filter { $0.proxy != nil }.sorted { $0.name < $1.name }
        guard !resources.isEmpty else {
            throw ProxyStartError(message: "no resource in the policy has a `proxy:` section; add one to a `kind: postgres` resource (see the README, \"Guard proxy\")")
        }
        return try resources.map { resource in
            let settings = resource.proxy!
            let password: String
            do { password = try settings.readPassword(environment: environment) } catch {
                throw ProxyStartError(message: "resource \(resource.name): \(error)")
            }
            var serverTLS: NIOSSLContext?
            if let certificate = settings.certificateFile, let key = settings.keyFile {
                do {
                    let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
                    let configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain,
                                                                                 privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
                    serverTLS = try NIOSSLContext(configuration: configuration)
                } catch {
                    let why = ProxySettings.unreadable(certificate).map { "\(certificate): \($0)" } ?? ProxySettings.unreadable(key).map { "\(key): \($0)" }
                        ?? "they are not a PEM certificate and its private key (\(error))"
                    throw ProxyStartError(message: "resource \(resource.name): cannot load the TLS certificate \(certificate) and key \(key): \(why)")
                }
            }
            var upstreamTLS: NIOSSLContext?
            if settings.upstreamTLS != .disable {
                var configuration = TLSConfiguration.makeClientConfiguration()
                switch settings.upstreamTLS {
                case .verifyFull: configuration.certificateVerification = .fullVerification
                case .verifyCA: configuration.certificateVerification = .noHostnameVerification
                default: configuration.certificateVerification = .none
                }
                if let path = settings.upstreamRootCertificates {
                    do {
                        let roots = try NIOSSLCertificate.fromPEMFile(path)
                        guard !roots.isEmpty else { throw ProxyStartError(message: "the file has no PEM certificate") }
                        configuration.trustRoots = .certificates(roots)
                    } catch {
                        let why = ProxySettings.unreadable(path) ?? (error as? ProxyStartError)?.message ?? "it holds no PEM certificate (\(error))"
                        throw ProxyStartError(message: "resource \(resource.name): cannot read the database's root certificates (sslrootcert) \(path): \(why)")
                    }
                }
                upstreamTLS = try NIOSSLContext(configuration: configuration)
            }
            let catalog = CatalogConnection(settings: settings, password: password, tls: upstreamTLS)
            return ListenerContext(resource: resource.name, settings: settings, password: password, serverTLS: serverTLS,
                                   upstreamTLS: upstreamTLS, service: service, registry: registry, limits: limits,
                                   catalog: catalog, functions: service.proxy.functionReach(catalog: catalog))
        }
    }

    /// Checks that every listener can be set up (passwords, certificates), without listening.
    public func validate() throws {
        _ = try contexts()
    }

    /// Binds every listener; throws (and closes what was bound) when one cannot listen.
    func start() async throws -> [(ListenerContext, Channel)] {
        let contexts = try contexts()
        var channels: [Channel] = []
        do {
            for shared in contexts {
                let settings = shared.settings
                let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .serverChannelOption(ChannelOptions.backlog, value: 256)
                    .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                    .childChannelInitializer { channel in
                        let plaintext = settings.plaintext == .allow || Self.isLoopback(channel.remoteAddress)
                        let address = channel.remoteAddress?.ipAddress ?? "unknown"
                        guard shared.registry.admitConnection(from: address, resource: shared.resource, limit: settings.maxConnectionsPerAddress) else {
                            // Over the cap: one FATAL error, then the connection closes; nothing else is read.
                            shared.service.metrics.proxySession("over_address_cap")
                            return channel.eventLoop.makeCompletedFuture {
                                let message = "gatehouse: too many connections from \(address) to \(shared.resource) (at most \(settings.maxConnectionsPerAddress) at once); close some and try again"
                                try channel.pipeline.syncOperations.addHandler(RefuseConnection(message: message) { key, eventLoop in
                                    shared.registry.cancel(resource: shared.resource, settings: settings, key: key, eventLoop: eventLoop)
                                })
                            }
                        }
                        channel.closeFuture.whenComplete { _ in shared.registry.connectionClosed(from: address, resource: shared.resource) }
                        return channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(ProxyConnection(shared: shared, plaintextAllowed: plaintext))
                        }
                    }
                    .bind(host: settings.listenHost, port: settings.listenPort).get()
                channels.append(channel)
            }
        } catch {
            for channel in channels { try? await channel.close() }
            throw ProxyStartError(message: "the guard proxy cannot listen: \(error)")
        }
        return Array(zip(contexts, channels))
    }

    static func isLoopback(_ address: SocketAddress?) -> Bool {
        guard let ip = address?.ipAddress else { return false }
        return ip.hasPrefix("127.") || ip == "::1" || ip.hasPrefix("::ffff:127.")
    }

    public func run() async throws {
        let listeners = try await start()
        var addresses: [String: SocketAddress] = [:]
        for (shared, channel) in listeners {
            addresses[shared.resource] = channel.localAddress
            logger.notice("guard proxy listening", metadata: ["resource": "\(shared.resource)", "address": "\(channel.localAddress.map { "\($0)" } ?? "?")",
                                                               "upstream": "\(shared.settings.upstreamHost):\(shared.settings.upstreamPort)"])
        }
        onListening(addresses)
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.registry.watch(self.service)
                try? await Task.sleep(for: Self.watchInterval)
            }
        }
        // Stopping: no new connections, and every session is told why it ends.
        for (_, channel) in listeners { try? await channel.close() }
        await registry.endAll("gatehouse: the proxy is shutting down; a statement that was running may or may not have completed: reconnect when it is back, and check")
        for (shared, _) in listeners { shared.catalog.close() }
    }
}

public struct ProxyStartError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}

/// A connection over the per-address cap. It is answered as PostgreSQL answers one over
/// `max_connections`, after the client's first packets, so clients show the message: an SSLRequest or
/// GSSENCRequest gets `N`, the StartupMessage gets one FATAL ErrorResponse (SQLSTATE 53300), and the
/// connection closes. A CancelRequest is still passed on (a pool at the cap must be able to cancel).
final class RefuseConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let message: String
    let cancel: @Sendable (CancelKey, EventLoop) -> Void
    private var inbound = ByteBuffer()

    /// How long a connection over the cap may stay open without sending its first packet: it holds a
    /// descriptor, and many of them would exhaust the process's.
    static let silenceAllowed: TimeAmount = .seconds(5)

    init(message: String, cancel: @escaping @Sendable (CancelKey, EventLoop) -> Void) {
        self.message = message
        self.cancel = cancel
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        context.eventLoop.scheduleTask(in: Self.silenceAllowed) { channel.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        inbound.writeBuffer(&bytes)
        while let length = inbound.getInteger(at: inbound.readerIndex, as: Int32.self) {
            guard length >= 8, length <= 10_000 else { return refuse(context) }
            guard inbound.readableBytes >= Int(length), var packet = inbound.readSlice(length: Int(length)) else { return }
            packet.moveReaderIndex(forwardBy: 4)
            let code = packet.readInteger(as: Int32.self) ?? 0
            switch code {
            case FrontendDecoder.sslRequestCode, FrontendDecoder.gssEncRequestCode:
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: [UInt8(ascii: "N")])), promise: nil)
            case FrontendDecoder.cancelRequestCode:
                if let processID = packet.readInteger(as: Int32.self), let secret = packet.readBytes(length: packet.readableBytes), !secret.isEmpty {
                    cancel(CancelKey(processID: processID, secret: secret), context.eventLoop)
                }
                context.close(promise: nil)
                return
            default:
                return refuse(context)
            }
        }
    }

    private func refuse(_ context: ChannelHandlerContext) {
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(Wire.error(code: "53300", message: message, fatal: true))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }
}
