import Crypto
import Foundation
import NIOCore
import Testing
@testable import GatehouseProxy

// MARK: - ClientSignIn

@Suite struct SignInTests {
    typealias B = WireBytes

    static let resource = "prod-db"
    static let upstreamDatabase = "app_production"

    private func makeSignIn(tls: Bool = true, plaintext: Bool = true) -> ClientSignIn {
        ClientSignIn(settings: .init(resource: Self.resource, upstreamDatabase: Self.upstreamDatabase,
                                     tlsAvailable: tls, plaintextAllowed: plaintext))
    }

    private func startup(_ pairs: [(String, String)], minor: Int = 0) -> FrontendMessage {
        .startup(StartupParameters(protocolMinor: minor, pairs: pairs))
    }

    /// The ErrorResponse of a `.fail` step; nil (and an issue) for any other step.
    private func failure(_ step: ClientSignIn.Step, sourceLocation: SourceLocation = #_sourceLocation) throws -> ErrorFields? {
        guard case .fail(let bytes) = step else {
            Issue.record("expected .fail, got \(step)", sourceLocation: sourceLocation)
            return nil
        }
        let fields = try B.errorFields(bytes, sourceLocation: sourceLocation)
        #expect(fields?["S"] == "FATAL", "a sign-in failure ends the connection", sourceLocation: sourceLocation)
        return fields
    }

    /// The messages of a `.send` step, decoded as the client would.
    private func sent(_ step: ClientSignIn.Step, sourceLocation: SourceLocation = #_sourceLocation) throws -> [BackendFrame] {
        guard case .send(let bytes) = step else {
            Issue.record("expected .send, got \(step)", sourceLocation: sourceLocation)
            return []
        }
        return try B.backendFrames(bytes, sourceLocation: sourceLocation)
    }

    private func isSend(_ step: ClientSignIn.Step) -> Bool {
        if case .send = step { return true }
        return false
    }

    // MARK: SSLRequest and GSSENCRequest

    @Test func sslRequestStartsTLSWhenAvailable() throws {
        var signIn = makeSignIn(tls: true, plaintext: false)
        let step = signIn.receive(.sslRequest, pendingBytes: 0)
        #expect(step == .startTLS)
        #expect(signIn.isTLS)
        // Over TLS, plaintext not being allowed does not matter.
        let started = signIn.receive(startup([("user", "alice")]), pendingBytes: 0)
        #expect(isSend(started))
    }

    @Test func sslRequestAfterTLSIsRefused() throws {
        var signIn = makeSignIn()
        _ = signIn.receive(.sslRequest, pendingBytes: 0)
        let again = signIn.receive(.sslRequest, pendingBytes: 0)
        let fields = try #require(try failure(again))
        #expect(fields["C"] == "08P01")
    }

    @Test func sslRequestWithoutTLSIsAnsweredN() throws {
        var signIn = makeSignIn(tls: false)
        let step = signIn.receive(.sslRequest, pendingBytes: 0)
        #expect(step == .send(ByteBuffer(bytes: [UInt8(ascii: "N")])))
        #expect(!signIn.isTLS)
        // The client goes on in plaintext.
        #expect(isSend(signIn.receive(startup([("user", "alice")]), pendingBytes: 0)))
    }

    @Test func sslRequestWithPendingBytesFails() throws {
        var signIn = makeSignIn(tls: true)
        let step = signIn.receive(.sslRequest, pendingBytes: 5)
        let fields = try #require(try failure(step))
        #expect(fields["C"] == "08P01")
        #expect(!signIn.isTLS, "bytes sent before the handshake must not be read as if encrypted")
    }

    @Test func gssEncRequestIsAnsweredN() throws {
        var signIn = makeSignIn()
        #expect(signIn.receive(.gssEncRequest, pendingBytes: 0) == .send(ByteBuffer(bytes: [UInt8(ascii: "N")])))
        // libpq then tries SSL.
        #expect(signIn.receive(.sslRequest, pendingBytes: 0) == .startTLS)

        var pending = makeSignIn()
        let fields = try #require(try failure(pending.receive(.gssEncRequest, pendingBytes: 1)))
        #expect(fields["C"] == "08P01")
    }

    // MARK: startup

    @Test func plaintextStartupIsRefusedWhenNotAllowed() throws {
        var withTLS = makeSignIn(tls: true, plaintext: false)
        let fields = try #require(try failure(withTLS.receive(startup([("user", "alice")]), pendingBytes: 0)))
        #expect(fields["C"] == "28000")
        #expect(fields["M"]?.contains("sslmode") == true)

        var withoutTLS = makeSignIn(tls: false, plaintext: false)
        let noCertificate = try #require(try failure(withoutTLS.receive(startup([("user", "alice")]), pendingBytes: 0)))
        #expect(noCertificate["C"] == "28000")
        #expect(noCertificate["M"]?.contains("loopback") == true)
    }

    @Test func startupAsksForACleartextPassword() throws {
        var signIn = makeSignIn()
        let step = signIn.receive(startup([("user", "alice"), ("database", Self.resource)]), pendingBytes: 0)
        guard case .send(let bytes) = step else {
            Issue.record("expected .send, got \(step)")
            return
        }
        #expect(Array(bytes.readableBytesView) == [UInt8(ascii: "R"), 0, 0, 0, 8, 0, 0, 0, 3], "AuthenticationCleartextPassword and nothing else")
        let frames = try B.backendFrames(bytes)
        #expect(frames.map(\.message) == [.authentication(.cleartextPassword)])
    }

    @Test func passwordGivesTheTokenAndThePassedParameters() throws {
        var signIn = makeSignIn()
        let pairs = [
            ("user", "alice"), ("database", Self.resource), ("application_name", "psql"), ("client_encoding", "UTF8"),
            ("TimeZone", "UTC"), ("options", "  "), ("replication", "false"), ("search_path", "public"),
        ]
        #expect(isSend(signIn.receive(startup(pairs), pendingBytes: 0)))
        let step = signIn.receive(.password(Array("gh_0123456789".utf8) + [0]), pendingBytes: 0)
        #expect(step == .authenticate(user: "alice", token: "gh_0123456789",
                                      parameters: [("application_name", "psql"), ("TimeZone", "UTC"), ("search_path", "public")]))
        // Only one password.
        let again = signIn.receive(.password(Array("x".utf8) + [0]), pendingBytes: 0)
        _ = try failure(again)
    }

    @Test func passwordWithoutTrailingNULIsTheSameToken() throws {
        var signIn = makeSignIn()
        _ = signIn.receive(startup([("user", "bob")]), pendingBytes: 0)
        #expect(signIn.receive(.password(Array("tok".utf8)), pendingBytes: 0) == .authenticate(user: "bob", token: "tok", parameters: []))
    }

    @Test(arguments: [
        ("empty", [0]),
        ("nothing", []),
        ("embedded NUL", [0x74, 0x6F, 0x00, 0x6B, 0x00]),
        ("not UTF-8", [0xFF, 0xFE, 0x00]),
    ] as [(String, [UInt8])])
    func badPasswordsFail(_ name: String, _ bytes: [UInt8]) throws {
        var signIn = makeSignIn()
        _ = signIn.receive(startup([("user", "alice")]), pendingBytes: 0)
        let fields = try #require(try failure(signIn.receive(.password(bytes), pendingBytes: 0)), "\(name)")
        #expect(fields["C"] == "28P01", "\(name)")
    }

    struct RefusedParameter: Sendable, CustomStringConvertible {
        var key: String
        var value: String
        var code: String
        init(_ key: String, _ value: String, _ code: String) {
            self.key = key
            self.value = value
            self.code = code
        }
        var description: String { "\(key)=\(value)" }
    }

    @Test(arguments: [
        RefusedParameter("options", "-c search_path=evil", "28000"),
        RefusedParameter("options", "-c default_transaction_read_only=off", "28000"),
        RefusedParameter("Options", "-c x=y", "28000"),
        RefusedParameter("replication", "true", "28000"),
        RefusedParameter("replication", "database", "28000"),
        RefusedParameter("client_encoding", "SJIS", "22023"),
        RefusedParameter("client_encoding", "BIG5", "22023"),
        RefusedParameter("client_encoding", "GB18030", "22023"),
        RefusedParameter("search_path", "public, pg_catalog", "28000"),
        RefusedParameter("Search_Path", "\"$user\",PG_CATALOG", "28000"),
        RefusedParameter("session_authorization", "postgres", "28000"),
        RefusedParameter("role", "admin", "28000"),
        RefusedParameter("default_transaction_read_only", "off", "28000"),
        RefusedParameter("database", "postgres", "3D000"),
        RefusedParameter("database", "prod-db2", "3D000"),
    ])
    func refusedStartupParameters(_ parameter: RefusedParameter) throws {
        var signIn = makeSignIn()
        let step = signIn.receive(startup([("user", "alice"), (parameter.key, parameter.value)]), pendingBytes: 0)
        let fields = try #require(try failure(step), "\(parameter)")
        #expect(fields["C"] == parameter.code, "\(parameter)")
    }

    @Test(arguments: [
        ("client_encoding", "UTF8"),
        ("client_encoding", "utf-8"),
        ("client_encoding", "UNICODE"),
        ("client_encoding", "SQL_ASCII"),
        ("options", ""),
        ("options", " \t "),
        ("replication", "false"),
        ("replication", "off"),
        ("replication", "0"),
        ("database", "prod-db"),
        ("database", "app_production"),
        ("database", "alice"), // libpq's default database is the user name
        ("extra_float_digits", "3"),
        ("DateStyle", "ISO, MDY"),
    ])
    func acceptedStartupParameters(_ key: String, _ value: String) throws {
        var signIn = makeSignIn()
        let step = signIn.receive(startup([("user", "alice"), (key, value)]), pendingBytes: 0)
        #expect(isSend(step), "\(key)=\(value)")
    }

    @Test func missingUserFails() throws {
        var noUser = makeSignIn()
        #expect(try failure(noUser.receive(startup([("database", Self.resource)]), pendingBytes: 0))?["C"] == "28000")
        var empty = makeSignIn()
        #expect(try failure(empty.receive(startup([("user", "")]), pendingBytes: 0))?["C"] == "28000")
    }

    @Test func newerProtocolMinorIsNegotiatedDownBeforeTheAuthenticationRequest() throws {
        var signIn = makeSignIn()
        let frames = try sent(signIn.receive(startup([("user", "alice")], minor: 2), pendingBytes: 0))
        try #require(frames.count == 2)
        #expect(frames[0].message == .negotiateProtocolVersion)
        #expect(Array(frames[0].bytes.readableBytesView) == B.typed("v", B.join(B.int32(0), B.int32(0))), "version 3.0, no options")
        #expect(frames[1].message == .authentication(.cleartextPassword))
    }

    @Test func protocolOptionsAreNegotiatedAway() throws {
        var signIn = makeSignIn()
        let frames = try sent(signIn.receive(startup([("user", "alice"), ("_pq_.compression", "zstd")]), pendingBytes: 0))
        try #require(frames.count == 2)
        #expect(Array(frames[0].bytes.readableBytesView)
            == B.typed("v", B.join(B.int32(0), B.int32(1), B.cString("_pq_.compression"))))
        #expect(frames[1].message == .authentication(.cleartextPassword))
        // The option is not passed on.
        #expect(signIn.receive(.password(Array("t".utf8)), pendingBytes: 0) == .authenticate(user: "alice", token: "t", parameters: []))
    }

    @Test func cancelRequestIsRecognised() {
        var signIn = makeSignIn()
        #expect(signIn.receive(.cancel(processID: 4242, secret: [9, 8, 7, 6]), pendingBytes: 0) == .cancel(processID: 4242, secret: [9, 8, 7, 6]))
    }

    @Test(arguments: [FrontendMessage.query("SELECT 1"), .sync, .terminate, .password(Array("tok".utf8) + [0]),
                      .parse(statement: "", query: "SELECT 1")])
    func typedMessageBeforeStartupFails(_ message: FrontendMessage) throws {
        var signIn = makeSignIn()
        let fields = try #require(try failure(signIn.receive(message, pendingBytes: 0)))
        #expect(fields["C"] == "08P01")
    }

    @Test func anythingButAPasswordAfterStartupFails() throws {
        var signIn = makeSignIn()
        _ = signIn.receive(startup([("user", "alice")]), pendingBytes: 0)
        let fields = try #require(try failure(signIn.receive(.query("SELECT 1"), pendingBytes: 0)))
        #expect(fields["M"]?.contains("password") == true)
    }

    @Test func bytesFromTheWireGoThroughDecoderAndSignIn() throws {
        var decoder = FrontendDecoder()
        var signIn = makeSignIn()
        var inbound = ByteBuffer(bytes: B.join(B.startup([("user", "carol"), ("database", Self.upstreamDatabase)]),
                                               B.password(B.cString("gh_token"))))
        var steps: [ClientSignIn.Step] = []
        while let frame = try decoder.next(&inbound) {
            steps.append(signIn.receive(frame.message, pendingBytes: inbound.readableBytes))
        }
        try #require(steps.count == 2)
        #expect(isSend(steps[0]))
        #expect(steps[1] == .authenticate(user: "carol", token: "gh_token", parameters: []))
    }
}

// MARK: - UpstreamLogin and SCRAM

/// SCRAM-SHA-256 computed here from its definition (RFC 5802 with RFC 7677's hash), to check
/// `ScramSHA256Client` against something that is not itself.
enum ScramReference {
    /// PBKDF2-HMAC-SHA-256 for one 32-byte block (RFC 8018 §5.2).
    static func saltedPassword(_ password: String, salt: [UInt8], iterations: Int) -> [UInt8] {
        let key = SymmetricKey(data: Array(password.utf8))
        var block = Array(HMAC<SHA256>.authenticationCode(for: salt + [0, 0, 0, 1], using: key))
        var result = block
        for _ in 1..<iterations {
            block = Array(HMAC<SHA256>.authenticationCode(for: block, using: key))
            for index in result.indices { result[index] ^= block[index] }
        }
        return result
    }

    /// The client-final-message and the server-final-message of an exchange whose client-first-bare
    /// is `n=<user>,r=<clientNonce>`.
    static func exchange(user: String, salted: [UInt8], clientNonce: String, serverFirst: String) throws -> (clientFinal: String, serverFinal: String) {
        let attributes = Dictionary(uniqueKeysWithValues: serverFirst.split(separator: ",").map { ($0.first!, String($0.dropFirst(2))) })
        let nonce = try #require(attributes["r"])
        let saltedKey = SymmetricKey(data: salted)
        let clientKey = Array(HMAC<SHA256>.authenticationCode(for: Array("Client Key".utf8), using: saltedKey))
        let storedKey = Array(SHA256.hash(data: clientKey))
        let withoutProof = "c=biws,r=\(nonce)"
        let authMessage = Array("n=\(user),r=\(clientNonce),\(serverFirst),\(withoutProof)".utf8)
        let clientSignature = Array(HMAC<SHA256>.authenticationCode(for: authMessage, using: SymmetricKey(data: storedKey)))
        let proof = zip(clientKey, clientSignature).map { $0 ^ $1 }
        let serverKey = Array(HMAC<SHA256>.authenticationCode(for: Array("Server Key".utf8), using: saltedKey))
        let serverSignature = Array(HMAC<SHA256>.authenticationCode(for: authMessage, using: SymmetricKey(data: serverKey)))
        return ("\(withoutProof),p=\(Data(proof).base64EncodedString())", "v=\(Data(serverSignature).base64EncodedString())")
    }
}
