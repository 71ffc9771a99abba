import AsyncHTTPClient
import Foundation
import GatehouseAPI
import HTTPTypes
import NIOCore
import NIOPosix
import OpenAPIAsyncHTTPClient
import OpenAPIRuntime

extension Client {
    /// The client generated from openapi.yaml, for the Gatehouse server at `serverURL`, speaking as the
    /// holder of `token`. Dates are read and written as the server does (RFC 3339, milliseconds).
    /// With `problems: .thrown` an answer that is not 2xx is thrown as `GatehouseProblem` (what the CLI
    /// and the benchmark want); with `.returned` it comes back as the operation's typed output (what a
    /// test that checks a refusal wants). `observers` see each exchange as it went over the wire.
    public static func gatehouse(_ serverURL: URL, token: String?, httpClient: HTTPClient = .shared,
                                 timeout: TimeAmount = .seconds(60), problems: ProblemHandling = .thrown,
                                 observers: [any ClientMiddleware] = []) -> Client {
        var middlewares: [any ClientMiddleware] = [EmptyNameRefused()]
        if let token { middlewares.append(BearerToken(token: token)) }
        middlewares.append(AnswerCheck(throwsProblems: problems == .thrown))
        middlewares += observers
        return Client(serverURL: serverURL,
                      configuration: .init(dateTranscoder: PreciseDateTranscoder()),
                      transport: AsyncHTTPClientTransport(configuration: .init(client: httpClient, timeout: timeout)),
                      middlewares: middlewares)
    }
}

public enum ProblemHandling: Sendable {
    case thrown, returned
}

/// An answer that is not 2xx, as the server explained it (RFC 9457 problem details).
public struct GatehouseProblem: Error, Sendable, CustomStringConvertible {
    public var status: Int
    public var code: String
    public var detail: String
    public var field: String?
    /// The answer's body as sent, for `--output json`.
    public var body: Data

    public var description: String { detail + (field.map { " (field: \($0))" } ?? "") }
}

/// An answer that is not Gatehouse's JSON at all: GATEHOUSE_URL points at something else.
public struct NotGatehouse: Error, Sendable {
    public var status: Int
    public var contentType: String
}

/// The error an operation failed with, as its caller should see it: the generated client wraps
/// everything it throws in `ClientError`; the problem or the connection failure inside is what matters.
public func gatehouseCause(_ error: any Error) -> any Error {
    guard let wrapped = error as? ClientError else { return error }
    let cause = wrapped.underlyingError
    if cause is GatehouseProblem || cause is NotGatehouse || cause is EmptyName { return cause }
    // The connection failed, also while the body was being read after the headers: not a mismatch.
    if cause is HTTPClientError || cause is IOError || cause is ChannelError || cause is NIOConnectionError { return cause }
    if wrapped.underlyingError is DecodingError || wrapped.response != nil {
        return AnswerMismatch(operation: wrapped.operationID, cause: "\(wrapped.underlyingError)")
    }
    return wrapped.underlyingError
}

/// A 2xx answer the contract does not describe: client and server disagree about openapi.yaml.
public struct AnswerMismatch: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var cause: String
    public var description: String { "the answer to \(operation) does not match openapi.yaml: \(cause)" }
}

/// An id or name left empty (`approve ""`) would make a path with an empty segment, which reaches
/// another operation (`/v1/requests//approve` is read as `/v1/requests/approve`): refused before it is sent.
public struct EmptyName: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var description: String { "an id or name is empty; give the request, grant, token or principal the command is about" }
}

struct EmptyNameRefused: ClientMiddleware {
    func intercept(_ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
                   next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)) async throws -> (HTTPResponse, HTTPBody?) {
        let path = request.path.map { $0.prefix { $0 != "?" } } ?? ""
        if path.contains("//") || (path.count > 1 && path.hasSuffix("/")) { throw EmptyName(operation: operationID) }
        return try await next(request, body, baseURL)
    }
}

struct BearerToken: ClientMiddleware {
    let token: String

    func intercept(_ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
                   next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)) async throws -> (HTTPResponse, HTTPBody?) {
        var request = request
        request.headerFields[.authorization] = "Bearer \(token)"
        return try await next(request, body, baseURL)
    }
}

/// Names answers that are not Gatehouse's, and (optionally) turns problem answers into errors.
struct AnswerCheck: ClientMiddleware {
    let throwsProblems: Bool
    static let limit = 16 * 1024 * 1024

    func intercept(_ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
                   next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)) async throws -> (HTTPResponse, HTTPBody?) {
        var (response, answer) = try await next(request, body, baseURL)
        let type = response.headerFields[.contentType]?.lowercased() ?? ""
        let ok = (200..<300).contains(response.status.code)
        if let body = answer, !type.contains("json") {
            let data = try await Data(collecting: body, upTo: Self.limit)
            if !data.isEmpty { throw NotGatehouse(status: response.status.code, contentType: type) }
            answer = nil
        }
        guard !ok, throwsProblems else { return (response, answer) }
        // A refusal with no body (a 401 or 502 from a proxy in front) is still a refusal with its status.
        let data = answer == nil ? Data() : try await Data(collecting: answer!, upTo: Self.limit)
        let problem = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        // JSON without a problem's detail is another server's (`{"message": "Unauthorized"}`), not printed as Gatehouse's.
        guard data.isEmpty || problem["detail"] is String else { throw NotGatehouse(status: response.status.code, contentType: type) }
        throw GatehouseProblem(status: response.status.code, code: problem["code"] as? String ?? "",
                               detail: problem["detail"] as? String
                                   ?? "the server answered HTTP \(response.status.code) without a body; Gatehouse always explains, so this is a proxy in front of it or another server: check GATEHOUSE_URL",
                               field: problem["field"] as? String, body: data)
    }
}
