import Crypto
import Foundation

/// API tokens: 160 random bits, shown once, stored only as their SHA-256 (a token is a random
/// secret, not a password, so a fast hash is the right tool: nothing to brute-force).
public enum TokenSecret {
    public static let prefix = "ghs_"

    public static func generate() -> String {
        Identifier.make("ghs", bytes: 20)
    }

    public static func hash(_ token: String) -> String {
        hash(bytes: Data(token.utf8))
    }

    /// Lowercase hex SHA-256.
    public static func hash(bytes: Data) -> String {
        Hex.encode(SHA256.hash(data: bytes))
    }

    /// Whether two secrets are equal, in time that depends only on their lengths.
    public static func constantTimeEqual<A: Sequence<UInt8>, B: Sequence<UInt8>>(_ a: A, _ b: B) -> Bool {
        let x = Array(a), y = Array(b)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }

    public static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        constantTimeEqual(a.utf8, b.utf8)
    }
}
