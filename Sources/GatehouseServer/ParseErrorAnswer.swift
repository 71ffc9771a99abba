import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// Bytes that cannot be read as an HTTP request before one has begun (a garbage request line, a header
/// over the limit, a Content-Length that is not a number) are answered with the same problem document
/// as every other 400, and the connection is closed; the HTTP layer alone would answer an empty 400.
/// A request whose body turns out broken is left to the application, which answers it (its body throws).
final class ParseErrorAnswer: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// A request's head was read and not yet its end (an error now is its body's: the application answers).
    private var bodyOpen = false
    /// Requests read whose responses have not ended.
    private var awaiting = 0
    /// An error that came while earlier requests still waited for their responses: answered after them.
    private var deferred: HTTPParserError?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            bodyOpen = true
            awaiting += 1
        case .end: bodyOpen = false
        case .body: break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let ended = if case .end = unwrapOutboundIn(data) { true } else { false }
        context.write(data, promise: promise)
        guard ended else { return }
        awaiting = max(0, awaiting - 1)
        if awaiting == 0, let error = deferred {
            deferred = nil
            answer(error, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError, !bodyOpen else { return context.fireErrorCaught(error) }
        if awaiting == 0 { answer(parserError, context: context) } else { deferred = parserError }
    }

    private func answer(_ error: HTTPParserError, context: ChannelHandlerContext) {
        let problem = Self.problem(error)
        let body = problem.body
        var headers = problem.headers
        headers[.connection] = "close"
        headers[.contentLength] = "\(body.count)"
        // Every answer carries an id, as the application's do (none of the log's lines name it: nothing was routed).
        headers[ObservabilityMiddleware.requestIDHeader] = RequestID().description
        awaiting = Int.max / 2  // nothing after this answer
        context.write(wrapOutboundOut(.head(HTTPResponse(status: .badRequest, headerFields: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(ByteBuffer(bytes: body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
    }

    static func problem(_ error: HTTPParserError) -> Problem {
        let what = switch error {
        case .headerOverflow: "its header lines are too many or too large (at most 80 KiB in all)"
        case .invalidContentLength, .unexpectedContentLength: "its Content-Length is not a single number"
        case .invalidMethod: "its method is not one HTTP knows"
        case .invalidURL, .invalidPath, .invalidQueryString, .invalidFragment, .invalidHost, .invalidPort: "its path is not a valid URL path"
        case .invalidVersion, .invalidConstant: "its request line is not `METHOD /path HTTP/1.1`"
        case .invalidHeaderToken, .lfExpected, .invalidCharactersUsed: "a header line is malformed"
        case .invalidChunkSize: "a chunk of its body is malformed"
        default: "it is not HTTP/1.1 as this server reads it (a Transfer-Encoding other than `chunked`, or a malformed line)"
        }
        return Problem(status: 400, code: "bad_request", detail: "the request could not be read: \(what); the connection is closed")
    }
}

/// A client that asks `Expect: 100-continue` before sending its body (curl does for large bodies) is told to
/// go on at once, rather than waiting its timeout (a second for curl) for an answer that would never come.
/// The body is then read and limited like any other.
final class ContinueAnswer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data), head.headerFields[.expect]?.lowercased() == "100-continue" {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
        }
        context.fireChannelRead(data)
    }
}
