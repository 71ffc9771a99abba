import GatehouseCore
import NIOCore
import NIOSSL

/// What a connection to the database reports to: a client's session (`ProxyConnection`), or the
/// proxy's own catalog connection (`CatalogConnection`). Called on the channel's event loop.
protocol UpstreamReceiver: AnyObject {
    func upstreamFailed(_ why: String)
    func upstreamRead(_ bytes: inout ByteBuffer)
    func upstreamReadComplete()
    func upstreamClosed()
    func upstreamWritable(_ writable: Bool)
}

/// The database connection's handler: optional TLS negotiation, then hands bytes to the connection.
final class UpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let connection: any UpstreamReceiver
    private let tlsMode: ProxySettings.UpstreamTLS
    private let tls: NIOSSLContext?
    private let serverHostname: String
    private let startup: ByteBuffer
    private var awaitingTLSAnswer = false

    init(connection: any UpstreamReceiver, tlsMode: ProxySettings.UpstreamTLS, tls: NIOSSLContext?, serverHostname: String, startup: ByteBuffer) {
        self.connection = connection
        self.tlsMode = tlsMode
        self.tls = tls
        self.serverHostname = serverHostname
        self.startup = startup
    }

    /// The name sent in SNI and, for verify-full, checked against the certificate. An IP address is
    /// never sent in SNI (TLS forbids it): for an upstream given as one, no name is sent and
    /// verify-full checks the certificate's IP addresses against the address connected to.
    static func serverName(_ host: String) -> String? {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        return (try? SocketAddress(ipAddress: bare, port: 0)) == nil ? host : nil
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
            switch ProxySession.tlsAnswer(answer, trailingBytes: bytes.readableBytes, mode: tlsMode, tlsAvailable: tls != nil) {
            case .startTLS:
                guard let tls else { return connection.upstreamFailed("TLS to the database is not configured") }
                do {
                    let handler = try NIOSSLClientHandler(context: tls, serverHostname: Self.serverName(serverHostname))
                    try context.pipeline.syncOperations.addHandler(handler, position: .first)
                } catch {
                    connection.upstreamFailed(TLSFailure.explain("\(error)", host: serverHostname) ?? "TLS to the database failed: \(error)")
                    return
                }
            case .plain:
                break
            case .fail(let why):
                connection.upstreamFailed(why)
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
        connection.upstreamFailed(TLSFailure.explain("\(error)", host: serverHostname) ?? "database connection error: \(error)")
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        connection.upstreamWritable(context.channel.isWritable)
    }
}
