import Crypto
import Foundation
import NIOCore
import Testing
@testable import GatehouseProxy

@Suite struct UpstreamLoginTests {
    typealias B = WireBytes

    // RFC 7677 §3.
    static let clientNonce = "rOprNGfwEbeRWgbNEkqO"
    static let serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    static let rfcClientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    static let rfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    // The same exchange with PostgreSQL's empty user name (`n=,r=...`), computed outside Swift
    // (Python's hashlib/hmac) and by `ScramReference` below.
    static let emptyUserClientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=qvT2SWdEH5Q06albL+hjSYuUhCG7VndFyzIb7CK4n9k="
    static let emptyUserServerFinal = "v=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg="

    /// RFC 7677's salted password for "pencil"; computed once, it takes 4096 HMACs.
    static let salted = ScramReference.saltedPassword("pencil", salt: Array(Data(base64Encoded: "W22ZaJ0SNY7soEsUEjb6gQ==")!), iterations: 4096)

    private func password(_ step: UpstreamLogin.Step, sourceLocation: SourceLocation = #_sourceLocation) throws -> [UInt8]? {
        guard case .send(let bytes) = step else {
            Issue.record("expected .send, got \(step)", sourceLocation: sourceLocation)
            return nil
        }
        #expect(bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) == UInt8(ascii: "p"), sourceLocation: sourceLocation)
        let frame = try B.frontendFrame(Array(bytes.readableBytesView), sourceLocation: sourceLocation)
        guard case .password(let body) = frame.message else { return nil }
        return body
    }

    private func isFailed(_ step: UpstreamLogin.Step) -> Bool {
        if case .failed = step { return true }
        return false
    }

    private func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef")
        return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] })
    }

    private func wireError(_ body: () throws -> Void) -> WireError? {
        do {
            try body()
            return nil
        } catch {
            return (error as? WireError) ?? WireError("\(error)")
        }
    }

    // MARK: password and md5

    @Test func cleartextPasswordIsSentWithItsNUL() throws {
        var login = UpstreamLogin(user: "gatehouse", password: "s3cret", weakAllowed: true)
        #expect(try password(login.receive(.authentication(.cleartextPassword))) == Array("s3cret".utf8) + [0])
    }

    @Test func md5AnswerMatchesPostgresFormula() throws {
        let user = "postgres", secret = "secret"
        let salt: [UInt8] = [0x01, 0x02, 0x03, 0x04]
        let inner = hex(Insecure.MD5.hash(data: Array((secret + user).utf8)))
        let expected = "md5" + hex(Insecure.MD5.hash(data: Array(inner.utf8) + salt))
        #expect(expected == "md5bb41a296aab6baccb36ff243a562abff", "the same value computed with Python's hashlib")

        var login = UpstreamLogin(user: user, password: secret, weakAllowed: true)
        #expect(try password(login.receive(.authentication(.md5Password(salt: salt)))) == Array(expected.utf8) + [0])
        #expect(UpstreamLogin.md5Hex(Array("abc".utf8)) == "900150983cd24fb0d6963f7d28e17f72")
    }

    @Test func md5WithoutAFourByteSaltFails() {
        var login = UpstreamLogin(user: "u", password: "p", weakAllowed: true)
        #expect(isFailed(login.receive(.authentication(.md5Password(salt: [1, 2, 3])))))
    }

    @Test func cleartextAndMD5AreRefusedToAnUnverifiedServer() throws {
        var login = UpstreamLogin(user: "u", password: "p", weakAllowed: false)
        guard case .failed(let why) = login.receive(.authentication(.cleartextPassword)) else { Issue.record("cleartext was answered"); return }
        #expect(why.contains("not verified"))
        var md5 = UpstreamLogin(user: "u", password: "p", weakAllowed: false)
        #expect(isFailed(md5.receive(.authentication(.md5Password(salt: [1, 2, 3, 4])))))
    }

    // MARK: SCRAM-SHA-256

    @Test func referenceImplementationReproducesRFC7677() throws {
        let exchange = try ScramReference.exchange(user: "user", salted: Self.salted, clientNonce: Self.clientNonce, serverFirst: Self.serverFirst)
        #expect(exchange.clientFinal == Self.rfcClientFinal)
        #expect(exchange.serverFinal == Self.rfcServerFinal)
    }

    @Test func scramClientWithTheRFC7677Vector() throws {
        // PostgreSQL ignores the SCRAM user name and the client sends `n=`, so the proof covers
        // `n=,r=...` rather than RFC 7677's `n=user,r=...`.
        let expected = try ScramReference.exchange(user: "", salted: Self.salted, clientNonce: Self.clientNonce, serverFirst: Self.serverFirst)
        #expect(expected.clientFinal == Self.emptyUserClientFinal)
        #expect(expected.serverFinal == Self.emptyUserServerFinal)

        var client = ScramSHA256Client(password: "pencil", clientNonce: Self.clientNonce)
        #expect(client.firstMessage == "n,,n=,r=rOprNGfwEbeRWgbNEkqO")
        let final = try client.final(serverFirst: Self.serverFirst)
        #expect(final == expected.clientFinal)
        #expect(final.hasPrefix("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p="))
        let verifier = client
        let good = wireError { try verifier.verify(serverFinal: expected.serverFinal) }
        #expect(good == nil, "the server's signature verifies")
        let rfc = wireError { try verifier.verify(serverFinal: Self.rfcServerFinal) }
        #expect(rfc != nil, "RFC 7677's signature covers `n=user`, not what this client sent")
    }

    @Test func scramRejectsAWrongServerSignature() throws {
        var client = ScramSHA256Client(password: "pencil", clientNonce: Self.clientNonce)
        _ = try client.final(serverFirst: Self.serverFirst)
        let verifier = client
        let good = wireError { try verifier.verify(serverFinal: Self.emptyUserServerFinal) }
        #expect(good == nil)
        let altered = String(Self.emptyUserServerFinal.dropLast(2)) + "A="
        for wrong in ["v=" + Data(count: 32).base64EncodedString(), "e=invalid-proof", "v=not base64!", altered, ""] {
            let refused = wireError { try verifier.verify(serverFinal: wrong) }
            #expect(refused != nil, "\(wrong)")
        }

        let unstarted = ScramSHA256Client(password: "pencil", clientNonce: Self.clientNonce)
        let early = wireError { try unstarted.verify(serverFinal: Self.emptyUserServerFinal) }
        #expect(early != nil, "no signature is expected before the final message")
    }

    @Test(arguments: [
        "r=XXXXrOprNGfwEbeRWgbNEkqO%hvY,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", // nonce does not start with ours
        "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", // no server part in the nonce
        "r=rOprNGfwEbeRWgbNEkqO%hvY,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
        "r=rOprNGfwEbeRWgbNEkqO%hvY,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999",
        "r=rOprNGfwEbeRWgbNEkqO%hvY,s=not*base64,i=4096",
        "r=rOprNGfwEbeRWgbNEkqO%hvY,i=4096",
        "garbage",
        "",
    ])
    func scramRejectsBadServerFirstMessages(_ serverFirst: String) {
        var client = ScramSHA256Client(password: "pencil", clientNonce: Self.clientNonce)
        let refused = wireError { _ = try client.final(serverFirst: serverFirst) }
        #expect(refused != nil)
    }

    @Test func randomClientNonceIsFreshBase64() {
        let a = ScramSHA256Client(password: "p"), b = ScramSHA256Client(password: "p")
        #expect(a.clientNonce != b.clientNonce)
        #expect(Data(base64Encoded: a.clientNonce)?.count == 18)
    }

    @Test func upstreamLoginRunsTheWholeSCRAMExchange() throws {
        var login = UpstreamLogin(user: "gatehouse_proxy", password: "pencil", scramNonce: Self.clientNonce)
        let mechanisms = B.join(B.cString("SCRAM-SHA-256-PLUS"), B.cString("SCRAM-SHA-256"), [0])
        let initial = try #require(try password(login.receive(.authentication(BackendMessage.Authentication(code: 10, data: mechanisms)))))
        let first = Array("n,,n=,r=rOprNGfwEbeRWgbNEkqO".utf8)
        #expect(initial == B.join(B.cString("SCRAM-SHA-256"), B.int32(Int32(first.count)), first),
                "SASLInitialResponse: the mechanism, the length of the client-first-message, the message")

        let final = try #require(try password(login.receive(.authentication(.saslContinue(Array(Self.serverFirst.utf8))))))
        #expect(final == Array(Self.emptyUserClientFinal.utf8), "SASLResponse carries the client-final-message without a NUL")

        #expect(login.receive(.authentication(.saslFinal(Array(Self.emptyUserServerFinal.utf8)))) == .wait)
        #expect(login.receive(.negotiateProtocolVersion) == .wait)
        #expect(login.receive(.authentication(.ok)) == .authenticated)
    }

    @Test func upstreamLoginFailsOnAWrongServerSignature() throws {
        var login = UpstreamLogin(user: "u", password: "pencil", scramNonce: Self.clientNonce)
        _ = login.receive(.authentication(BackendMessage.Authentication(code: 10, data: B.join(B.cString("SCRAM-SHA-256"), [0]))))
        _ = login.receive(.authentication(.saslContinue(Array(Self.serverFirst.utf8))))
        #expect(isFailed(login.receive(.authentication(.saslFinal(Array(Self.rfcServerFinal.utf8))))))
    }

    @Test func upstreamLoginFailsOnAForeignServerNonce() {
        var login = UpstreamLogin(user: "u", password: "pencil", scramNonce: Self.clientNonce)
        _ = login.receive(.authentication(BackendMessage.Authentication(code: 10, data: B.join(B.cString("SCRAM-SHA-256"), [0]))))
        let foreign = "r=someoneElsesNonce123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        #expect(isFailed(login.receive(.authentication(.saslContinue(Array(foreign.utf8))))))
    }

    @Test func upstreamLoginFailsWithoutSCRAMSHA256() {
        var login = UpstreamLogin(user: "u", password: "p")
        #expect(isFailed(login.receive(.authentication(BackendMessage.Authentication(code: 10, data: B.join(B.cString("SCRAM-SHA-256-PLUS"), [0]))))))
    }

    @Test func saslMessagesOutOfOrderFail() {
        var early = UpstreamLogin(user: "u", password: "p")
        #expect(isFailed(early.receive(.authentication(.saslContinue(Array(Self.serverFirst.utf8))))))
        var final = UpstreamLogin(user: "u", password: "p")
        #expect(isFailed(final.receive(.authentication(.saslFinal(Array(Self.emptyUserServerFinal.utf8))))))
    }

    @Test func authenticationOkIsAuthenticated() {
        var login = UpstreamLogin(user: "u", password: "p")
        #expect(login.receive(.authentication(.ok)) == .authenticated)
    }

    @Test func errorResponseFailsWithTheDatabasesMessage() {
        var login = UpstreamLogin(user: "u", password: "p")
        let fields = ErrorFields([(UInt8(ascii: "S"), "FATAL"), (UInt8(ascii: "C"), "28P01"),
                                  (UInt8(ascii: "M"), "password authentication failed for user \"u\"")])
        #expect(login.receive(.errorResponse(fields)) == .failed("password authentication failed for user \"u\""))
        var noMessage = UpstreamLogin(user: "u", password: "p")
        #expect(isFailed(noMessage.receive(.errorResponse(ErrorFields([(UInt8(ascii: "C"), "28000")])))))
    }

    @Test(arguments: [Int32(2), 6, 7, 8, 9, 99])
    func unsupportedAuthenticationMethodsFail(_ code: Int32) {
        var login = UpstreamLogin(user: "u", password: "p")
        let step = login.receive(.authentication(BackendMessage.Authentication(code: code, data: [])))
        guard case .failed(let why) = step else {
            Issue.record("code \(code): expected .failed, got \(step)")
            return
        }
        #expect(why.contains("code \(code)"))
    }

    @Test func unexpectedMessagesFail() {
        var login = UpstreamLogin(user: "u", password: "p")
        #expect(isFailed(login.receive(.readyForQuery(status: UInt8(ascii: "I")))))
        #expect(isFailed(login.receive(.parameterStatus(name: "a", value: "b"))))
    }

    @Test func authenticationOkBeforeTheServerSignatureIsRefused() throws {
        // A server (or a man in the middle) that skips AuthenticationSASLFinal never proves it
        // knows the password; the proxy should not treat the exchange as complete.
        var login = UpstreamLogin(user: "u", password: "pencil", scramNonce: Self.clientNonce)
        _ = login.receive(.authentication(BackendMessage.Authentication(code: 10, data: B.join(B.cString("SCRAM-SHA-256"), [0]))))
        _ = login.receive(.authentication(.saslContinue(Array(Self.serverFirst.utf8))))
        let step = login.receive(.authentication(.ok))
        #expect(step != .authenticated)
        #expect(isFailed(step))
    }
}
