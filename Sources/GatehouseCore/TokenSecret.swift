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
}
