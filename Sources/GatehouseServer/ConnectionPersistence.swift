import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1

/// Whether a connection stays open after a response follows HTTP/1.1 (RFC 9112, 9.3 and 9.6): after an
/// HTTP/1.0 request without the `keep-alive` option, or a request whose Connection header names `close`
/// (in any case, among other options), the server says `Connection: close` and closes. The HTTP layer above
/// closes only for the exact header value `close` and never learns a request's version, so an HTTP/1.0 client
/// that reads to the end of the connection (monitoring checks, load balancers' health checks) waited for the
/// idle timeout. This handler sits below that layer, where the version is still known, and gives it the exact
/// value it looks for.
final class ConnectionPersistence: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Requests read and final responses begun on this connection.
    private var requests = 0, responses = 0
    /// The request after whose response the connection ends.
    private var last: Int?
    /// HTTP/1.0 requests that asked to keep the connection: their responses say it is kept (an HTTP/1.0 client
    /// takes a response without `keep-alive` as the connection's last, and may read on to its end).
    private var keptByHTTP10: Set<Int> = []
    /// The response being written is a 413: the connection ends after it.
    private var closeAfterResponse = false

    /// Whether the connection ends after the response to `head`.
    static func endsConnection(_ head: HTTPRequestHead) -> Bool {
        let options = head.headers[canonicalForm: "connection"].map { $0.lowercased() }
        if options.contains("close") { return true }
        return head.version == .http1_0 && !options.contains("keep-alive")
    }

    /// Set on a request whose Host header lines break RFC 9112 3.2 (an HTTP/1.1 request without one, any
    /// request with several): the application answers it 400 (`ContractMiddleware`), and the connection ends.
    /// A client's own header of this name is removed.
    static let hostProblem = "x-gatehouse-host-problem"

    /// Set on a request whose body comes in a transfer coding other than `chunked` alone (`gzip, chunked`): the
    /// application answers it 501 (RFC 9112 6.1), and the connection ends. A client's own header of this name is removed.
    static let transferProblem = "x-gatehouse-transfer-problem"

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data) else { return context.fireChannelRead(data) }
        requests += 1
        head.headers.remove(name: Self.hostProblem)
        head.headers.remove(name: Self.transferProblem)
        let codings = head.headers[canonicalForm: "transfer-encoding"].map { $0.lowercased() }
        if !codings.isEmpty, codings != ["chunked"] {
            head.headers.add(name: Self.transferProblem, value: head.headers["transfer-encoding"].joined(separator: ", "))
            if last == nil { last = requests }
            head.headers.replaceOrAdd(name: "connection", value: "close")
        }
        let hosts = head.headers["host"].count
        if hosts > 1 || (hosts == 0 && head.version == .http1_1) {
            head.headers.add(name: Self.hostProblem, value: hosts == 0 ? "no Host header" : "\(hosts) Host headers")
            if last == nil { last = requests }
            head.headers.replaceOrAdd(name: "connection", value: "close")
        } else if last == nil, Self.endsConnection(head) {
            last = requests
            head.headers.replaceOrAdd(name: "connection", value: "close")
        } else if head.version == .http1_0 {
            keptByHTTP10.insert(requests)
        }
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), closeAfterResponse {
            // A body refused for its declared size was never read: the connection ends with the answer, rather than
            // waiting for bytes nobody will read.
            let channel = context.channel
            let written = promise ?? context.eventLoop.makePromise()
            written.futureResult.whenComplete { _ in channel.close(promise: nil) }
            return context.write(data, promise: written)
        }
        // Interim answers (100 Continue) are not the request's response.
        guard case .head(var head) = unwrapOutboundIn(data), head.status.code >= 200 else {
            return context.write(data, promise: promise)
        }
        responses += 1
        if head.status.code == 413 {
            closeAfterResponse = true
            head.headers.replaceOrAdd(name: "connection", value: "close")
        } else if responses == last {
            head.headers.replaceOrAdd(name: "connection", value: "close")
        } else if keptByHTTP10.remove(responses) != nil {
            head.headers.replaceOrAdd(name: "connection", value: "keep-alive")
        }
        context.write(wrapOutboundOut(.head(head)), promise: promise)
    }
}

/// Puts `ConnectionPersistence` below the HTTP-types codec when a connection's pipeline is built (handlers the
/// application adds go above it), then steps out.
final class ConnectionPersistenceInstaller: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    func handlerAdded(context: ChannelHandlerContext) {
        let pipeline = context.pipeline.syncOperations
        if let codec = try? pipeline.handler(type: HTTP1ToHTTPServerCodec.self) {
            try? pipeline.addHandler(ConnectionPersistence(), position: .before(codec))
        }
        pipeline.removeHandler(context: context, promise: nil)
    }
}
