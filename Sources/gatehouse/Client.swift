import ArgumentParser
import AsyncHTTPClient
import Foundation
import GatehouseAPI
import GatehouseClient
import GatehouseCore
import NIOCore
import NIOPosix
import Synchronization

/// The CLI's way to the Gatehouse REST API: the client generated from openapi.yaml (`GatehouseClient`),
/// after a quick check that the server's address answers at all, with every failure said as one line.
struct APIClient {
    let baseURL: String
    let token: String?
    /// How long the server's address may take to accept a connection and answer its first question; nil:
    /// GATEHOUSE_CONNECT_TIMEOUT (shell completion sets a shorter one of its own).
    var connectTimeout: TimeAmount?

    /// GATEHOUSE_CONNECT_TIMEOUT: whole seconds from 1 to 300 (a slow link, a busy server), 5 when unset or
    /// empty; nil for a value that is not one.
    static func connectSeconds(setting: String?) -> Int? {
        guard let setting = setting?.trimmingCharacters(in: .whitespacesAndNewlines), !setting.isEmpty else { return 5 }
        guard let seconds = Int(setting), (1...300).contains(seconds) else { return nil }
        return seconds
    }

    /// The wait GATEHOUSE_CONNECT_TIMEOUT sets, or a usage error that says what is wrong with it.
    static func configuredConnectTimeout() throws -> TimeAmount {
        let setting = ProcessInfo.processInfo.environment["GATEHOUSE_CONNECT_TIMEOUT"]
        guard let seconds = connectSeconds(setting: setting) else {
            throw CLIError.usage("GATEHOUSE_CONNECT_TIMEOUT '\(setting ?? "")' is not a number of seconds from 1 to 300; set it like 30, or unset it for 5")
        }
        return .seconds(Int64(seconds))
    }

    /// Runs operations of the generated client; an answer that is not 2xx is thrown as `CLIError.api`
    /// (with the problem's detail and field), anything else that goes wrong as a `CLIError.failure`.
    func run<T>(_ operations: (Client) async throws -> T) async throws -> T {
        let trimmed = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        let components = URLComponents(string: trimmed)
        guard let url = components?.url, components?.scheme == "http" || components?.scheme == "https", components?.host != nil else {
            throw CLIError.usage("the server URL '\(baseURL)' (from --url or GATEHOUSE_URL) is not an http(s) URL; give it like http://127.0.0.1:8080")
        }
        try await Self.reach(components, baseURL: baseURL, within: try connectTimeout ?? Self.configuredConnectTimeout())
        do {
            return try await operations(Client.gatehouse(url, token: token))
        } catch let error as CLIError {
            throw error
        } catch {
            throw Self.said(gatehouseCause(error), baseURL: baseURL)
        }
    }

    /// A failure of one operation, as people read it.
    static func said(_ error: any Error, baseURL: String) -> CLIError {
        switch error {
        case let problem as GatehouseProblem:
            return .api(status: problem.status, code: problem.code, message: problem.description, body: problem.body)
        case let other as NotGatehouse:
            return .failure("the answer from \(baseURL) is not Gatehouse's (HTTP \(other.status), \(other.contentType.isEmpty ? "no content type" : other.contentType)); check GATEHOUSE_URL")
        case let empty as EmptyName:
            return .usage(empty.description)
        case let mismatch as AnswerMismatch:
            return .failure("\(mismatch); is this gatehouse the same version as the server at \(baseURL)?")
        case let cli as CLIError:
            return cli
        case is IOError, is NIOConnectionError, is ChannelError, is HTTPClientError:
            return .failure("cannot reach Gatehouse at \(baseURL): \(plain(error)); is `gatehouse serve` running and GATEHOUSE_URL right?")
        default:
            return .failure("unexpected answer from \(baseURL): \(error)")
        }
    }

    /// Whether the server's address takes a connection, within a few seconds: an HTTP client retries a
    /// refused connection until its request's deadline (a minute, for long polls), so this is asked
    /// first, once per run (and again by a wait whose poll was answered early: the server may be stopping).
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
        } catch {
            throw CLIError.failure("cannot reach Gatehouse at \(baseURL): \(plain(error, within: connectTimeout)); is `gatehouse serve` running and GATEHOUSE_URL right?")
        }
        // An address that takes connections but gives no HTTP answer (another kind of server, https asked of
        // a plain-http server or the other way round) is said as quickly, not after a long poll's minute.
        guard let probe = components?.url?.appendingPathComponent("healthz").absoluteString else { return }
        do {
            _ = try await HTTPClient.shared.execute(HTTPClientRequest(url: probe), timeout: connectTimeout)
            reached.withLock { $0 = true }
        } catch {
            let tls = String(reflecting: type(of: error)).contains("NIOSSL") || "\(error)".contains("SSL")
            throw CLIError.failure(tls
                ? "no TLS connection with \(baseURL) (the handshake failed); does the server speak \(components?.scheme == "https" ? "plain http" : "https")? check GATEHOUSE_URL"
                : "\(baseURL) takes connections but gave no HTTP answer within \(Self.said(connectTimeout)); is it the Gatehouse server, and GATEHOUSE_URL right?")
        }
    }

    static let reached = Mutex(false)

    /// "5 seconds", "1 second", "0.7 seconds".
    static func said(_ amount: TimeAmount) -> String {
        let milliseconds = amount.nanoseconds / 1_000_000
        if milliseconds % 1000 == 0 { return milliseconds == 1000 ? "1 second" : "\(milliseconds / 1000) seconds" }
        return "\(Double(milliseconds) / 1000) seconds"
    }

    /// The next run asks again whether the address answers: a wait that polls for minutes then learns
    /// within seconds that the server stopped, instead of after the HTTP client's minute of retries.
    static func askAgain() { reached.withLock { $0 = false } }

    /// A connection error as people say it.
    /// `within`: the connect timeout in force, when it is this run's own (else the HTTP client's).
    static func plain(_ error: any Error, within: TimeAmount? = nil) -> String {
        let timedOut = within.map { "no answer within \(said($0))" } ?? "no answer in time"
        if let io = error as? IOError {
            switch io.errnoCode {
            case ECONNREFUSED: return "connection refused"
            case ETIMEDOUT: return timedOut
            case EHOSTUNREACH, ENETUNREACH: return "no route to the host"
            default: return io.description
            }
        }
        if let failure = error as? NIOConnectionError {
            if failure.dnsAAAAError != nil || failure.dnsAError != nil, failure.connectionErrors.isEmpty { return "the host name cannot be resolved" }
            if let first = failure.connectionErrors.first?.error { return plain(first, within: within) }
        }
        if error is ChannelError, case .connectTimeout = error as! ChannelError { return timedOut }
        if let client = error as? HTTPClientError {
            if client == .connectTimeout { return timedOut }
            if client == .deadlineExceeded { return "no answer within a minute" }
        }
        return "\(error)"
    }
}

enum CLIError: Error {
    case usage(String)
    case failure(String)
    case api(status: Int, code: String, message: String, body: Data)
    /// An outcome that is not an error but has its own exit code (3 approval required, 4 denied).
    case outcome(code: Int32)

    /// A 2xx answer the command did not expect from the operation (the contract allows it, the command does not know it).
    static func unexpected(_ output: Any) -> CLIError {
        .failure("unexpected answer from the server: \(output)")
    }
}

extension Action {
    /// The action in the API's shape.
    var input: Components.Schemas.ActionInput {
        .init(kind: kind == .sql ? .sql : .shell, text: text)
    }
}

extension ValidationError {
    /// `--limit` as the API takes it (a usage error, exit 2, rather than the server's 400).
    static func checkLimit(_ limit: Int, maximum: Int = 1_000) throws {
        guard (1...maximum).contains(limit) else { throw ValidationError("--limit is from 1 to \(maximum); got \(limit)") }
    }
}
