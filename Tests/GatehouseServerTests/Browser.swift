import AsyncHTTPClient
import Foundation
import GatehouseCore
import NIOCore
import NIOHTTP1
import Testing

/// A browser's view of the inbox over plain HTTP: cookies by hand, redirects not followed.
struct Browser {
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.connectionPool = .init(idleTimeout: .seconds(5))   // below the server's 30 s (see TestHTTP)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    let baseURL: String
    var cookies: [String: String] = [:]

    struct Page {
        var status: Int
        var headers: HTTPHeaders
        var html: String
        var location: String? { headers.first(name: "Location") }
        /// The value of the first hidden `csrf` field.
        var csrf: String? {
            guard let range = html.range(of: #"name="csrf" value=""#) else { return nil }
            return String(html[range.upperBound...].prefix { $0 != "\"" })
        }
    }

    mutating func get(_ path: String) async throws -> Page {
        try await send(.GET, path, form: nil)
    }

    mutating func post(_ path: String, _ form: [(String, String)], headers: [(String, String)] = []) async throws -> Page {
        try await send(.POST, path, form: form, headers: headers)
    }

    /// A form body as given, unencoded by the browser (to send what no browser would).
    mutating func post(_ path: String, rawForm: String, contentType: String = "application/x-www-form-urlencoded") async throws -> Page {
        try await send(.POST, path, form: nil, rawForm: rawForm, rawType: contentType)
    }

    mutating func send(_ method: HTTPMethod, _ path: String, form: [(String, String)]?, rawForm: String? = nil,
                       rawType: String = "application/x-www-form-urlencoded", headers: [(String, String)] = []) async throws -> Page {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if !cookies.isEmpty { request.headers.add(name: "Cookie", value: cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")) }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let form {
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~")
            let body = form.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }.joined(separator: "&")
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            request.body = .bytes(ByteBuffer(string: body))
        }
        if let rawForm {
            request.headers.add(name: "Content-Type", value: rawType)
            request.body = .bytes(ByteBuffer(string: rawForm))
        }
        let response = try await Self.client.execute(request, timeout: .seconds(30))
        for header in response.headers["Set-Cookie"] {
            let pair = header.split(separator: ";")[0].split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard pair.count == 2 else { continue }
            if pair[1].isEmpty || header.contains("Max-Age=0") { cookies[String(pair[0])] = nil } else { cookies[String(pair[0])] = String(pair[1]) }
        }
        let body = try await response.body.collect(upTo: 4 * 1024 * 1024)
        return Page(status: Int(response.status.code), headers: response.headers, html: String(buffer: body))
    }

    /// Signs in through the form, as a browser would.
    mutating func signIn(_ token: String) async throws -> Page {
        let form = try await get("/sign-in")
        return try await post("/sign-in", [("csrf", form.csrf ?? ""), ("token", token)])
    }
}
