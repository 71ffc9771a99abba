import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// A thin JSON client for the Gatehouse REST API.
struct APIClient {
    let baseURL: String
    let token: String?

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
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        } catch {
            throw CLIError.failure("cannot reach Gatehouse at \(baseURL): \(error); is `gatehouse serve` running and GATEHOUSE_URL right?")
        }
        let buffer = try await response.body.collect(upTo: 64 * 1024 * 1024)
        return Response(status: Int(response.status.code), body: Data(buffer: buffer))
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
