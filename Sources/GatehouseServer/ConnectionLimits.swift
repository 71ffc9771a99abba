import Foundation
import GatehouseCore
import Hummingbird
import HTTPTypes
import NIOCore
import NIOHTTPTypes
import Synchronization

/// What one client may hold of the HTTP server: how long a request may take to arrive, and how many
/// connections one address may keep open at once.
public struct HTTPLimits: Sendable {
    /// From a request's head to its end: a body sent a byte at a time (each byte resetting the idle
    /// timeout) is cut off here. A megabyte, the largest body taken, needs 35 KB/s.
    public var requestDeadline: TimeAmount
    /// Open connections per client address; more are closed at once. Behind a reverse proxy every
    /// connection comes from the proxy's address.
    public var connectionsPerAddress: Int

    /// A connection with nothing to read for this long is closed: 35 s, and at least 5 s past the request deadline,
    /// so a request whose body stops part way is answered 408 before its connection would be dropped unanswered.
    public var idleTimeout: TimeAmount { max(.seconds(35), requestDeadline + .seconds(5)) }

    public init(requestDeadline: TimeAmount = .seconds(30), connectionsPerAddress: Int = 1024) {
        self.requestDeadline = requestDeadline
        self.connectionsPerAddress = connectionsPerAddress
    }
}

/// Open connections by client address, shared by every connection of one server.
final class ConnectionCounts: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    let limit: Int
    /// Trusted reverse proxies, which carry many clients' connections: they may hold `proxyFactor` times the limit.
    let proxies: TrustedProxies
    static let proxyFactor = 16

    init(limit: Int, proxies: TrustedProxies = .none) {
        self.limit = limit
        self.proxies = proxies
    }

    /// Counts a new connection from `address`; false (and not counted) when the address has its limit already.
    func admit(_ address: String) -> Bool {
        let limit = proxies.contains(address) ? limit * Self.proxyFactor : limit
        return counts.withLock { counts in
            let open = counts[address, default: 0]
            guard open < limit else { return false }
            counts[address] = open + 1
            return true
        }
    }

    func release(_ address: String) {
        counts.withLock { counts in
            let open = counts[address, default: 1] - 1
            counts[address] = open > 0 ? open : nil
        }
    }
}

/// A request whose end did not arrive within `HTTPLimits.requestDeadline` of its head. Raised in the
/// request's body stream, where the application reads it: the reader answers 408, and the connection closes
/// after that answer, as after any body that cannot be read.
struct RequestDeadlineExceeded: Error, CustomStringConvertible {
    let seconds: Int64
    var description: String { "the request did not arrive whole within \(seconds) s of its first line" }
}

/// Applies `HTTPLimits` to one connection: a connection over its address's limit is closed before anything is
/// read; a request whose end has not arrived `requestDeadline` after its head ends its body with
/// `RequestDeadlineExceeded` (nothing more of it is passed on). This handler writes nothing itself: the answer
/// and the close are the HTTP server's own, as for a body whose framing is broken.
final class ConnectionLimiter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private let counts: ConnectionCounts
    private let deadline: TimeAmount
    private var address: String?
    /// Over its address's limit: closed, and nothing it sends is read.
    private var refused = false
    private var pending: Scheduled<Void>?
    /// When the head of the request being read arrived; nil between requests.
    private var openSince: NIODeadline?
    /// The request being read ran out of time: the rest of the connection's bytes are dropped.
    private var expired = false

    init(counts: ConnectionCounts, deadline: TimeAmount) {
        self.counts = counts
        self.deadline = deadline
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { admit(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        admit(context: context)
        context.fireChannelActive()
    }

    private func admit(context: ChannelHandlerContext) {
        guard address == nil, !refused else { return }
        let peer = context.channel.remoteAddress?.ipAddress ?? "unknown"
        guard counts.admit(peer) else {
            refused = true
            // Closed once the pipeline is set up (this may run while it is).
            let channel = context.channel
            context.eventLoop.execute { channel.close(promise: nil) }
            return
        }
        address = peer
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        release()
    }

    func channelInactive(context: ChannelHandlerContext) {
        release()
        context.fireChannelInactive()
    }

    /// The connection counts no more (once, whichever comes first: its end or this handler's removal).
    private func release() {
        pending?.cancel()
        pending = nil
        if let address { counts.release(address) }
        address = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused, !expired else { return }
        switch unwrapInboundIn(data) {
        case .head:
            openSince = .now()
        case .end:
            openSince = nil
            pending?.cancel()
            pending = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    /// The deadline is armed only for a request still open when the bytes read so far are used up: one that came
    /// whole in a read (nearly every one) costs no timer.
    func channelReadComplete(context: ChannelHandlerContext) {
        if let openSince, pending == nil, !expired, !refused {
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            pending = context.eventLoop.scheduleTask(deadline: openSince + deadline) {
                let (handler, context) = loopBound.value
                handler.expire(context: context)
            }
        }
        context.fireChannelReadComplete()
    }

    private func expire(context: ChannelHandlerContext) {
        pending = nil
        guard context.channel.isActive, !expired else { return }
        expired = true
        context.fireErrorCaught(RequestDeadlineExceeded(seconds: deadline.nanoseconds / 1_000_000_000))
    }
}
