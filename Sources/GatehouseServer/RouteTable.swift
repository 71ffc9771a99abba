import HTTPTypes
import Hummingbird
import NIOCore
import OpenAPIHummingbird
import OpenAPIRuntime
import Synchronization

/// The API's operations as the generated layer registers them (method and path template), so a
/// request for a known path with another method is answered 405 with `Allow`, and a body that is not
/// JSON 415, as HTTP says, instead of a 404 or a 400.
final class RouteTable: Sendable {
    private struct Route: Sendable {
        var method: HTTPRequest.Method
        var segments: [Substring]
    }
    private let routes = Mutex<[Route]>([])

    func add(_ method: HTTPRequest.Method, _ path: String) {
        routes.withLock { $0.append(Route(method: method, segments: path.split(separator: "/"))) }
    }

    /// Every operation as method and path template.
    var all: [(method: HTTPRequest.Method, path: String)] {
        routes.withLock { $0.map { ($0.method, "/" + $0.segments.joined(separator: "/")) } }
    }

    /// The methods this path takes (HEAD with GET), or nil when no operation has this path.
    func methods(for path: String) -> [HTTPRequest.Method]? {
        let found = matching(path).map(\.method)
        guard !found.isEmpty else { return nil }
        return found.contains(.get) ? found + [.head] : found
    }

    /// The path template of the operations this path matches (`/v1/requests/{id}` for
    /// `/v1/requests/r-1`), whatever the method; nil when none does.
    func template(for path: String) -> String? {
        matching(path).first.map { "/" + $0.segments.joined(separator: "/") }
    }

    private func matching(_ path: String) -> [Route] {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        return routes.withLock { routes in
            routes.filter { route in
                route.segments.count == parts.count && zip(route.segments, parts).allSatisfy { template, part in
                    (template.hasPrefix("{") && template.hasSuffix("}") && !part.isEmpty) || template == part
                }
            }
        }
    }
}

/// Registers the generated handlers on the router and notes each operation in the table.
struct RecordingTransport: ServerTransport {
    let router: Router<GatehouseRequestContext>
    let table: RouteTable

    func register(_ handler: @Sendable @escaping (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?),
                  method: HTTPRequest.Method, path: String) throws {
        table.add(method, path)
        try router.register(handler, method: method, path: path)
    }
}

/// 405 with `Allow` for a known path asked with a method it does not take; 415 for a body that is not
/// JSON sent to an operation (every request body of the API is JSON).
struct ContractMiddleware: RouterMiddleware {
    typealias Context = GatehouseRequestContext
    let table: RouteTable

    static let hostProblem = HTTPField.Name(ConnectionPersistence.hostProblem)!

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let problem = request.headers[Self.hostProblem] {
            return Problem(status: 400, code: "bad_request",
                           detail: "an HTTP/1.1 request carries exactly one Host header (RFC 9112, 3.2); this one has \(problem). The connection is closed").response()
        }
        if let coding = request.headers[Self.transferProblem] {
            return Problem(status: 501, code: "transfer_coding_not_supported",
                           detail: "the body is sent with Transfer-Encoding `\(Problem.shown(coding))`; this server reads `chunked` alone (or a Content-Length). The connection is closed").response()
        }
        if request.headers[values: .authorization].count > 1 {
            return Problem(status: 400, code: "bad_header", detail: "the request carries the Authorization header more than once; send one, with your token").response()
        }
        // Content-Type is one media type; Accept is a list of them, each with its own parameters (a
        // browser's names `q` in several: `application/xml;q=0.9,*/*;q=0.8`).
        for name in [HTTPField.Name.contentType, .accept] {
            guard let value = request.headers[name] else { continue }
            let mediaTypes = name == .accept ? value.split(separator: ",") : [value[...]]
            if let repeated = mediaTypes.lazy.compactMap(Self.repeatedParameter).first {
                return Problem(status: 400, code: "bad_header",
                               detail: "the \(name.canonicalName) header names the parameter `\(repeated)` more than once (names are case-insensitive); send each parameter once").response()
            }
        }
        let path = RequestInfoMiddleware.routedPath(request.uri.path)
        guard path.hasPrefix("/v1/") || path == "/healthz" || path == "/readyz", let methods = table.methods(for: path) else {
            return try await next(request, context)
        }
        if let repeated = Self.repeatedQueryParameter(request.uri.query) {
            return Problem(status: 400, code: "duplicate_parameter",
                           detail: "the query gives `\(Problem.shown(repeated))` more than once; give it once").response()
        }
        guard methods.contains(request.method) else {
            let allow = methods.map(\.rawValue).joined(separator: ", ")
            var response = Problem(status: 405, code: "method_not_allowed",
                                   detail: "\(path) does not take \(request.method.rawValue); it takes \(allow) (see openapi.yaml)").response()
            response.headers[.allow] = allow
            return response
        }
        // The media type itself, not any that mentions JSON: the generated layer reads odd ones (`json`,
        // `*/*; a=json`, `application/merge-patch+json`) as JSON or refuses them in its own words.
        if [.post, .put, .patch].contains(request.method), Self.hasBody(request),
           request.headers[.contentType].map(Self.mediaType) != "application/json" {
            return Problem(status: 415, code: "unsupported_media_type",
                           detail: "send the body as JSON with `Content-Type: application/json`; got \(request.headers[.contentType].map { "`\($0)`" } ?? "no content type")").response()
        }
        // JSON is UTF-8 (RFC 8259): a body said to be in another encoding would be read as something it is not.
        if [.post, .put, .patch].contains(request.method), Self.hasBody(request),
           let charset = request.headers[.contentType].flatMap(Self.charset), charset != "utf-8", charset != "utf8" {
            return Problem(status: 415, code: "unsupported_media_type",
                           detail: "JSON bodies are UTF-8; this one says `charset=\(charset.prefix(40))`: send it as UTF-8 (`charset=utf-8`, or no charset)").response()
        }
        return try await next(request, context)
    }

    /// Query parameters the contract lets repeat (its array parameters: `GET /v1/audit/verify?anchor=...&anchor=...`).
    static let repeatableQueryParameters: Set<String> = ["anchor"]

    /// A query parameter given more than once (`?limit=1&limit=2`): which one the generated layer would take is not
    /// for the client to guess. Nil when none is.
    static func repeatedQueryParameter(_ query: String?) -> String? {
        guard let query else { return nil }
        var seen = Set<String>()
        for pair in query.split(separator: "&") {
            let raw = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0]
            let name = String(raw).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(raw)
            if !repeatableQueryParameters.contains(name), !seen.insert(name).inserted { return name }
        }
        return nil
    }

    static let transferProblem = HTTPField.Name(ConnectionPersistence.transferProblem)!

    /// A parameter named twice in one media type of a `Content-Type` or `Accept` value (`application/json;
    /// a=1; A=2`), its names read as the generated layer's runtime reads them (after each `;`, spaces
    /// trimmed, exactly one `=`-separated name and value). The runtime stops the whole process on
    /// such a value (it builds a dictionary of the lowercased names that must not repeat), so it is
    /// refused here, before any operation sees it.
    static func repeatedParameter(_ value: Substring) -> String? {
        var seen = Set<String>()
        for component in value.split(separator: ";").dropFirst() {
            let trimmed = component.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed()
            let parts = String(trimmed).split(separator: "=")
            guard parts.count == 2 else { continue }
            let name = parts[0].lowercased()
            if !seen.insert(name).inserted { return name }
        }
        return nil
    }

    /// `application/json` of `Application/JSON; charset=utf-8`.
    static func mediaType(_ value: String) -> String {
        (value.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? "").trimmingCharacters(in: .whitespaces).lowercased()
    }

    /// The `charset` parameter of a `Content-Type` value, lowercased and unquoted; nil when there is none.
    static func charset(_ value: String) -> String? {
        for component in value.split(separator: ";").dropFirst() {
            let parts = component.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, parts[0].lowercased() == "charset" else { continue }
            return String(parts[1].filter { $0 != "\"" }).lowercased()
        }
        return nil
    }

    static func hasBody(_ request: Request) -> Bool {
        if let length = request.headers[.contentLength] { return Int(length) ?? 1 > 0 }
        return request.headers[.transferEncoding] != nil
    }
}

/// A request without a body (no Content-Length and no Transfer-Encoding, or Content-Length: 0) reaches
/// the generated layer as one with no body, so an operation whose body is optional (approve)
/// takes it as such instead of reading zero bytes as JSON; one whose body is required says it is missing.
struct EmptyBodyIsNoBody: ServerMiddleware {
    func intercept(_ request: HTTPTypes.HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
                   next: @Sendable (HTTPTypes.HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPTypes.HTTPResponse, HTTPBody?))
        async throws -> (HTTPTypes.HTTPResponse, HTTPBody?) {
        let empty = request.headerFields[.contentLength].map { Int($0) == 0 } ?? (request.headerFields[.transferEncoding] == nil)
        return try await next(request, empty ? nil : body, metadata)
    }
}
