import Crypto
import _CryptoExtras
import Foundation
import GatehouseCore
import NIOCore

/// The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL uses it: no channel binding,
/// the user name left empty (the server takes it from the startup packet).
public struct ScramSHA256Client: Sendable {
    public let password: String
    public let clientNonce: String
    private var clientFirstBare: String { "n=,r=\(clientNonce)" }
    private var expectedServerSignature: [UInt8]?

    public init(password: String, clientNonce: String? = nil) {
        self.password = password
        self.clientNonce = clientNonce ?? Data((0..<18).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
    }

    /// The client-first-message.
    public var firstMessage: String { "n,," + clientFirstBare }

    /// Answers the server-first-message with the client-final-message.
    public mutating func final(serverFirst: String) throws(WireError) -> String {
        var attributes: [Character: String] = [:]
        for part in serverFirst.split(separator: ",") {
            guard part.count >= 2, part.dropFirst().first == "=" else { throw WireError("the database sent a malformed SCRAM message") }
            attributes[part.first!] = String(part.dropFirst(2))
        }
        guard let nonce = attributes["r"], nonce.hasPrefix(clientNonce), nonce.count > clientNonce.count,
              let saltText = attributes["s"], let salt = Data(base64Encoded: saltText),
              let iterationsText = attributes["i"], let iterations = Int(iterationsText), (1...10_000_000).contains(iterations) else {
            throw WireError("the database sent a SCRAM challenge Gatehouse cannot use (nonce, salt or iteration count)")
        }
        let salted: SymmetricKey
        do {
            salted = try KDF.Insecure.PBKDF2.deriveKey(from: Array(password.utf8), salt: salt, using: .sha256,
                                                       outputByteCount: 32, unsafeUncheckedRounds: iterations)
        } catch {
            throw WireError("SCRAM key derivation failed: \(error)")
        }
        let clientKey = Array(HMAC<SHA256>.authenticationCode(for: Array("Client Key".utf8), using: salted))
        let storedKey = Array(SHA256.hash(data: clientKey))
        let withoutProof = "c=biws,r=\(nonce)"
        let authMessage = Array("\(clientFirstBare),\(serverFirst),\(withoutProof)".utf8)
        let clientSignature = Array(HMAC<SHA256>.authenticationCode(for: authMessage, using: SymmetricKey(data: storedKey)))
        let proof = zip(clientKey, clientSignature).map { $0 ^ $1 }
        let serverKey = HMAC<SHA256>.authenticationCode(for: Array("Server Key".utf8), using: salted)
        expectedServerSignature = Array(HMAC<SHA256>.authenticationCode(for: authMessage, using: SymmetricKey(data: Array(serverKey))))
        return "\(withoutProof),p=\(Data(proof).base64EncodedString())"
    }

    /// Checks the server-final-message: the server proves it knew the password too.
    public func verify(serverFinal: String) throws(WireError) {
        guard serverFinal.hasPrefix("v="), let signature = Data(base64Encoded: String(serverFinal.dropFirst(2))),
              let expected = expectedServerSignature, Array(signature) == expected else {
            throw WireError("the database's SCRAM signature does not verify: it may not be the server configured for this resource")
        }
    }
}

/// Signs the proxy in to the database with its own credentials: the password, md5 or SCRAM-SHA-256
/// as the server asks. A pure state machine: it takes the server's messages and says what to send.
public struct UpstreamLogin: Sendable {
    public enum Step: Sendable, Equatable {
        case send(ByteBuffer)
        /// AuthenticationOk: from here on the server's messages go to the client.
        case authenticated
        case failed(String)
        case wait
    }

    let user: String
    let password: String
    private var scram: ScramSHA256Client?
    private var scramVerified = false
    private let nonce: String?
    /// Whether cleartext and md5 may be answered (see `ProxySettings.weakPasswordAllowed`).
    let weakAllowed: Bool

    public init(user: String, password: String, scramNonce: String? = nil, weakAllowed: Bool = false) {
        self.user = user
        self.password = password
        self.nonce = scramNonce
        self.weakAllowed = weakAllowed
    }

    static let weakRefused = "the database asks for the proxy's password in cleartext or md5, but its certificate is not verified: a server pretending to be it would learn the password. Use scram-sha-256 for the proxy's user (password_encryption), `sslmode: verify-full`, or `unverified_password: allow` in the upstream section"

    public mutating func receive(_ message: BackendMessage) -> Step {
        switch message {
        case .authentication(.ok):
            // Once SCRAM has started, only a server that proved it knows the password signs us in.
            if scram != nil, !scramVerified {
                return .failed("the database accepted the sign-in without completing SCRAM; it may not be the server configured for this resource")
            }
            return .authenticated
        case .authentication(.cleartextPassword):
            guard weakAllowed else { return .failed(Self.weakRefused) }
            return .send(Wire.password(Array(password.utf8) + [0]))
        case .authentication(.md5Password(let salt)):
            guard weakAllowed else { return .failed(Self.weakRefused) }
            guard salt.count == 4 else { return .failed("the database sent an MD5 salt of \(salt.count) bytes instead of 4") }
            let inner = Self.md5Hex(Array(password.utf8) + Array(user.utf8))
            let outer = "md5" + Self.md5Hex(Array(inner.utf8) + salt)
            return .send(Wire.password(Array(outer.utf8) + [0]))
        case .authentication(.sasl(let mechanisms)):
            guard mechanisms.contains("SCRAM-SHA-256") else {
                return .failed("the database offers SASL mechanisms \(mechanisms) but not SCRAM-SHA-256")
            }
            let client = ScramSHA256Client(password: password, clientNonce: nonce)
            scram = client
            let first = Array(client.firstMessage.utf8)
            var body = Array("SCRAM-SHA-256".utf8) + [0]
            withUnsafeBytes(of: Int32(first.count).bigEndian) { body += $0 }
            return .send(Wire.password(body + first))
        case .authentication(.saslContinue(let data)):
            guard var client = scram else { return .failed("the database sent a SASL challenge before SASL started") }
            do {
                let final = try client.final(serverFirst: String(decoding: data, as: UTF8.self))
                scram = client
                return .send(Wire.password(Array(final.utf8)))
            } catch {
                return .failed(error.message)
            }
        case .authentication(.saslFinal(let data)):
            guard let client = scram else { return .failed("the database sent a SASL result before SASL started") }
            do {
                try client.verify(serverFinal: String(decoding: data, as: UTF8.self))
                scramVerified = true
                return .wait
            } catch {
                return .failed(error.message)
            }
        case .authentication(.unsupported(let code)):
            return .failed("the database asks for an authentication method Gatehouse does not speak (code \(code)); use scram-sha-256, md5 or password for the proxy's user")
        case .errorResponse(let fields):
            return .failed(fields["M"] ?? "the database refused the proxy's sign-in")
        case .negotiateProtocolVersion:
            return .wait
        default:
            return .failed("the database sent an unexpected message while the proxy signed in")
        }
    }

    static func md5Hex(_ bytes: [UInt8]) -> String {
        Hex.encode(Insecure.MD5.hash(data: bytes))
    }
}
