import Foundation
import Yams

/// How the PostgreSQL guard proxy serves one `kind: postgres` resource (`proxy:` in the policy).
/// The database password is never in the policy file: it is read from an environment variable or
/// a file when the proxy starts.
public struct ProxySettings: Sendable, Equatable {
    public enum PasswordSource: Sendable, Equatable {
        case environment(String)
        case file(String)
    }

    /// How the proxy talks to the database, in libpq's `sslmode` words.
    public enum UpstreamTLS: String, Sendable, Equatable, CaseIterable {
        case disable, prefer, require
        /// The certificate chain is verified, not the name in it (as libpq's verify-ca).
        case verifyCA = "verify-ca"
        /// The chain and the name: the host's DNS name, or its IP address when the host is one.
        case verifyFull = "verify-full"

        /// Whether the database's certificate is checked against trusted roots.
        public var verifiesCertificate: Bool { self == .verifyCA || self == .verifyFull }
    }

    public enum PlaintextClients: String, Sendable, Equatable, CaseIterable {
        /// Clients without TLS only over loopback (the default).
        case loopback
        /// Clients without TLS from anywhere (a private network the operator trusts).
        case allow
    }

    public enum StatementAudit: String, Sendable, Equatable, CaseIterable {
        /// Refused statements and every dangerous one allowed (the default).
        case dangerous
        /// Every statement.
        case all
    }

    public var listenHost: String
    public var listenPort: Int
    public var upstreamHost: String
    public var upstreamPort: Int
    public var database: String
    public var user: String
    public var password: PasswordSource
    public var upstreamTLS: UpstreamTLS
    /// A PEM file of the certificate authorities the database's certificate is checked against
    /// (libpq's `sslrootcert`); nil: the system's trusted roots.
    public var upstreamRootCertificates: String?
    /// PEM files of the certificate and key offered to clients; nil: clients without TLS only.
    public var certificateFile: String?
    public var keyFile: String?
    public var plaintext: PlaintextClients
    public var audit: StatementAudit
    /// Whether the proxy may answer a database's request for a cleartext or md5 password when the
    /// database's certificate is not verified (and it is not on this machine). Off by default: a
    /// server pretending to be the database would learn the password. SCRAM proves both sides.
    public var unverifiedPassword = false
    /// Whether the database sessions start with `client_connection_check_interval` (PostgreSQL 14 and later
    /// on Linux), so that the database ends a statement whose session the proxy closed. Off only for an
    /// upstream that refuses the setting (PgBouncer, PostgreSQL 13): a statement then runs on until it ends.
    public var connectionCheck = true
    /// Sessions one principal may hold at once through this proxy (an application pool counts each).
    public var maxSessionsPerPrincipal = 50
    /// Connections one client address may hold open at once, signed in or not.
    public var maxConnectionsPerAddress = 200

    /// Whether the proxy's password may go to the database as cleartext or md5: the server is this
    /// machine, or its certificate is verified, or the policy allows it.
    public var weakPasswordAllowed: Bool {
        unverifiedPassword || upstreamTLS == .verifyFull || ProxySettings.isLoopback(upstreamHost)
    }

    public init(listenHost: String = "127.0.0.1", listenPort: Int, upstreamHost: String, upstreamPort: Int = 5432,
                database: String, user: String, password: PasswordSource, upstreamTLS: UpstreamTLS? = nil,
                certificateFile: String? = nil, keyFile: String? = nil, plaintext: PlaintextClients = .loopback,
                audit: StatementAudit = .dangerous) {
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.upstreamHost = upstreamHost
        self.upstreamPort = upstreamPort
        self.database = database
        self.user = user
        self.password = password
        self.upstreamTLS = upstreamTLS ?? (ProxySettings.isLoopback(upstreamHost) ? .prefer : .verifyFull)
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.plaintext = plaintext
        self.audit = audit
    }

    /// Whether the upstream is this machine: `localhost`, `::1`, or an IPv4 address in 127.0.0.0/8
    /// written as one. A host name that merely starts with `127.` (say `127.db.example.com`) is not.
    public static func isLoopback(_ host: String) -> Bool {
        let name = host.lowercased()
        if name == "localhost" || name == "::1" || name == "[::1]" { return true }
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts.allSatisfy({ !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }) else { return false }
        let octets = parts.compactMap { Int($0) }
        return octets.count == 4 && octets.allSatisfy { $0 <= 255 } && octets[0] == 127
    }

    /// Why a file the proxy will read at start (a certificate, a key) cannot be read now; nil when it can.
    public static func unreadable(_ path: String) -> String? {
        do { _ = try TextFile.read(path) } catch { return error.why }
        return nil
    }

    /// The database password, read now.
    public func readPassword(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        switch password {
        case .environment(let name):
            guard let value = environment[name], !value.isEmpty else {
                throw ProxyPasswordError(message: "environment variable \(name), which should hold the proxy's database password, is not set")
            }
            return value
        case .file(let path):
            do {
                let text = try TextFile.read(path)
                let password = text.trimmingCharacters(in: .newlines)
                guard !password.isEmpty else { throw ProxyPasswordError(message: "password file \(path) is empty") }
                return password
            } catch let error as ProxyPasswordError {
                throw error
            } catch {
                throw ProxyPasswordError(message: "cannot read password file \(path): \(error)")
            }
        }
    }
}

public struct ProxyPasswordError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}

extension PolicyLoader.Reader {
    mutating func proxySettings(_ node: Node, resource: String) -> ProxySettings? {
        let what = "`proxy` of resource `\(resource)`"
        var listen: (String, Int)?
        var upstream: ProxyUpstreamFields?
        var certificate: String?, key: String?
        var plaintext = ProxySettings.PlaintextClients.loopback
        var audit = ProxySettings.StatementAudit.dangerous
        var tlsNode: Node?
        var maxSessions: Int?, maxConnections: Int?
        let fields = entries(node, what, allowed: ["listen", "upstream", "tls", "plaintext", "audit", "max_sessions_per_principal",
                                                   "max_connections_per_address"])
        for (field, _, value) in fields {
            switch field {
            case "listen":
                listen = hostPort(value, "\(what): listen")
            case "upstream":
                upstream = proxyUpstream(value, what: "\(what): upstream")
            case "tls":
                tlsNode = value
                for (tlsField, _, tlsValue) in entries(value, "\(what): tls", allowed: ["certificate", "key"]) {
                    let path = string(tlsValue, "\(what): tls.\(tlsField)")
                    if let path, let why = ProxySettings.unreadable(path) {
                        error(tlsValue, "\(what): tls.\(tlsField) `\(path)` cannot be read (\(why)); give the path of a PEM file")
                    }
                    if tlsField == "certificate" { certificate = path } else { key = path }
                }
            case "plaintext":
                plaintext = choice(value, "\(what): plaintext", ProxySettings.PlaintextClients.allCases) ?? plaintext
            case "max_sessions_per_principal":
                maxSessions = int(value, "\(what): max_sessions_per_principal", min: 1, max: 10_000)
            case "max_connections_per_address":
                maxConnections = int(value, "\(what): max_connections_per_address", min: 1, max: 100_000)
            default:
                audit = choice(value, "\(what): audit", ProxySettings.StatementAudit.allCases) ?? audit
            }
        }
        if tlsNode != nil, certificate == nil || key == nil {
            error(tlsNode, "\(what): tls needs both `certificate` and `key`")
        }
        if listen == nil, !fields.contains(where: { $0.0 == "listen" }) { error(node, "\(what) needs `listen: HOST:PORT`, the address clients connect to (for example 127.0.0.1:6432)") }
        if upstream == nil, !fields.contains(where: { $0.0 == "upstream" }) {
            error(node, "\(what) needs `upstream: {host, port, database, user, password_env or password_file}`")
        }
        guard let listen, let upstream else { return nil }
        var settings = ProxySettings(listenHost: listen.0, listenPort: listen.1, upstreamHost: upstream.host, upstreamPort: upstream.port,
                                     database: upstream.database, user: upstream.user, password: upstream.password, upstreamTLS: upstream.tls,
                                     certificateFile: certificate, keyFile: key, plaintext: plaintext, audit: audit)
        settings.unverifiedPassword = upstream.unverifiedPassword
        settings.connectionCheck = upstream.connectionCheck
        settings.upstreamRootCertificates = upstream.rootCertificates
        if let maxSessions { settings.maxSessionsPerPrincipal = maxSessions }
        if let maxConnections { settings.maxConnectionsPerAddress = maxConnections }
        return settings
    }

    private mutating func proxyUpstream(_ node: Node, what: String)
        -> ProxyUpstreamFields? {
        var host: String?, port = 5432, database: String?, user: String?, password: ProxySettings.PasswordSource?
        var tls: ProxySettings.UpstreamTLS?
        var unverifiedPassword = false
        var connectionCheck = true
        var rootCertificates: (path: String, node: Node)?
        let fields = entries(node, what, allowed: ["host", "port", "database", "user", "password_env", "password_file", "sslmode",
                                                   "sslrootcert", "unverified_password", "connection_check", "password"])
        for (field, keyNode, value) in fields {
            switch field {
            case "host": host = string(value, "\(what).host")
            case "port": port = int(value, "\(what).port", min: 1, max: 65535) ?? port
            case "database": database = string(value, "\(what).database")
            case "user": user = string(value, "\(what).user")
            case "password_env":
                if let name = string(value, "\(what).password_env") {
                    if password != nil { error(keyNode, "\(what): give one of password_env and password_file") }
                    password = .environment(name)
                }
            case "password_file":
                if let path = string(value, "\(what).password_file") {
                    if password != nil { error(keyNode, "\(what): give one of password_env and password_file") }
                    password = .file(path)
                }
            case "sslmode":
                tls = choice(value, "\(what).sslmode", ProxySettings.UpstreamTLS.allCases)
            case "sslrootcert":
                if let path = string(value, "\(what).sslrootcert") { rootCertificates = (path, value) }
            case "unverified_password":
                switch value.scalar?.string {
                case "allow": unverifiedPassword = true
                case "refuse": unverifiedPassword = false
                default: error(value, "\(what).unverified_password must be `allow` or `refuse` (the default): whether the proxy's password may go as cleartext or md5 to a database whose certificate is not verified")
                }
            case "connection_check":
                switch value.scalar?.string {
                case "enabled": connectionCheck = true
                case "disabled": connectionCheck = false
                default: error(value, "\(what).connection_check must be `enabled` (the default) or `disabled`: whether database sessions start with client_connection_check_interval, so that a statement ends with its session (disable it only for an upstream that refuses the setting: PgBouncer, PostgreSQL 13)")
                }
            default:
                error(keyNode, "\(what): the database password is never written in the policy file; put it in an environment variable (password_env: NAME) or a file readable only by Gatehouse (password_file: PATH)")
            }
        }
        for (required, value) in [("host", host), ("database", database), ("user", user)] where value == nil {
            if !fields.contains(where: { $0.0 == required }) { error(node, "\(what) needs `\(required)`") }
        }
        if password == nil, !fields.contains(where: { $0.0 == "password" }) {
            error(node, "\(what) needs `password_env: NAME` or `password_file: PATH` for the proxy's database password")
        }
        if let rootCertificates, let host {
            let mode = tls ?? (ProxySettings.isLoopback(host) ? .prefer : .verifyFull)
            if !mode.verifiesCertificate {
                error(rootCertificates.node, "\(what).sslrootcert is used only to verify the database's certificate: set sslmode to verify-full (or verify-ca); with sslmode \(mode.rawValue) the certificate is not checked")
            } else if let why = ProxySettings.unreadable(rootCertificates.path) {
                // A warning: the policy may be checked where the proxy does not run; the proxy refuses to start without it.
                warning(rootCertificates.node, "\(what).sslrootcert `\(rootCertificates.path)` cannot be read here (\(why)); the proxy will not start without it: give the path of the PEM file of the authority that signed the database's certificate")
            }
        }
        if tls == .verifyCA, rootCertificates == nil {
            error(node, "\(what): sslmode verify-ca needs sslrootcert: it checks only that a trusted authority signed the certificate, not the name in it, so with the system's authorities any public certificate would pass; name the database's authority with sslrootcert, or use verify-full")
        }
        guard let host, let database, let user, let password else { return nil }
        return ProxyUpstreamFields(host: host, port: port, database: database, user: user, password: password, tls: tls,
                                   unverifiedPassword: unverifiedPassword, connectionCheck: connectionCheck, rootCertificates: rootCertificates?.path)
    }

    private mutating func hostPort(_ node: Node, _ what: String) -> (String, Int)? {
        guard let text = string(node, what) else { return nil }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
            error(node, "\(what) `\(text)` must be HOST:PORT, for example 127.0.0.1:6432")
            return nil
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else {
            error(node, "\(what) `\(text)` has no host; write 127.0.0.1:\(port) for loopback or 0.0.0.0:\(port) for every address")
            return nil
        }
        return (host, port)
    }

    private mutating func choice<T: RawRepresentable & CaseIterable>(_ node: Node, _ what: String, _ cases: T.AllCases) -> T? where T.RawValue == String {
        let raw = node.scalar?.string ?? ""
        if let value = T(rawValue: raw) { return value }
        error(node, "\(what) is `\(raw)`; use one of \(cases.map(\.rawValue).joined(separator: ", "))")
        return nil
    }
}

/// The `upstream` section of a proxy as read from the policy file.
struct ProxyUpstreamFields {
    var host: String
    var port: Int
    var database: String
    var user: String
    var password: ProxySettings.PasswordSource
    var tls: ProxySettings.UpstreamTLS?
    var unverifiedPassword: Bool
    var connectionCheck: Bool
    var rootCertificates: String?
}
