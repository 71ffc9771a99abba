import ArgumentParser
import Foundation
import GatehouseAPI
import GatehouseClient
import GatehouseCore
#if canImport(Glibc)
import Glibc
#endif

/// The CLI's sign-in session: kept in the user's config folder (XDG), readable by the user only,
/// and used when neither --token nor GATEHOUSE_TOKEN is given, for the server it came from only.
struct SessionFile: Codable {
    var url: String
    var token: String
    var principal: String
    var expiresAt: Date

    static var path: String {
        let env = ProcessInfo.processInfo.environment
        let base = env["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ((env["HOME"] ?? NSHomeDirectory()) + "/.config")
        return base + "/gatehouse/session.json"
    }

    static func load() -> SessionFile? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try? decoder.decode(SessionFile.self, from: data)
    }

    func save() throws {
        let folder = (Self.path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        let data = try encoder.encode(self)
        // Created 0600 before the secret is written into it.
        let fd = open(Self.path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw CLIError.failure("cannot write \(Self.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        fchmod(fd, 0o600)
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == data.count else { throw CLIError.failure("cannot write \(Self.path)") }
    }

    static func remove() { try? FileManager.default.removeItem(atPath: path) }

    static func sameServer(_ a: String, _ b: String) -> Bool {
        func norm(_ s: String) -> String { s.hasSuffix("/") ? String(s.dropLast()).lowercased() : s.lowercased() }
        return norm(a) == norm(b)
    }
}

struct LoginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login", abstract: "Sign in through the identity provider from this terminal.",
        discussion: """
        Opens the provider's sign-in page in a browser (or prints its address) and receives the answer on \
        a one-time listener at http://127.0.0.1:PORT/callback (RFC 8252). The session Gatehouse issues is \
        kept in $XDG_CONFIG_HOME/gatehouse/session.json (mode 0600) and used by every command until it \
        ends; `gatehouse logout` ends it sooner. Service accounts keep using GATEHOUSE_TOKEN.
        """)

    @Option(name: .long, help: "Gatehouse server URL (default: $GATEHOUSE_URL or http://127.0.0.1:8080).") var url: String?
    @Flag(help: "Do not try to open a browser; only print the address.") var noBrowser = false
    @Flag(help: "Sign in from another device (a phone, your laptop) with a code: for terminals without a browser (RFC 8628).") var device = false
    @Option(help: "Give up after this long.") var timeout: String = "10m"
    @Option(name: .long, help: "Output format: table or json.") var output: OutputFormat = .table

    func run() async throws {
        let limit: TimeSpan
        do { limit = try TimeSpan.parse(timeout) } catch { throw ValidationError("--timeout: \(error.description)") }
        let baseURL = url ?? ProcessInfo.processInfo.environment["GATEHOUSE_URL"] ?? "http://127.0.0.1:8080"
        let client = APIClient(baseURL: baseURL, token: nil)
        if device {
            try finish(try await deviceSignIn(client, limit: limit), baseURL: baseURL)
            return
        }
        let listener = try LoopbackListener()
        defer { listener.close() }
        let redirect = "http://127.0.0.1:\(listener.port)/callback"
        let started = try await client.run { try await $0.startLogin(body: .json(.init(redirectUri: redirect))).created.body.json }
        let authorizationURL = started.authorizationUrl
        let state = started.state
        FileHandle.standardError.write(Data("To sign in, open this address in a browser:\n\n  \(authorizationURL)\n\nWaiting for the provider (up to \(limit))...\n".utf8))
        if !noBrowser { Self.openBrowser(authorizationURL) }
        let answer = try await listener.awaitCallback(state: state, timeout: TimeInterval(limit.seconds))
        if let error = answer["error"] {
            throw CLIError.failure("the identity provider did not sign you in: \(Output.safe(error))\(answer["error_description"].map { " (\(Output.safe($0)))" } ?? "")")
        }
        guard answer["state"] == state, let code = answer["code"] else {
            throw CLIError.failure("the answer that reached this terminal belongs to another sign-in; run `gatehouse login` again")
        }
        let session = try await client.run {
            try await $0.completeLogin(body: .json(.init(state: state, code: code, loginSecret: started.loginSecret))).created.body.json
        }
        try finish(session, baseURL: baseURL)
    }

    /// The device grant: show the code and where to enter it, then poll until the person is signed in.
    func deviceSignIn(_ client: APIClient, limit: TimeSpan) async throws -> Components.Schemas.LoginSession {
        let answer = try await client.run { try await $0.startDeviceLogin().created.body.json }
        let started = Output.object(answer)
        let secret = answer.deviceSecret
        var interval = max(1, answer.interval)
        let complete = Output.string(started, "verification_uri_complete")
        FileHandle.standardError.write(Data("""
            To sign in, open this address on any device:

              \(Output.string(started, "verification_uri"))

            and enter the code \(Output.string(started, "user_code"))\(complete.isEmpty ? "" : "\n(or open \(complete) directly)")

            Waiting (up to \(limit))...

            """.utf8))
        let deadline = Date().addingTimeInterval(TimeInterval(limit.seconds))
        while Date() < deadline {
            try await Task.sleep(for: .seconds(interval))
            let poll = try await client.run { try await $0.pollDeviceLogin(body: .json(.init(deviceSecret: secret))) }
            switch poll {
            case .created(let signedIn): return try signedIn.body.json
            case .ok(let waiting):
                if try waiting.body.json.status == .slowDown { interval += 5 }
            case let other: throw CLIError.unexpected(other)
            }
        }
        throw CLIError.failure("nobody entered the code within the time allowed; run `gatehouse login --device` again")
    }

    func finish(_ session: Components.Schemas.LoginSession, baseURL: String) throws {
        let file = SessionFile(url: baseURL, token: session.token, principal: session.principal, expiresAt: session.expiresAt)
        try file.save()
        if output == .json {
            var shown = Output.object(session)
            shown["token"] = nil
            Output.json(try JSONSerialization.data(withJSONObject: shown, options: [.sortedKeys]))
        } else {
            print("signed in as \(file.principal) (\(session.groups.joined(separator: ", "))) until \(session.expiresAt.rfc3339); the session is kept in \(SessionFile.path)")
        }
    }

    static func openBrowser(_ url: String) {
        for opener in ["/usr/bin/xdg-open", "/usr/bin/open"] where FileManager.default.isExecutableFile(atPath: opener) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: opener)
            process.arguments = [url]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try? process.run()
            return
        }
    }
}

struct LogoutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logout", abstract: "End this terminal's sign-in session, on the server too.")
    @Option(name: .long, help: "Output format: table or json.") var output: OutputFormat = .table

    func run() async throws {
        guard let session = SessionFile.load() else {
            if output == .json { Output.json(Data(#"{"signed_out":null}"#.utf8)) } else { print("not signed in") }
            return
        }
        let client = APIClient(baseURL: session.url, token: session.token)
        do {
            _ = try await client.run { try await $0.logout() }
        } catch CLIError.api(let status, _, _, _) where status == 401 {
            // Already ended on the server.
        }
        SessionFile.remove()
        if output == .json {
            Output.json(try JSONSerialization.data(withJSONObject: ["signed_out": session.principal]))
        } else {
            print("signed out \(session.principal)")
        }
    }
}

struct SessionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessions", abstract: "Sign-in sessions (admins).",
        subcommands: [List.self, Revoke.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List live sessions, newest first.")
        @OptionGroup var options: ClientOptions

        func run() async throws {
            let list = try await options.client().run { try await $0.listSessions().ok.body.json }
            try options.show(list) { body in
                let rows = (body["sessions"] as? [[String: Any]] ?? []).map { s in
                    ["id", "principal", "created_at", "expires_at"].map { Output.string(s, $0) } + [(s["groups"] as? [String] ?? []).joined(separator: ",")]
                }
                Output.table(["id", "principal", "signed in", "ends", "groups"], rows)
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "End every token and session of a principal, for good.")
        @Argument(help: "The principal.") var name: String
        @OptionGroup var options: ClientOptions

        func run() async throws {
            let revoked = try await options.client().run { try await $0.revokeSessions(path: .init(name: name)).ok.body.json }
            try options.show(revoked) { body in print("ended \(Output.string(body, "ended")) token(s) and session(s) of \(name)") }
        }
    }
}

/// A one-time HTTP listener on 127.0.0.1 for the provider's redirect (RFC 8252 §7.3). It answers
/// the browser with a short page and hands the query of `/callback` to the caller.
final class LoopbackListener: @unchecked Sendable {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CLIError.failure("cannot open a local listener for the sign-in: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 8) == 0 else {
            Glibc.close(fd)
            throw CLIError.failure("cannot listen on 127.0.0.1 for the sign-in: \(String(cString: strerror(errno)))")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        self.fd = fd
        port = Int(UInt16(bigEndian: actual.sin_port))
    }

    func close() { Glibc.close(fd) }

    /// Waits for `GET /callback?...` carrying this sign-in's state and returns its query; other paths,
    /// and callbacks with another state (another local process), are answered and ignored.
    func awaitCallback(state: String, timeout: TimeInterval) async throws -> [String: String] {
        let fd = self.fd
        return try await Task.detached {
            let deadline = Date().addingTimeInterval(timeout)
            while true {
                let remaining = deadline.timeIntervalSinceNow
                guard remaining > 0 else { throw CLIError.failure("no answer from the identity provider within the time allowed; run `gatehouse login` again") }
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, Int32(min(remaining, 1) * 1000)) > 0 else { continue }
                let connection = accept(fd, nil, nil)
                guard connection >= 0 else { continue }
                defer { Glibc.close(connection) }
                // The browser sends its request at once: 5 s for the whole head, however it trickles in (one
                // connection at a time, so another local process must not be able to hold the listener).
                let headDeadline = Date().addingTimeInterval(5)
                var received = [UInt8]()
                var chunk = [UInt8](repeating: 0, count: 4096)
                while received.count < 16_384 {
                    // Waits for bytes at most until the deadline (a connection that sends nothing included).
                    let left = Int32(max(0, min(5_000, headDeadline.timeIntervalSinceNow * 1000)))
                    guard left > 0 else { break }
                    var ready = pollfd(fd: connection, events: Int16(POLLIN), revents: 0)
                    let polled = poll(&ready, 1, left)
                    if polled < 0, errno == EINTR { continue }
                    guard polled > 0 else { break }
                    let n = recv(connection, &chunk, chunk.count, 0)
                    if n < 0, errno == EINTR { continue }
                    if n <= 0 { break }
                    received += chunk[0..<n]
                    if received.suffix(4) == [13, 10, 13, 10] || String(decoding: received, as: UTF8.self).contains("\r\n\r\n") { break }
                }
                let firstLine = String(decoding: received, as: UTF8.self).split(separator: "\r\n").first.map(String.init) ?? ""
                let parts = firstLine.split(separator: " ")
                guard parts.count >= 2, parts[0] == "GET", let components = URLComponents(string: String(parts[1])), components.path == "/callback" else {
                    Self.respond(connection, status: "404 Not Found", text: "Not found.")
                    continue
                }
                var query: [String: String] = [:]
                for item in components.queryItems ?? [] { query[item.name] = item.value ?? "" }
                guard query["state"] == state else {
                    Self.respond(connection, status: "400 Bad Request", text: "Gatehouse: this answer belongs to another sign-in.")
                    continue
                }
                Self.respond(connection, status: "200 OK", text: query["error"] == nil
                             ? "Gatehouse: you can close this tab and return to the terminal."
                             : "Gatehouse: the sign-in did not complete; see the terminal.")
                return query
            }
        }.value
    }

    static func respond(_ connection: Int32, status: String, text: String) {
        let body = "<!doctype html><meta charset=utf-8><title>Gatehouse</title><p>\(text)</p>"
        let response = "HTTP/1.1 \(status)\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n\(body)"
        _ = response.withCString { send(connection, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    }
}
