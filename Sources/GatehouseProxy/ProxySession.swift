import Foundation
import GatehouseApp
import GatehouseCore
import NIOCore

/// One proxy connection's whole life as a pure state machine, in the style of PostgresNIO's
/// `ConnectionStateMachine`: a `mutating func` per event (a client message, a database message,
/// the sign-in decided, a statement decided, the session's access changed, the database's TLS
/// answer, a side closed) returns what to do; `ProxyConnection` only does it. The sub-machines
/// (`ClientSignIn`, `UpstreamLogin`, `StatementFlow`) are driven from here, and the session's own
/// security rules live here too: what the database session is started with (forced settings,
/// read-only for read grants, the client's parameters), the ParameterStatus watch, and how a
/// session ends when its access does.
struct ProxySession {
    struct Settings: Sendable {
        var resource: String
        var proxy: ProxySettings
        /// The proxy's own password for the database (read from `password_env` or `password_file`).
        var password: String
        var tlsAvailable: Bool
        var plaintextAllowed: Bool
    }

    enum Phase {
        case signIn(ClientSignIn)
        /// The client gave a token; the application is deciding whether a session may start.
        case authorizing
        /// Connecting and signing in to the database.
        case upstreamLogin(UpstreamLogin)
        case ready(StatementFlow)
        case closed
    }

    /// What the connection does for an event.
    enum Action {
        case none
        /// Write these bytes to the client and flush.
        case sendToClient(ByteBuffer)
        /// Answer `S` to the client's SSLRequest and start TLS on the client side.
        case startClientTLS
        /// Pass a CancelRequest to the session it names, then close this connection.
        case forwardCancel(CancelKey)
        /// Ask the application whether this token may open a session (asynchronous; stop reading meanwhile).
        case authorize(user: String, token: String)
        /// The session may start: register it and connect to the database with this startup packet.
        case connectUpstream(startup: ByteBuffer)
        /// The client left while its sign-in was decided: audit the end of the session that was started.
        case auditEndedDuringSignIn(ProxyAuthority.ProxyIdentity)
        /// Write these bytes to the database (flushed at the end of the read).
        case forward(ByteBuffer)
        /// Write the refusal marker to the database and audit the refusal.
        case refuse(ByteBuffer, message: String)
        /// Decide this statement against these grants.
        case check(String, grants: [Grant])
        /// Decide this statement once `statementsSettled` (stop reading the client meanwhile), against
        /// the grants the session has then.
        case checkWhenSettled(String)
        /// The client said goodbye: tell the database, close the client.
        case terminate
        /// Send this error to the client and close both sides; cancel the running statement first
        /// when there is a key; audit the end when the session had started.
        case close(error: ByteBuffer, reason: String, cancelRunning: CancelKey?, ended: Ended?)
        /// Close without a word to the client (it is gone); audit the end when the session had started.
        case finish(Ended?)
        /// The session's access ended; find out why (expired, released, revoked by whom), then `terminate(_:)`.
        case lookUpEndReason(previous: [Grant], principal: String, afterward: String)
    }

    /// What the audit record of an ended session says.
    struct Ended {
        var identity: ProxyAuthority.ProxyIdentity
        var reason: String
        var statements: Int
        var refused: Int
    }

    /// What the client gets for one database message.
    enum DatabaseAction {
        /// Pass it to the client unchanged.
        case pass
        /// Send these bytes to the client instead.
        case replace(ByteBuffer)
        /// Nothing goes to the client.
        case drop
        /// Send these bytes to the database (the proxy's own sign-in).
        case sendToDatabase(ByteBuffer)
        /// The proxy is signed in to the database: pass the AuthenticationOk on and start reading the client.
        case ready
        /// Pass it on, and remember the key a CancelRequest for this session names.
        case passAndRegister(CancelKey)
        /// End the session with this error.
        case close(error: ByteBuffer, reason: String, cancelRunning: CancelKey?, ended: Ended?)
        /// Nothing to do: the session is not talking to the database (yet, or any more).
        case ignore
    }

    /// What the database's answer to the proxy's SSLRequest means.
    enum TLSAnswer: Equatable {
        case startTLS
        case plain
        case fail(String)
    }

    let settings: Settings
    private(set) var phase: Phase
    private(set) var identity: ProxyAuthority.ProxyIdentity?
    /// The session's last known grants; statements below dangerous are decided from these.
    private(set) var grants: [Grant] = []
    /// Whether the database session was started read-write (some grant allowed more than reads).
    private(set) var startedReadWrite = false
    private(set) var statements = 0
    private(set) var refused = 0
    private(set) var cancelKey: CancelKey?
    private var parameters: [(String, String)] = []
    /// Why the session ended, for its audit record (a client that just goes away "disconnected").
    private(set) var endReason = "the client disconnected"
    private let nonce: String

    init(settings: Settings, nonce: String = ProxySession.nonce()) {
        self.settings = settings
        self.nonce = nonce
        phase = .signIn(ClientSignIn(settings: .init(resource: settings.resource, upstreamDatabase: settings.proxy.database,
                                                     tlsAvailable: settings.tlsAvailable, plaintextAllowed: settings.plaintextAllowed)))
    }

    /// Changes the statement flow of a ready session in place, and returns what `change` answers (nil
    /// when the session is not ready). The phase holds no other reference to the flow meanwhile, so its
    /// arrays and dictionaries are changed where they are instead of being copied first.
    private mutating func changingFlow<Answer>(_ change: (inout StatementFlow) -> Answer) -> Answer? {
        guard case .ready(var flow) = phase else { return nil }
        phase = .closed
        defer { phase = .ready(flow) }
        return change(&flow)
    }

    var isClosed: Bool { if case .closed = phase { true } else { false } }
    var isReady: Bool { if case .ready = phase { true } else { false } }
    var isSignedIn: Bool { identity != nil }

    // MARK: the client

    mutating func clientMessage(_ frame: FrontendFrame, pendingBytes: Int) -> Action {
        switch phase {
        case .signIn(var signIn):
            let step = signIn.receive(frame.message, pendingBytes: pendingBytes)
            phase = .signIn(signIn)
            switch step {
            case .send(let bytes):
                return .sendToClient(bytes)
            case .startTLS:
                return .startClientTLS
            case let .cancel(processID, secret):
                endReason = "cancel request"
                return .forwardCancel(CancelKey(processID: processID, secret: secret))
            case .fail(let bytes):
                return fail(bytes, reason: "sign-in refused")
            case let .authenticate(user, token, parameters):
                self.parameters = parameters
                phase = .authorizing
                return .authorize(user: user, token: token)
            }
        case .ready:
            guard let step = changingFlow({ $0.receive(frame) }) else { return .none }
            switch step {
            case .forward(let bytes):
                return .forward(bytes)
            case .drop:
                return .none
            case .refuse(let bytes, let refusal):
                refused += 1
                return .refuse(bytes, message: refusal.message)
            case .terminate:
                endReason = "the client ended the session"
                return .terminate
            case .check(let text):
                statements += 1
                return .check(text, grants: grants)
            case .checkWhenSettled(let text):
                statements += 1
                return .checkWhenSettled(text)
            case .violation(let why):
                return fail(Wire.error(code: "08P01", message: "gatehouse: \(why)", fatal: true), reason: "protocol error: \(why)")
            }
        case .authorizing, .upstreamLogin:
            // The client may not send anything before it has been told it is signed in.
            return fail(Wire.error(code: "08P01", message: "gatehouse: message before sign-in completed", fatal: true), reason: "protocol error")
        case .closed:
            return .none
        }
    }

    /// The client's bytes could not be read as messages.
    mutating func clientProtocolError(_ message: String) -> Action {
        fail(Wire.error(code: "08P01", message: "gatehouse: \(message)", fatal: true), reason: "protocol error: \(message)")
    }

    /// Nobody signed in within the sign-in timeout.
    mutating func signInTimedOut(after seconds: Int64) -> Action {
        guard identity == nil else { return .none }
        return fail(Wire.error(code: "08P01", message: "gatehouse: sign-in did not complete within \(seconds) s", fatal: true), reason: "sign-in timeout")
    }

    /// The client connection failed; it is closed next.
    mutating func clientFailed(_ error: String) {
        endReason = "connection error: \(error)"
    }

    /// The client connection closed.
    mutating func clientClosed() -> Action {
        guard !isClosed else { return .none }
        phase = .closed
        return .finish(ended())
    }

    // MARK: sign-in

    /// The application's answer to `authorize`.
    mutating func signInDecided(_ result: Result<(ProxyAuthority.ProxyIdentity, [Grant]), any Error>) -> Action {
        switch result {
        case .failure(let error):
            let (code, message) = Self.describe(error)
            return fail(Wire.error(code: code, message: message, fatal: true), reason: "sign-in refused")
        case .success(let (identity, grants)):
            guard case .authorizing = phase else { return .auditEndedDuringSignIn(identity) }
            self.identity = identity
            self.grants = grants
            startedReadWrite = !Self.readOnly(grants)
            phase = .upstreamLogin(UpstreamLogin(user: settings.proxy.user, password: settings.password,
                                                 weakAllowed: settings.proxy.weakPasswordAllowed))
            return .connectUpstream(startup: Wire.startup(Self.startupParameters(settings.proxy, grants: grants, client: parameters)))
        }
    }

    /// What the database session starts with: the proxy's user and database, the settings the
    /// classifier reads statements under, read-only when every grant allows reads only (the
    /// classifier cannot see writes inside functions; the database refuses them in a read-only
    /// transaction), the database checking every second while a statement runs that the proxy is still
    /// connected, a default `application_name`, then the client's own parameters (which `ClientSignIn` has
    /// already vetted).
    ///
    /// The proxy closes its database connection when the session ends (the grant ended, the client left), and
    /// a running statement would not notice: it could go on writing, and commit, long after (a cancel can be
    /// caught by PL/pgSQL; a closed client cannot). With `client_connection_check_interval` (PostgreSQL 14
    /// and later) the database ends such a statement within a second, its transaction rolled back. Changing it
    /// through the proxy is refused (an unsafe setting). An upstream that refuses it (PgBouncer, PostgreSQL 13)
    /// is told `connection_check: disabled` in the policy.
    static func startupParameters(_ proxy: ProxySettings, grants: [Grant], client: [(String, String)]) -> [(String, String)] {
        var startup: [(String, String)] = [("user", proxy.user), ("database", proxy.database), ("client_encoding", "UTF8"),
                                           ("standard_conforming_strings", "on")]
        if proxy.connectionCheck { startup.append(("client_connection_check_interval", "1000")) }
        if readOnly(grants) { startup.append(("default_transaction_read_only", "on")) }
        if !client.contains(where: { $0.0.lowercased() == "application_name" }) { startup.append(("application_name", "gatehouse-proxy")) }
        return startup + client
    }

    /// Whether every grant the session starts with allows reads only.
    static func readOnly(_ grants: [Grant]) -> Bool {
        grants.allSatisfy { $0.actionDigest == nil && $0.allows <= .read }
    }

    /// What the classifier assumes of every session, set in the startup packet and watched in the
    /// database's ParameterStatus reports.
    static let requiredSettings = ["client_encoding": "UTF8", "standard_conforming_strings": "ON"]

    // MARK: the database

    static func tlsAnswer(_ answer: UInt8?, trailingBytes: Int, mode: ProxySettings.UpstreamTLS, tlsAvailable: Bool) -> TLSAnswer {
        guard trailingBytes == 0 else { return .fail("the database sent data before the TLS handshake") }
        if answer == UInt8(ascii: "S"), tlsAvailable { return .startTLS }
        guard mode == .prefer else {
            return .fail("the database does not accept TLS, and the proxy's sslmode is \(mode.rawValue)")
        }
        return .plain
    }

    mutating func databaseMessage(_ frame: BackendFrame) -> DatabaseAction {
        switch phase {
        case .upstreamLogin(var login):
            let step = login.receive(frame.message)
            phase = .upstreamLogin(login)
            switch step {
            case .send(let bytes):
                return .sendToDatabase(bytes)
            case .wait:
                return .drop
            case .failed(let why):
                let hint = why.contains("client_connection_check_interval")
                    ? " (this upstream does not take client_connection_check_interval: PgBouncer and PostgreSQL 13 do not; set `connection_check: disabled` under the resource's proxy.upstream)" : ""
                return databaseFailed("the proxy could not sign in to the database: \(why)\(hint)")
            case .authenticated:
                phase = .ready(StatementFlow(nonce: nonce))
                return .ready
            }
        case .ready:
            if case let .parameterStatus(name, value) = frame.message, let expected = Self.requiredSettings[name.lowercased()],
               value.uppercased() != expected {
                return terminate("gatehouse: session ended: the database reports \(name) = \(value); statements are checked only under \(name) = \(expected)")
            }
            guard let answer = changingFlow({ $0.route(frame) }) else { return .ignore }
            if case let .backendKeyData(processID, secret) = frame.message {
                let key = CancelKey(processID: processID, secret: secret)
                cancelKey = key
                return .passAndRegister(key)
            }
            switch answer {
            case .pass: return .pass
            case .replace(let bytes): return .replace(bytes)
            case .drop: return .drop
            case .violation(let why):
                return databaseAction(fail(Wire.error(code: "08P01", message: "gatehouse: session ended: \(why)", fatal: true), reason: "protocol error: \(why)"))
            }
        case .signIn, .authorizing, .closed:
            return .ignore
        }
    }

    /// The database connection failed, could not be reached, or sent something unreadable.
    mutating func databaseFailed(_ why: String) -> DatabaseAction {
        databaseAction(fail(Wire.error(code: "08006", message: "gatehouse: \(why)", fatal: true), reason: why))
    }

    /// The database closed its side.
    mutating func databaseClosed() -> Action {
        guard !isClosed else { return .none }
        return fail(Wire.error(code: "08006", message: "gatehouse: the database closed the connection", fatal: true),
                    reason: "the database closed the connection")
    }

    // MARK: statements and access

    /// The session was started read-write and, at `now`, none of its grants that allow more than
    /// reads is still in force: its last one expired since the watcher last looked. The session
    /// must end before another statement reaches the database.
    func writePowerLapsed(at now: Date) -> Bool {
        startedReadWrite && !grants.contains { ($0.actionDigest != nil || $0.allows > .read) && $0.expiresAt > now }
    }

    /// At `now` none of the session's grants is in force: the last one expired since the watcher last looked.
    /// Nothing more may reach the database (a portal bound earlier runs at Execute without a new check).
    func accessLapsed(at now: Date) -> Bool {
        guard case .ready = phase else { return false }
        return !grants.isEmpty && !grants.contains { $0.expiresAt > now }
    }

    /// The values of the Bind being checked (`StatementFlow.boundValues`); nil for a simple Query.
    var boundValues: [BoundValues.Value]? {
        if case .ready(let flow) = phase { return flow.boundValues }
        return nil
    }

    /// Whether the statement being checked is a Bind's (its values are not read to know it).
    var checkingBind: Bool {
        if case .ready(let flow) = phase { return flow.checkingBind }
        return false
    }

    /// Whether the database has answered everything before the statement being checked, so the
    /// settings it last reported are in force (see `StatementFlow.settled`).
    var statementsSettled: Bool {
        if case .ready(let flow) = phase { return flow.settled }
        return false
    }

    /// The decision on the statement `check` asked about: the bytes to send to the database.
    mutating func statementDecided(_ refusal: Refusal?) -> Action {
        guard let bytes = changingFlow({ $0.decided(refusal) }) else { return .none }
        if refusal != nil { refused += 1 }
        return .forward(bytes)
    }

    /// The watcher's latest view of the session's access.
    mutating func accessChanged(_ access: ProxyAuthority.ProxyAccess) -> Action {
        switch access {
        case .granted(let grants):
            let previous = self.grants
            self.grants = grants
            // The database session cannot be made read-only from outside once it runs (a transaction
            // may be open, a function may write): when the grants that made it read-write are gone,
            // the session ends, and a new one starts read-only.
            guard startedReadWrite, Self.readOnly(grants), case .ready = phase, let identity else { return .none }
            self.grants = []
            let ended = previous.filter { $0.actionDigest != nil || $0.allows > .read }.filter { grant in !grants.contains { $0.id == grant.id } }
            return .lookUpEndReason(previous: ended.isEmpty ? previous : ended, principal: identity.caller.principal,
                                    afterward: "; this session could write and cannot go on with reads only: reconnect for a read-only session")
        case .ended(let why):
            guard case .ready = phase, let identity else { return .none }
            let previous = grants
            grants = [] // nothing more is allowed from memory while the reason is looked up
            guard why.contains("no active grant") else { return actionOf(terminate("gatehouse: session ended: \(why)")) }
            return .lookUpEndReason(previous: previous, principal: identity.caller.principal, afterward: "")
        }
    }

    /// Ends the session with a FATAL error saying why (57P01, as when an administrator ends a backend).
    mutating func terminate(_ message: String) -> DatabaseAction {
        databaseAction(fail(Wire.error(code: "57P01", message: message, fatal: true), reason: message))
    }

    // MARK: pieces

    private mutating func fail(_ error: ByteBuffer, reason: String) -> Action {
        guard !isClosed else { return .none }
        endReason = reason
        // Closing the connection does not stop a statement the database is running: cancel it.
        let cancel = isReady ? cancelKey : nil
        phase = .closed
        return .close(error: error, reason: reason, cancelRunning: cancel, ended: ended())
    }

    private func ended() -> Ended? {
        identity.map { Ended(identity: $0, reason: endReason, statements: statements, refused: refused) }
    }

    private func databaseAction(_ action: Action) -> DatabaseAction {
        if case let .close(error, reason, cancel, ended) = action { return .close(error: error, reason: reason, cancelRunning: cancel, ended: ended) }
        return .ignore
    }

    private func actionOf(_ action: DatabaseAction) -> Action {
        if case let .close(error, reason, cancel, ended) = action { return .close(error: error, reason: reason, cancelRunning: cancel, ended: ended) }
        return .none
    }

    /// The SQLSTATE and message a client gets for an error of the application.
    static func describe(_ error: any Error) -> (String, String) {
        guard let error = error as? GatehouseError else { return ("58000", "gatehouse: \(error)") }
        let code = switch error.kind {
        case .unauthorized: "28P01"
        case .forbidden: "42501"
        case .unavailable: "57P03"
        case .tooManyRequests: "53300"
        default: "58000"
        }
        return (code, "gatehouse: \(error.message)")
    }

    static func nonce() -> String {
        Hex.encode((0..<8).map { _ in UInt8.random(in: 0...255) })
    }
}
