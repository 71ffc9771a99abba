import Foundation
import GatehouseApp
import GatehouseCore
import NIOCore
import Testing
@testable import GatehouseProxy

/// The proxy's top-level state machine without sockets: the order of a session's life, what the
/// database session is started with, the ParameterStatus watch, and how a session ends.
@Suite("Proxy session machine")
struct ProxySessionMachineTests {
    typealias B = WireBytes

    static let proxy = ProxySettings(listenPort: 6433, upstreamHost: "127.0.0.1", upstreamPort: 5432, database: "app", user: "gatehouse",
                                     password: .environment("PGPASS"))
    static let identity = ProxyAuthority.ProxyIdentity(caller: Caller(principal: "alice", isAdmin: false, tokenId: "tok_1"),
                                                       resource: "prod-db", sessionID: "ses_1", client: "127.0.0.1:5000")

    static func grant(_ allows: RiskLevel, digest: String? = nil) -> Grant {
        Grant(id: "grt_\(allows.rawValue)", requestId: "req_1", principal: "alice", resource: "prod-db", role: allows.rawValue,
              allows: allows, startsAt: Date(), expiresAt: Date().addingTimeInterval(3600), actionDigest: digest)
    }

    static func fresh() -> ProxySession {
        ProxySession(settings: .init(resource: "prod-db", proxy: proxy, password: "secret", tlsAvailable: false, plaintextAllowed: true),
                     nonce: "0011223344556677")
    }

    /// Feeds the client's startup packet and password; returns the session waiting for its sign-in decision.
    static func authorizing(parameters: [(String, String)] = []) throws -> ProxySession {
        var session = fresh()
        var decoder = FrontendDecoder(limits: WireLimits())
        var buffer = ByteBuffer(bytes: B.startup([("user", "alice"), ("database", "prod-db")] + parameters))
        let startup = try #require(try decoder.next(&buffer))
        guard case .sendToClient = session.clientMessage(startup, pendingBytes: 0) else {
            Issue.record("the startup packet should be answered with a password request")
            throw WireError("no password request")
        }
        let password = try B.frontendFrame(B.password(Array("ghs_token".utf8) + [0]))
        guard case let .authorize(user, token) = session.clientMessage(password, pendingBytes: 0) else {
            Issue.record("the password should be handed to the application")
            throw WireError("no authorize")
        }
        #expect(user == "alice")
        #expect(token == "ghs_token")
        return session
    }

    static func startupPairs(_ action: ProxySession.Action) throws -> [String: String] {
        guard case .connectUpstream(let startup) = action else {
            Issue.record("expected connectUpstream, got \(action)")
            return [:]
        }
        var decoder = FrontendDecoder(limits: WireLimits())
        var buffer = startup
        let frame = try #require(try decoder.next(&buffer))
        guard case .startup(let parameters) = frame.message else { return [:] }
        return Dictionary(parameters.pairs.map { ($0.0, $0.1) }, uniquingKeysWith: { first, _ in first })
    }

    /// A session signed in and connected, with the database's AuthenticationOk read.
    static func ready(grants: [Grant] = [grant(.write)]) throws -> ProxySession {
        var session = try authorizing()
        _ = session.signInDecided(.success((identity, grants)))
        guard case .ready = session.databaseMessage(try B.backendFrame(B.authentication(0))) else {
            Issue.record("AuthenticationOk should make the session ready")
            throw WireError("not ready")
        }
        return session
    }

    @Test("a read-only session starts read-only on the database; a write or action grant does not")
    func readOnlyRule() throws {
        var reader = try Self.authorizing()
        let readPairs = try Self.startupPairs(reader.signInDecided(.success((Self.identity, [Self.grant(.read)]))))
        #expect(readPairs["default_transaction_read_only"] == "on")
        #expect(readPairs["user"] == "gatehouse")
        #expect(readPairs["database"] == "app")
        #expect(readPairs["client_encoding"] == "UTF8")
        #expect(readPairs["standard_conforming_strings"] == "on")
        #expect(readPairs["application_name"] == "gatehouse-proxy")
        #expect(readPairs["client_connection_check_interval"] == "1000", "the database ends a statement whose connection the proxy closed")
        var unchecked = Self.proxy
        unchecked.connectionCheck = false
        #expect(ProxySession.startupParameters(unchecked, grants: [Self.grant(.read)], client: []).contains { $0.0 == "client_connection_check_interval" } == false)

        var writer = try Self.authorizing()
        #expect(try Self.startupPairs(writer.signInDecided(.success((Self.identity, [Self.grant(.read), Self.grant(.write)]))))["default_transaction_read_only"] == nil)
        var oneShot = try Self.authorizing()
        #expect(try Self.startupPairs(oneShot.signInDecided(.success((Self.identity, [Self.grant(.read, digest: "ab12")]))))["default_transaction_read_only"] == nil)
    }

    @Test("the client's own application_name is kept, and the proxy's user and database always win")
    func startupParameters() throws {
        var session = try Self.authorizing(parameters: [("application_name", "psql")])
        let pairs = try Self.startupPairs(session.signInDecided(.success((Self.identity, [Self.grant(.write)]))))
        #expect(pairs["application_name"] == "psql")
        #expect(pairs["user"] == "gatehouse")
        #expect(pairs["database"] == "app")
    }

    @Test("a message before the sign-in is complete ends the connection with 08P01")
    func messageBeforeReady() throws {
        var session = try Self.authorizing()
        let action = session.clientMessage(try B.frontendFrame(B.query("SELECT 1")), pendingBytes: 0)
        guard case let .close(error, reason, cancel, ended) = action else { Issue.record("expected close, got \(action)"); return }
        #expect(try B.errorFields(error)?["C"] == "08P01")
        #expect(reason == "protocol error")
        #expect(cancel == nil)
        #expect(ended == nil)   // nobody signed in: no session to audit
        #expect(session.isClosed)
    }

    @Test("a refused sign-in answers with the SQLSTATE of the reason")
    func refusedSignIn() throws {
        var session = try Self.authorizing()
        let action = session.signInDecided(.failure(GatehouseError(.forbidden, "no_grant", "alice has no active grant on prod-db")))
        guard case let .close(error, _, _, ended) = action else { Issue.record("expected close, got \(action)"); return }
        let fields = try #require(try B.errorFields(error))
        #expect(fields["C"] == "42501")
        #expect(fields["M"]?.contains("no active grant") == true)
        #expect(ended == nil)
    }

    @Test("the client leaving while its sign-in is decided: the started session is audited as ended")
    func leftDuringSignIn() throws {
        var session = try Self.authorizing()
        guard case .finish(nil) = session.clientClosed() else { Issue.record("expected finish without a session"); return }
        guard case .auditEndedDuringSignIn(let identity) = session.signInDecided(.success((Self.identity, [Self.grant(.write)]))) else {
            Issue.record("expected the late session to be audited as ended")
            return
        }
        #expect(identity.sessionID == "ses_1")
    }

    @Test("ParameterStatus: a database that reports another client_encoding or standard_conforming_strings ends the session",
          arguments: [("client_encoding", "SQL_ASCII"), ("standard_conforming_strings", "off"), ("Client_Encoding", "LATIN1")])
    func parameterStatusWatch(name: String, value: String) throws {
        var session = try Self.ready()
        let action = session.databaseMessage(try B.backendFrame(B.parameterStatus(name, value)))
        guard case let .close(error, _, _, ended) = action else { Issue.record("expected close, got \(action)"); return }
        let fields = try #require(try B.errorFields(error))
        #expect(fields["C"] == "57P01")
        #expect(fields["M"]?.contains("\(name) = \(value)") == true)
        #expect(ended?.identity.sessionID == "ses_1")
        #expect(session.isClosed)
    }

    @Test("ParameterStatus: the expected values and other settings pass to the client")
    func parameterStatusPasses() throws {
        var session = try Self.ready()
        for (name, value) in [("client_encoding", "UTF8"), ("standard_conforming_strings", "on"), ("TimeZone", "UTC"), ("server_version", "17.2")] {
            guard case .pass = session.databaseMessage(try B.backendFrame(B.parameterStatus(name, value))) else {
                Issue.record("\(name) = \(value) should pass")
                return
            }
        }
        #expect(!session.isClosed)
    }

    @Test("BackendKeyData is passed on and remembered; a session ended while ready cancels its running statement")
    func cancelKey() throws {
        var session = try Self.ready()
        guard case .passAndRegister(let key) = session.databaseMessage(try B.backendFrame(B.backendKeyData(processID: 77, secret: [1, 2, 3, 4]))) else {
            Issue.record("BackendKeyData should be registered")
            return
        }
        #expect(key == CancelKey(processID: 77, secret: [1, 2, 3, 4]))
        guard case .close(_, _, let cancel, _) = session.databaseClosed() else { Issue.record("expected close"); return }
        #expect(cancel == key)
    }

    @Test("access ended: grants are dropped at once; a lapsed grant is looked up, anything else ends the session now")
    func accessEnded() throws {
        var lapsed = try Self.ready()
        guard case let .lookUpEndReason(previous, principal, _) = lapsed.accessChanged(.ended("alice has no active grant on prod-db")) else {
            Issue.record("expected a look-up of why the grant ended")
            return
        }
        #expect(previous.map(\.id) == ["grt_write"])
        #expect(principal == "alice")
        #expect(lapsed.grants.isEmpty)
        guard case .check(_, let grants) = lapsed.clientMessage(try B.frontendFrame(B.query("SELECT 1")), pendingBytes: 0) else {
            Issue.record("a statement is still checked while the reason is looked up")
            return
        }
        #expect(grants.isEmpty)   // ... against no grants: nothing is allowed from memory
        guard case .close(let error, _, _, _) = lapsed.terminate("gatehouse: session ended: the grant grt_write on prod-db was revoked by bob") else {
            Issue.record("expected close")
            return
        }
        #expect(try B.errorFields(error)?["M"]?.contains("revoked by bob") == true)

        var blocked = try Self.ready()
        guard case let .close(error, _, _, _) = blocked.accessChanged(.ended("alice is blocked")) else { Issue.record("expected close"); return }
        #expect(try B.errorFields(error)?["M"] == "gatehouse: session ended: alice is blocked")

        var renewed = try Self.ready()
        guard case .none = renewed.accessChanged(.granted([Self.grant(.write), Self.grant(.read)])) else { Issue.record("new grants change nothing else"); return }
        #expect(renewed.grants.map(\.id) == ["grt_write", "grt_read"])
    }

    @Test("a session started read-write ends when only read grants are left (its write or action grant ended); a read-only one goes on")
    func writeGrantEnded() throws {
        var writer = try Self.ready(grants: [Self.grant(.write), Self.grant(.read)])
        #expect(writer.startedReadWrite)
        guard case let .lookUpEndReason(previous, _, afterward) = writer.accessChanged(.granted([Self.grant(.read)])) else {
            Issue.record("the write grant's end should end the session")
            return
        }
        #expect(previous.map(\.id) == ["grt_write"], "the reason looked up is the write grant's")
        #expect(afterward.contains("reconnect for a read-only session"))
        #expect(writer.grants.isEmpty, "nothing is allowed from memory meanwhile")

        var oneShot = try Self.ready(grants: [Self.grant(.read), Self.grant(.dangerous, digest: "abc")])
        guard case .lookUpEndReason(let used, _, _) = oneShot.accessChanged(.granted([Self.grant(.read)])) else {
            Issue.record("a used-up action grant should end a session it made read-write")
            return
        }
        #expect(used.map(\.id) == ["grt_dangerous"])

        var reader = try Self.ready(grants: [Self.grant(.read)])
        #expect(!reader.startedReadWrite)
        guard case .none = reader.accessChanged(.granted([Self.grant(.read)])) else { Issue.record("a read-only session goes on"); return }
    }

    @Test("a read-write session's write power lapses at the exact expiry of its last write or action grant, whatever the watcher has seen")
    func writePowerLapsesAtExpiry() throws {
        var write = Self.grant(.write)
        let expiry = Date().addingTimeInterval(600)
        write.expiresAt = expiry
        var later = Self.grant(.dangerous, digest: "abc")
        later.expiresAt = expiry.addingTimeInterval(60)
        let writer = try Self.ready(grants: [write, Self.grant(.read)])
        #expect(!writer.writePowerLapsed(at: expiry.addingTimeInterval(-0.001)))
        #expect(writer.writePowerLapsed(at: expiry))
        let two = try Self.ready(grants: [write, later, Self.grant(.read)])
        #expect(!two.writePowerLapsed(at: expiry.addingTimeInterval(1)), "the action grant still allows more than reads")
        #expect(two.writePowerLapsed(at: later.expiresAt))
        let reader = try Self.ready(grants: [Self.grant(.read)])
        #expect(!reader.writePowerLapsed(at: expiry.addingTimeInterval(7200)), "a read-only session has no write power to lose")
    }

    @Test("any session's access lapses at the exact expiry of its last grant of any kind, whatever the watcher has seen; then it ends saying why")
    func accessLapsesAtExpiry() throws {
        var read = Self.grant(.read)
        let expiry = Date().addingTimeInterval(600)
        read.expiresAt = expiry
        var other = Self.grant(.read)
        other.id = "grt_other"
        other.expiresAt = expiry.addingTimeInterval(60)
        var reader = try Self.ready(grants: [read])
        #expect(!reader.accessLapsed(at: expiry.addingTimeInterval(-0.001)))
        #expect(reader.accessLapsed(at: expiry))
        let two = try Self.ready(grants: [read, other])
        #expect(!two.accessLapsed(at: expiry.addingTimeInterval(1)), "another grant is still in force")
        #expect(two.accessLapsed(at: other.expiresAt))
        // Ending it looks up which grant ended and how; meanwhile nothing is allowed from memory, and it is not
        // taken for lapsed again.
        guard case .lookUpEndReason(let previous, let principal, _) = reader.accessChanged(.ended("alice has no active grant on prod-db")) else {
            Issue.record("the session should look up why its grant ended")
            return
        }
        #expect(previous.map(\.id) == [read.id] && principal == "alice")
        #expect(!reader.accessLapsed(at: expiry.addingTimeInterval(1)))
        let signingIn = try Self.authorizing()
        #expect(!signingIn.accessLapsed(at: expiry.addingTimeInterval(1)), "a session not yet signed in has nothing to lapse")
    }

    @Test("statements: each check counts, a refusal counts as refused, and the session's grants go with the check")
    func statementCounting() throws {
        var session = try Self.ready(grants: [Self.grant(.write)])
        guard case .check(let text, let grants) = session.clientMessage(try B.frontendFrame(B.query("DELETE FROM t")), pendingBytes: 0) else {
            Issue.record("expected a check")
            return
        }
        #expect(text == "DELETE FROM t")
        #expect(grants.map(\.id) == ["grt_write"])
        guard case .forward = session.statementDecided(Refusal(message: "gatehouse: approval required")) else { Issue.record("expected forward"); return }
        #expect(session.statements == 1)
        #expect(session.refused == 1)
        guard case .close(_, _, _, let ended) = session.clientProtocolError("bad bytes") else { Issue.record("expected close"); return }
        #expect(ended?.statements == 1)
        #expect(ended?.refused == 1)
        #expect(ended?.reason == "protocol error: bad bytes")
    }

    @Test("the database's answer to the proxy's SSLRequest")
    func upstreamTLS() {
        #expect(ProxySession.tlsAnswer(UInt8(ascii: "S"), trailingBytes: 0, mode: .verifyFull, tlsAvailable: true) == .startTLS)
        #expect(ProxySession.tlsAnswer(UInt8(ascii: "N"), trailingBytes: 0, mode: .prefer, tlsAvailable: true) == .plain)
        #expect(ProxySession.tlsAnswer(UInt8(ascii: "N"), trailingBytes: 0, mode: .require, tlsAvailable: true)
            == .fail("the database does not accept TLS, and the proxy's sslmode is require"))
        #expect(ProxySession.tlsAnswer(UInt8(ascii: "S"), trailingBytes: 3, mode: .prefer, tlsAvailable: true)
            == .fail("the database sent data before the TLS handshake"))
        #expect(ProxySession.tlsAnswer(nil, trailingBytes: 0, mode: .verifyFull, tlsAvailable: true)
            == .fail("the database does not accept TLS, and the proxy's sslmode is verify-full"))
    }

    @Test("the proxy's own sign-in to the database: its password, then AuthenticationOk passes to the client")
    func upstreamLogin() throws {
        var session = try Self.authorizing()
        _ = session.signInDecided(.success((Self.identity, [Self.grant(.write)])))
        guard case .sendToDatabase(let bytes) = session.databaseMessage(try B.backendFrame(B.authentication(3))) else {
            Issue.record("expected the password to the database")
            return
        }
        #expect(Array(bytes.readableBytesView) == B.password(Array("secret".utf8) + [0]))
        guard case .ready = session.databaseMessage(try B.backendFrame(B.authentication(0))) else { Issue.record("expected ready"); return }
        #expect(session.isReady)
    }
}
