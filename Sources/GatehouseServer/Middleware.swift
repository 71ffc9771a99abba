import Foundation
import GatehouseApp
import GatehouseCore
import Hummingbird
import HTTPTypes
import Logging
import NIOCore
import NIOHTTP1
import OpenAPIRuntime

public struct GatehouseRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?
    /// Who the client is: the peer's address, or what a trusted reverse proxy says in X-Forwarded-For
    /// (`ClientAddressMiddleware`). Rate limits, sign-in limits and the audit's `source_ip` use this.
    public var clientAddress: String?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
        clientAddress = remoteAddress?.ipAddress
    }

    /// No Gatehouse request needs more than this; larger bodies get 413 before any parsing. Room for
    /// the longest SQL text the classifier parses (128 KiB) however it is JSON-escaped (`\u0001` is six
    /// bytes for one; Python's `json.dumps` writes every non-ASCII character as `\uXXXX`, up to three
    /// bytes for one): a longer one still arrives, and is classified `too_complex`, rather than refused by size.
    public static let maxBodyBytes = 1024 * 1024
    public var maxUploadSize: Int { Self.maxBodyBytes }
}

/// What handlers generated from the OpenAPI contract need from the HTTP request but the contract
/// does not carry: the bearer token and the peer's address.
public struct RequestInfo: Sendable {
    @TaskLocal public static var current = RequestInfo(authorization: nil, remoteAddress: nil)
    public var authorization: String?
    public var remoteAddress: String?
    /// Who is calling, once the middleware has authenticated the token (every non-public /v1 path).
    public var caller: Caller?

    /// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, RFC 7235).
    public var bearerToken: String? {
        guard let authorization, authorization.utf8.count > 7 else { return nil }
        let scheme = authorization.utf8.prefix(7)
        guard scheme.elementsEqual("bearer ".utf8, by: { ($0 | 0x20) == $1 }) else { return nil }
        let token = authorization.utf8.dropFirst(7).drop { $0 == UInt8(ascii: " ") }
        let trimmed = token.reversed().drop { $0 == UInt8(ascii: " ") }.count
        return String(decoding: token.prefix(trimmed), as: UTF8.self)
    }
}

/// Takes the client's address from `X-Forwarded-For` when the connection comes from a trusted reverse
/// proxy (`serve --trusted-proxies`); from anyone else the header is ignored.
struct ClientAddressMiddleware: RouterMiddleware {
    typealias Context = GatehouseRequestContext
    static let forwardedFor = HTTPField.Name("X-Forwarded-For")!
    let trusted: TrustedProxies

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard !trusted.isEmpty else { return try await next(request, context) }
        var context = context
        context.clientAddress = trusted.client(peer: context.remoteAddress?.ipAddress, forwardedFor: request.headers[values: Self.forwardedFor])
        return try await next(request, context)
    }
}

/// Collects the body within the size limit, authenticates the caller of every API path that needs a
/// token (before the body is decoded: a caller without a valid token learns nothing from how a body
/// is refused), and exposes the request details to the handlers.
struct RequestInfoMiddleware: RouterMiddleware {
    typealias Context = GatehouseRequestContext
    let tokens: Tokens

    /// API paths anyone may call: the sign-in endpoints.
    /// Paths without a bearer token: sign-in, and Slack's interactions (signed by Slack instead).
    static let publicPaths: Set<String> = ["/v1/auth/login", "/v1/auth/login/complete", "/v1/auth/device", "/v1/auth/device/poll",
                                           SlackInteractions.path]

    /// The path as the router matches it: empty segments (`//v1/check`) are ignored there, so here too.
    static func routedPath(_ path: String) -> String {
        guard path.contains("//") else { return path }
        return "/" + path.split(separator: "/", omittingEmptySubsequences: true).joined(separator: "/")
    }

    /// Sign-in bodies and forms are small: no more is read of them before anyone is known.
    static let publicBodyBytes = 64 * 1024

    /// A body over `limit`, named with the limit that applied (NIO's error names what was left of it
    /// after the first chunk).
    static func tooLarge(_ limit: Int, _ what: String) -> GatehouseError {
        GatehouseError(.tooLarge, "body_too_large", "\(what) is larger than \(limit / 1024) KiB, so nothing was done")
    }

    /// A length declared over `limit` is refused at once, before any of the body is waited for.
    static func refuseDeclaredOver(_ limit: Int, _ request: Request, _ what: String) throws {
        if let declared = request.headers[.contentLength].flatMap({ Int($0) }), declared > limit { throw tooLarge(limit, what) }
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var request = request
        let path = Self.routedPath(request.uri.path)
        let needsToken = path.hasPrefix("/v1/") && !Self.publicPaths.contains(path)
        // The inbox's pages read their forms themselves, up to the same limit, and answer in HTML.
        if path.hasPrefix("/v1/"), request.method == .post || request.method == .put || request.method == .patch {
            let limit = needsToken ? context.maxUploadSize : min(context.maxUploadSize, Self.publicBodyBytes)
            try Self.refuseDeclaredOver(limit, request, "the request body")
            do { _ = try await request.collectBody(upTo: limit) } catch let error where Problem.from(error).status == 413 {
                throw Self.tooLarge(limit, "the request body")
            }
        }
        var info = RequestInfo(authorization: request.headers[.authorization],
                               remoteAddress: context.clientAddress)
        if needsToken {
            info.caller = try await tokens.authenticate(bearer: info.bearerToken)
        }
        var response = try await RequestInfo.$current.withValue(info) {
            try await next(request, context)
        }
        // API answers carry tokens (on creation) and what a caller may see: no cache keeps them.
        if path.hasPrefix("/v1/") { response.headers[.cacheControl] = "no-store" }
        return response
    }
}

/// Turns every error into an RFC 9457 problem document with the right status. Nothing escapes as a
/// bare 500: decoding errors name the field, and unexpected errors are logged and reported as 500
/// without internals.
struct ProblemMiddleware: RouterMiddleware {
    typealias Context = GatehouseRequestContext
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let problem = Problem.from(error)
            if problem.status >= 500 {
                // Never log the error itself: the generated layer's errors carry the whole request,
                // bearer token included. The type and the underlying cause are enough to debug.
                let cause = (error as? ServerError)?.underlyingError ?? error
                context.logger.error("request failed", metadata: ["path": "\(request.uri.path)", "status": "\(problem.status)",
                                                          "code": "\(problem.code)", "cause": "\(type(of: cause))"])
            }
            var response = problem.response()
            // A request cut off at its deadline: the rest of it is not read, so the connection ends with this answer.
            // So does one refused for its declared length: its body is not read either.
            if problem.status == 408 || problem.status == 413 { response.headers[.connection] = "close" }
            // Refusals are no more to be cached than answers.
            if RequestInfoMiddleware.routedPath(request.uri.path).hasPrefix("/v1/") { response.headers[.cacheControl] = "no-store" }
            return response
        }
    }
}

struct Problem: Sendable {
    var status: Int
    var code: String
    var detail: String
    var field: String?
    /// For 429: Retry-After and the RateLimit fields.
    var refusal: LimitRefusal?

    static func from(_ error: any Error) -> Problem {
        switch error {
        case let error as GatehouseError:
            return Problem(status: status(for: error.kind), code: error.code, detail: error.message, field: error.field, refusal: error.refusal)
        case let error as ServerError:
            if let underlying = error.underlyingError as? GatehouseError { return from(underlying) }
            if let decoding = error.underlyingError as? DecodingError {
                let problem = from(decoding)
                // Only GET operations take query parameters, and they have no body.
                guard error.request.method == .get else { return problem }
                return invalidParameter(in: error.request.path ?? "", error: decoding)
            }
            if error.causeDescription.localizedCaseInsensitiveContains("missing required request body") {
                return Problem(status: 400, code: "missing_body", detail: "this operation needs a JSON body (for deny and report: {\"comment\": \"why\"}); see openapi.yaml")
            }
            // Anything else the generated layer rejects is a malformed request (bad query value, wrong content type).
            return Problem(status: 400, code: "bad_request", detail: "the request could not be read: \(error.causeDescription); check it against openapi.yaml")
        case let error as DecodingError:
            return from(error)
        case let error as HTTPParserError:
            // A body whose framing is broken (a chunk size that is not hex, a chunk longer than it says, a
            // connection closed before Content-Length bytes came): the client's mistake, not the server's.
            return Problem(status: 400, code: "bad_request", detail: "the request body could not be read as HTTP (\(error)); check its Content-Length or chunked encoding")
        case let error as RequestDeadlineExceeded:
            return Problem(status: 408, code: "request_timeout", detail: "\(error); send the whole request at once. The connection is closed")
        case let error as NIOTooManyBytesError:
            return Problem(status: 413, code: "body_too_large", detail: "the request body is larger than \((error.maxBytes ?? GatehouseRequestContext.maxBodyBytes) / 1024) KiB")
        case let error as HTTPError:
            switch error.status.code {
            case 413: return Problem(status: 413, code: "body_too_large", detail: "the request body is larger than \(GatehouseRequestContext.maxBodyBytes / 1024) KiB")
            case 404: return Problem(status: 404, code: "not_found", detail: "no such path; the API is described in openapi.yaml")
            case 405: return Problem(status: 405, code: "method_not_allowed", detail: "this path does not accept that method; see openapi.yaml")
            default: return Problem(status: Int(error.status.code), code: "http_error", detail: error.body ?? error.status.reasonPhrase)
            }
        default:
            return Problem(status: 500, code: "internal_error", detail: "an unexpected error occurred; nothing was changed if the request failed mid-way. The server log has details.")
        }
    }

    /// A query parameter the generated layer could not read: named by the one whose value its error
    /// quotes (its own words name a Swift type, not the parameter), the value quoted short.
    static func invalidParameter(in target: String, error: DecodingError) -> Problem {
        let said: String
        switch error {
        case .dataCorrupted(let context), .typeMismatch(_, let context), .valueNotFound(_, let context), .keyNotFound(_, let context): said = context.debugDescription
        @unknown default: said = ""
        }
        let items = URLComponents(string: target)?.queryItems ?? []
        // An integer or boolean that is not one: the one parameter of that type whose value does not read as it.
        var mistyped: [URLQueryItem] = []
        if case .typeMismatch(let type, _) = error, let kind = QueryParameterKind(type) {
            mistyped = items.filter { Self.typedQueryParameters[$0.name] == kind && !kind.reads($0.value ?? "") }
        }
        let named = items.first { item in item.value.map { !$0.isEmpty && said.hasSuffix("value \($0)") } ?? false }
            ?? (mistyped.count == 1 ? mistyped.first : nil)
            ?? (items.count == 1 ? items.first : nil)
        guard let named else {
            let names = items.prefix(10).map { "`\(shown($0.name))`" }.joined(separator: ", ")
            return Problem(status: 400, code: "invalid_parameter",
                           detail: "one of the query parameters (\(names)) has an invalid value; see openapi.yaml for the values each one takes")
        }
        return Problem(status: 400, code: "invalid_parameter",
                       detail: "`\(shown(named.name))` cannot be `\(shown(named.value ?? ""))`; see openapi.yaml for the values it takes",
                       field: shown(named.name))
    }

    /// The query parameters of openapi.yaml that take an integer or a boolean (a test holds the two together):
    /// the generated layer's error for one names neither the parameter nor the value.
    static let typedQueryParameters: [String: QueryParameterKind] = [
        "limit": .integer, "after_seq": .integer,
        "active": .boolean, "blocked": .boolean, "throttled": .boolean, "include_revoked": .boolean, "awaiting_review": .boolean,
    ]

    /// A text the client sent, as an answer may quote it: at most 40 characters, no control characters.
    static func shown(_ text: String) -> String {
        let clean = String(String.UnicodeScalarView(text.unicodeScalars.filter { $0.properties.generalCategory != .control }))
        return clean.count > 40 ? clean.prefix(40) + "…" : clean
    }

    /// Foundation's words for a value an enum does not have ("Cannot initialize KindPayload from invalid
    /// String value python"), in the API's: the value, not the generated type's name.
    static func plain(_ description: String) -> String {
        guard let range = description.range(of: "from invalid String value "), description.hasPrefix("Cannot initialize ") else { return description }
        let value = description[range.upperBound...].prefix(40)
        return "`\(value)` is not one of the values it takes (see openapi.yaml)"
    }

    static func from(_ error: DecodingError) -> Problem {
        func path(_ context: DecodingError.Context) -> String? {
            let names = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return names.isEmpty ? nil : names.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            let field = (path(context).map { $0 + "." } ?? "") + key.stringValue
            return Problem(status: 400, code: "missing_field", detail: "`\(field)` is required", field: field)
        case .typeMismatch(let type, let context):
            let expected = type is [String: Any].Type || "\(type)".hasPrefix("Dictionary") ? "a JSON object" : type is [Any].Type ? "a JSON array" : "\(type)"
            return Problem(status: 400, code: "wrong_type", detail: "`\(path(context) ?? "body")` has the wrong type; expected \(expected)", field: path(context))
        case .valueNotFound(_, let context) where context.debugDescription.hasPrefix("The oneOf structure"):
            return fromOneOf(context)
        case .valueNotFound(_, let context):
            return Problem(status: 400, code: "missing_value", detail: "`\(path(context) ?? "body")` must not be null", field: path(context))
        case .dataCorrupted(let context) where context.debugDescription.hasPrefix("Additional properties are disabled"):
            let field = path(context) ?? "body"
            return Problem(status: 400, code: "unknown_field", detail: "`\(field)` is not a field of this body; see openapi.yaml", field: field)
        case .dataCorrupted(let context):
            if let field = path(context) {
                return Problem(status: 400, code: "invalid_value", detail: "`\(field)` has an invalid value: \(plain(context.debugDescription))", field: field)
            }
            if let underlying = context.underlyingError {
                return Problem(status: 400, code: "malformed_json", detail: "the body is not valid JSON: \(syntaxProblem(underlying)); send UTF-8 JSON as described in openapi.yaml")
            }
            return Problem(status: 400, code: "malformed_json", detail: "the body is not valid JSON; send a JSON object as described in openapi.yaml")
        @unknown default:
            return Problem(status: 400, code: "bad_request", detail: "the body could not be read")
        }
    }

    /// What the JSON parser found wrong, in words (its own error is a type name with a source location).
    static func syntaxProblem(_ error: any Error) -> String {
        let text = String(describing: error)
        let lowered = text.lowercased()
        let at = text.firstMatch(of: /index: (\d+)/).map { " at byte \($0.1)" } ?? ""
        if lowered.contains("surrogate") { return "a \\u escape is half of a UTF-16 surrogate pair without the other half\(at)" }
        if lowered.contains("utf8") || lowered.contains("utf-8") { return "its bytes are not UTF-8\(at)" }
        if lowered.contains("nest") || lowered.contains("depth") { return "it is nested deeper than the parser reads (512 levels)" }
        if lowered.contains("unexpectedendofile") || lowered.contains("unexpected end") { return "it ends before its last value is complete" }
        return "its syntax is broken\(at)"
    }

    /// The keys that choose the shape of a body that is a `oneOf` of closed objects (NewRequest and
    /// CheckInput: a role, or one exact action).
    static let shapeKeys: Set<String> = ["role", "action"]

    /// A body that decoded as none of its shapes: the error of the shape the client meant (the one whose
    /// choosing key it sent), or "exactly one of role and action" when it sent both or neither.
    static func fromOneOf(_ context: DecodingError.Context) -> Problem {
        // OpenAPIRuntime keeps each shape's error in an internal MultiError, in the order of the oneOf.
        let errors = context.underlyingError.flatMap { underlying in
            Mirror(reflecting: underlying).children.first { $0.label == "errors" }?.value as? [any Error]
        } ?? []
        // The JSON parser's own error (broken syntax, a lone surrogate, bytes that are not UTF-8) comes as
        // one shape's error: the body is not JSON, whichever shape was meant.
        if let syntax = errors.first(where: { !($0 is DecodingError) }) {
            return Problem(status: 400, code: "malformed_json",
                           detail: "the body is not valid JSON: \(syntaxProblem(syntax)); send UTF-8 JSON as described in openapi.yaml")
        }
        let decoding = errors.compactMap { $0 as? DecodingError }
        // A shape refused for carrying the other shape's key: both were given, whatever else is wrong.
        let both = decoding.contains { error in
            guard case .dataCorrupted(let corrupted) = error, corrupted.debugDescription.hasPrefix("Additional properties are disabled") else { return false }
            return corrupted.codingPath.count == 1 && shapeKeys.contains(corrupted.codingPath[0].stringValue)
        }
        let meant = both ? nil : decoding.first { error in
            switch error {
            case .keyNotFound(let key, let keyContext): !(keyContext.codingPath.isEmpty && shapeKeys.contains(key.stringValue))
            case .valueNotFound(_, let valueContext): !(valueContext.codingPath.count == 1 && shapeKeys.contains(valueContext.codingPath[0].stringValue))
            default: true
            }
        }
        switch meant {
        case .keyNotFound(let key, let keyContext)? where keyContext.codingPath.isEmpty && key.stringValue == "duration":
            return Problem(status: 400, code: "missing_duration", detail: "say how long you need the access: \"duration\": \"30m\" (90s, 30m, 1h30m, 7d)", field: "duration")
        case let error?:
            return from(error)
        case nil:
            return Problem(status: 400, code: "role_or_action",
                           detail: "give a role (\"role\") or one exact action (\"action\": {\"kind\": \"sql\", \"text\": ...}), exactly one of them", field: "role")
        }
    }

    static func status(for kind: GatehouseError.Kind) -> Int {
        switch kind {
        case .invalid: 400
        case .unauthorized: 401
        case .forbidden: 403
        case .notFound: 404
        case .conflict: 409
        case .tooLarge: 413
        case .unprocessable: 422
        case .tooManyRequests: 429
        case .unavailable: 503
        }
    }

    static func title(for status: Int) -> String {
        switch status {
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 413: "Content Too Large"
        case 415: "Unsupported Media Type"
        case 422: "Unprocessable Content"
        case 429: "Too Many Requests"
        case 503: "Service Unavailable"
        case 500: "Internal Server Error"
        default: "Error"
        }
    }

    func response() -> Response {
        Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// The problem document (RFC 9457).
    var body: Data {
        var object: [String: Any] = ["type": "https://gatehouse.dev/problems/\(code)", "title": Problem.title(for: status),
                                     "status": status, "detail": detail, "code": code]
        if let field { object["field"] = field }
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    }

    var headers: HTTPFields {
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        if status == 401 { headers[.wwwAuthenticate] = "Bearer" }
        if status == 503 { headers[.retryAfter] = "5" }
        if let refusal {
            headers[.retryAfter] = "\(refusal.retryAfterSeconds)"
            headers[HTTPField.Name("RateLimit-Policy")!] = refusal.policyField
            headers[HTTPField.Name("RateLimit")!] = refusal.rateLimitField
        }
        return headers
    }
}

/// The outermost layer: every answer carries `X-Request-Id` (the id in the log lines about the
/// request, `request_id`), and is counted and timed by the route the router matched (or, for a method
/// the path does not take, the route of that path: a 405 is not a missing page).
struct ObservabilityMiddleware: RouterMiddleware {
    typealias Context = GatehouseRequestContext
    let metrics: GatehouseMetrics
    let logger: Logger
    let table: RouteTable

    static let requestIDHeader = HTTPField.Name("X-Request-Id")!

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        var context = context
        let id = context.id
        context.logger[metadataKey: "request_id"] = .string(id)
        do {
            var response = try await next(request, context)
            response.headers[Self.requestIDHeader] = id
            record(request, context, status: Int(response.status.code), since: started)
            return response
        } catch {
            // The problem layer answers every error; what still escapes is the server's own failure.
            let status = (error as? any HTTPResponseError).map { Int($0.status.code) } ?? 500
            record(request, context, status: status, since: started)
            throw error
        }
    }

    private func record(_ request: Request, _ context: Context, status: Int, since started: ContinuousClock.Instant) {
        let route = context.endpointPath
            ?? (status == 405 ? table.template(for: RequestInfoMiddleware.routedPath(request.uri.path)) : nil)
            ?? "NotFound"
        metrics.httpRequest(route: route, method: request.method.rawValue, status: status, duration: ContinuousClock.now - started)
        context.logger.debug("answered", metadata: ["method": "\(request.method.rawValue)", "route": "\(route)", "status": "\(status)"])
    }
}

/// The type of a query parameter whose values the generated layer reads itself.
enum QueryParameterKind: String, Sendable {
    case integer, boolean

    init?(_ type: Any.Type) {
        if type is any FixedWidthInteger.Type {
            self = .integer
        } else if type == Bool.self {
            self = .boolean
        } else {
            return nil
        }
    }

    /// Whether a value reads as this type, as the generated layer reads it.
    func reads(_ value: String) -> Bool {
        switch self {
        case .integer: return Int64(value) != nil
        case .boolean: return Bool(value) != nil
        }
    }
}
