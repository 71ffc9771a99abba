import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A thin JSON client for the Gatehouse REST API.
struct APIClient {
    let baseURL: String
    let token: String?
    /// How long the server's address may take to accept a connection (shell completion waits less).
    var connectTimeout: TimeAmount = .seconds(5)

    struct Response {
        var status: Int
        var body: Data
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
    }

    func send(_ method: HTTPMethod, _ path: String, query: [String: String?] = [:], body: [String: Any?]? = nil) async throws -> Response {
        var components = URLComponents(string: baseURL.hasSuffix("/") ? String(baseURL.dropLast()) + path : baseURL + path)
        let items = query.compactMap { key, value in value.map { URLQueryItem(name: key, value: $0) } }
        if !items.isEmpty { components?.queryItems = items.sorted { $0.name < $1.name } }
        guard let url = components?.string, components?.scheme == "http" || components?.scheme == "https" else {
            throw CLIError.usage("GATEHOUSE_URL '\(baseURL)' is not an http(s) URL; set it like http://127.0.0.1:8080")
        }
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Accept", value: "application/json")
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body {
            let data = try JSONSerialization.data(withJSONObject: body.compactMapValues { $0 })
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: data))
        }
        try await Self.reach(components, baseURL: baseURL, within: connectTimeout)
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        } catch {
            throw CLIError.failure("cannot reach Gatehouse at \(baseURL): \(Self.plain(error)); is `gatehouse serve` running and GATEHOUSE_URL right?")
        }
        let buffer = try await response.body.collect(upTo: 64 * 1024 * 1024)
        let type = response.headers.first(name: "content-type")?.lowercased() ?? ""
        if buffer.readableBytes > 0, !type.contains("json") {
            throw CLIError.failure("the answer from \(baseURL) is not Gatehouse's (HTTP \(response.status.code), \(type.isEmpty ? "no content type" : type)); check GATEHOUSE_URL")
        }
        return Response(status: Int(response.status.code), body: Data(buffer: buffer))
    }

    /// Whether the server's address takes a connection, within a few seconds: an HTTP client retries a
    /// refused connection until its request's deadline (a minute, for long polls), so this is asked
    /// first, once per run.
    static func reach(_ components: URLComponents?, baseURL: String, within connectTimeout: TimeAmount) async throws {
        guard !reached.withLock({ $0 }), var host = components?.host else { return }
        // URLComponents keeps an IPv6 literal's brackets; a socket address has none.
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let port = components?.port ?? (components?.scheme == "https" ? 443 : 80)
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(connectTimeout)
                .connect(host: host, port: port).get()
            try? await channel.close()
            reached.withLock { $0 = true }
        } catch {
            throw CLIError.failure("cannot reach Gatehouse at \(baseURL): \(plain(error)); is `gatehouse serve` running and GATEHOUSE_URL right?")
        }
    }

    static let reached = Mutex(false)

    /// A connection error as people say it.
    static func plain(_ error: any Error) -> String {
        if let io = error as? IOError {
            switch io.errnoCode {
            case ECONNREFUSED: return "connection refused"
            case ETIMEDOUT: return "no answer within 5 seconds"
            case EHOSTUNREACH, ENETUNREACH: return "no route to the host"
            default: return io.description
            }
        }
        if let failure = error as? NIOConnectionError {
            if failure.dnsAAAAError != nil || failure.dnsAError != nil, failure.connectionErrors.isEmpty { return "the host name cannot be resolved" }
            if let first = failure.connectionErrors.first?.error { return plain(first) }
        }
        if error is ChannelError, case .connectTimeout = error as! ChannelError { return "no answer within 5 seconds" }
        if let client = error as? HTTPClientError {
            if client == .connectTimeout { return "no answer within 5 seconds" }
            if client == .deadlineExceeded { return "no answer within a minute" }
        }
        return "\(error)"
    }

    /// Sends and returns the JSON object of a 2xx answer; anything else becomes a CLIError carrying the problem detail.
    func call(_ method: HTTPMethod, _ path: String, query: [String: String?] = [:], body: [String: Any?]? = nil) async throws -> (Response, [String: Any]) {
        let response = try await send(method, path, query: query, body: body)
        guard (200..<300).contains(response.status) else { throw Self.failure(response) }
        return (response, response.json)
    }

    /// The error an answer that is not 2xx stands for, carrying its problem detail.
    static func failure(_ response: Response) -> CLIError {
        let problem = response.json
        let detail = problem["detail"] as? String ?? String(decoding: response.body, as: UTF8.self)
        let field = (problem["field"] as? String).map { " (field: \($0))" } ?? ""
        return CLIError.api(status: response.status, code: problem["code"] as? String ?? "", message: "\(detail)\(field)", body: response.body)
    }
}

enum CLIError: Error {
    case usage(String)
    case failure(String)
    case api(status: Int, code: String, message: String, body: Data)
    /// An outcome that is not an error but has its own exit code (3 approval required, 4 denied).
    case outcome(code: Int32)
}
