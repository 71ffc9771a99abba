import GatehouseGuard
import NIOCore

/// The client's side of a connection up to the password: SSLRequest and GSSENCRequest answered,
/// CancelRequest recognised, the startup packet checked, the password asked for. A pure state
/// machine; the handler starts TLS, authenticates and connects to the database as it says.
public struct ClientSignIn: Sendable {
    public struct Settings: Sendable {
        /// The resource this listener serves; clients may name it, or the database, as `database`.
        public var resource: String
        public var upstreamDatabase: String
        public var tlsAvailable: Bool
        /// Whether this client may sign in without TLS (loopback, or `plaintext: allow`).
        public var plaintextAllowed: Bool

        public init(resource: String, upstreamDatabase: String, tlsAvailable: Bool, plaintextAllowed: Bool) {
            self.resource = resource
            self.upstreamDatabase = upstreamDatabase
            self.tlsAvailable = tlsAvailable
            self.plaintextAllowed = plaintextAllowed
        }
    }

    public enum Step: Sendable, Equatable {
        case send(ByteBuffer)
        /// Answer `S` and start TLS before reading anything more.
        case startTLS
        case authenticate(user: String, token: String, parameters: [(String, String)])
        case cancel(processID: Int32, secret: [UInt8])
        /// Send this FATAL error and close.
        case fail(ByteBuffer)

        public static func == (lhs: Step, rhs: Step) -> Bool {
            switch (lhs, rhs) {
            case let (.send(a), .send(b)), let (.fail(a), .fail(b)): a == b
            case (.startTLS, .startTLS): true
            case let (.authenticate(u1, t1, p1), .authenticate(u2, t2, p2)):
                u1 == u2 && t1 == t2 && p1.map { [$0.0, $0.1] } == p2.map { [$0.0, $0.1] }
            case let (.cancel(p1, s1), .cancel(p2, s2)): p1 == p2 && s1 == s2
            default: false
            }
        }
    }

    /// Startup parameters passed on to the database; the rest are refused (`options` and
    /// `replication` because they bypass statement checks, others because nobody checked them).
    public static let passedParameters: Set<String> = [
        "application_name", "datestyle", "timezone", "intervalstyle", "extra_float_digits", "search_path",
        "lc_monetary", "lc_numeric", "lc_time", "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
        // How the server plans and runs, not what a statement means (asyncpg's FAQ sets `jit` off at connection).
        "jit", "work_mem", "maintenance_work_mem", "temp_buffers", "plan_cache_mode", "idle_session_timeout",
        "default_transaction_isolation", "default_transaction_deferrable", "bytea_output",
    ]
    /// Client encodings under which every byte below 0x80 is ASCII, so the classifier reads the same
    /// statement as the server. (SJIS, BIG5, GBK, UHC and GB18030 are not.)
    public static let safeEncodings: Set<String> = ["utf8", "unicode", "sqlascii"]

    enum State: Sendable {
        case awaitingStartup
        case awaitingPassword(user: String, parameters: [(String, String)])
        case done
    }

    public let settings: Settings
    private var state = State.awaitingStartup
    public private(set) var isTLS = false

    public init(settings: Settings) {
        self.settings = settings
    }

    /// `pendingBytes`: bytes the client sent after this message that are already buffered.
    public mutating func receive(_ message: FrontendMessage, pendingBytes: Int) -> Step {
        switch (state, message) {
        case (.awaitingStartup, .sslRequest):
            guard !isTLS else { return .fail(Self.fatal("08P01", "SSLRequest after TLS has started")) }
            guard pendingBytes == 0 else {
                return .fail(Self.fatal("08P01", "the client sent data after its SSLRequest before the TLS handshake; it is not read"))
            }
            guard settings.tlsAvailable else { return .send(Self.byte("N")) }
            isTLS = true
            return .startTLS
        case (.awaitingStartup, .gssEncRequest):
            guard pendingBytes == 0 else { return .fail(Self.fatal("08P01", "the client sent data after its GSSENCRequest")) }
            return .send(Self.byte("N"))
        case let (.awaitingStartup, .cancel(processID, secret)):
            return .cancel(processID: processID, secret: secret)
        case let (.awaitingStartup, .startup(parameters)):
            return startup(parameters)
        case let (.awaitingPassword(user, parameters), .password(bytes)):
            state = .done
            var token = bytes
            if token.last == 0 { token.removeLast() }
            guard !token.isEmpty, !token.contains(0), let text = String(validating: token, as: UTF8.self) else {
                return .fail(Self.fatal("28P01", "password authentication failed for user \"\(user)\": the password must be a Gatehouse token"))
            }
            return .authenticate(user: user, token: text, parameters: parameters)
        case (.awaitingPassword, _):
            return .fail(Self.fatal("08P01", "expected a password message"))
        default:
            return .fail(Self.fatal("08P01", "unexpected message before sign-in"))
        }
    }

    private mutating func startup(_ parameters: StartupParameters) -> Step {
        guard isTLS || settings.plaintextAllowed else {
            let how = settings.tlsAvailable ? "connect with sslmode=require" : "this proxy has no TLS certificate, so it takes only loopback clients"
            return .fail(Self.fatal("28000", "Gatehouse does not accept a token over an unencrypted connection from this address; \(how)"))
        }
        guard let user = parameters["user"], !user.isEmpty else {
            return .fail(Self.fatal("28000", "no user name given: connect as your Gatehouse principal (user=NAME)"))
        }
        var passed: [(String, String)] = []
        var unrecognized: [String] = []
        for (key, value) in parameters.pairs {
            let name = key.lowercased()
            switch name {
            case "user":
                continue
            case "database":
                guard value == settings.resource || value == settings.upstreamDatabase || value == user else {
                    return .fail(Self.fatal("3D000", "database \"\(value)\" is not served here: this port is resource \(settings.resource); connect with dbname=\(settings.resource)"))
                }
            case "replication":
                guard ["false", "off", "no", "0"].contains(value.lowercased()) else {
                    return .fail(Self.fatal("28000", "replication connections are not allowed through Gatehouse"))
                }
            case "options":
                guard value.allSatisfy(\.isWhitespace) else {
                    return .fail(Self.fatal("28000", "startup options (\(value)) are refused: they would change settings without a check; use SET after connecting"))
                }
            case "search_path" where SearchPath.shadowsCatalog(SearchPath.entries(value)):
                return .fail(Self.fatal("28000", "search_path \(value) is refused: it puts pg_catalog after another schema, where Gatehouse could no longer read operators and functions as PostgreSQL's own; leave pg_catalog out of it (PostgreSQL then searches it first)"))
            case "client_encoding":
                let normalized = value.lowercased().filter { $0.isLetter || $0.isNumber }
                guard Self.safeEncodings.contains(normalized) else {
                    return .fail(Self.fatal("22023", "client_encoding \(value) is not accepted: Gatehouse reads statements as UTF-8; set PGCLIENTENCODING=UTF8"))
                }
            default:
                if name.hasPrefix("_pq_.") {
                    unrecognized.append(key)
                } else if Self.passedParameters.contains(name) {
                    passed.append((key, value))
                } else {
                    return .fail(Self.fatal("28000", "startup parameter \(key) is not passed through Gatehouse; set it with SET after connecting"))
                }
            }
        }
        state = .awaitingPassword(user: user, parameters: passed)
        var out = ByteBufferAllocator().buffer(capacity: 32)
        if parameters.protocolMinor > 0 || !unrecognized.isEmpty {
            out.writeImmutableBuffer(Wire.negotiateProtocolVersion(minor: 0, unrecognized: unrecognized))
        }
        out.writeImmutableBuffer(Wire.authentication(3))
        return .send(out)
    }

    static func fatal(_ code: String, _ message: String) -> ByteBuffer {
        Wire.error(code: code, message: message, fatal: true)
    }

    static func byte(_ character: Character) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 1)
        buffer.writeInteger(character.asciiValue!)
        return buffer
    }
}
