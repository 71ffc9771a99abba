import Foundation
import Testing
@testable import GatehouseCore

@Suite("Identifiers and token secrets")
struct IdentifierTests {
    static let alphabet = Set("0123456789abcdefghjkmnpqrstvwxyz")

    @Test("identifiers carry their prefix and a 16-character random part", arguments: ["req", "grt", "tok"])
    func prefix(prefix: String) {
        let id = Identifier.make(prefix)
        #expect(id.hasPrefix(prefix + "_"))
        let random = id.dropFirst(prefix.count + 1)
        #expect(random.count == 16)
        #expect(random.allSatisfy { Self.alphabet.contains($0) }, "\(id)")
    }

    @Test("10,000 identifiers are all different")
    func uniqueness() {
        let ids = (0..<10_000).map { _ in Identifier.make("req") }
        #expect(Set(ids).count == 10_000)
    }

    @Test("identifiers use the whole alphabet")
    func alphabetCoverage() {
        let seen = Set((0..<2_000).flatMap { _ in Identifier.make("x").dropFirst(2) })
        #expect(seen == Self.alphabet)
    }

    @Test("generated tokens have the ghs_ prefix, 32 random characters, and differ")
    func tokens() {
        let tokens = (0..<1_000).map { _ in TokenSecret.generate() }
        #expect(tokens.allSatisfy { $0.hasPrefix(TokenSecret.prefix) && $0.count == TokenSecret.prefix.count + 32 })
        #expect(Set(tokens).count == tokens.count)
    }

    @Test("token hashes are deterministic lowercase SHA-256 hex")
    func tokenHash() {
        let hash = TokenSecret.hash("abc")
        #expect(hash == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(TokenSecret.hash("abc") == hash)
        #expect(TokenSecret.hash("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let token = TokenSecret.generate()
        let tokenHash = TokenSecret.hash(token)
        #expect(tokenHash.count == 64)
        #expect(tokenHash.allSatisfy { "0123456789abcdef".contains($0) })
        #expect(tokenHash != token)
    }

    @Test("different tokens hash differently")
    func differentTokensDiffer() {
        #expect(TokenSecret.hash("ghs_a") != TokenSecret.hash("ghs_b"))
        #expect(TokenSecret.hash("ghs_a") != TokenSecret.hash("ghs_a "))
        let hashes = Set((0..<1_000).map { _ in TokenSecret.hash(TokenSecret.generate()) })
        #expect(hashes.count == 1_000)
    }

    @Test("ids the server made are well formed; paths, quotes, spaces, non-ASCII and over-long text are not")
    func wellFormedIDs() {
        for prefix in ["req", "grt", "tok", "ses", "msg"] { #expect(Identifier.isWellFormed(Identifier.make(prefix))) }
        #expect(Identifier.isWellFormed("msg_12_abcDEF-09"))
        for bad in ["", "req_1/../x", "req 1", "req_'1", "req_é", "req_\u{0}", String(repeating: "a", count: 65)] {
            #expect(!Identifier.isWellFormed(bad), "\(bad.debugDescription)")
        }
        #expect(Identifier.isWellFormed(String(repeating: "a", count: 64)))
    }

    @Test("secrets compare equal only when every byte is equal")
    func constantTimeComparison() {
        #expect(TokenSecret.constantTimeEqual("csrf_abc", "csrf_abc"))
        #expect(!TokenSecret.constantTimeEqual("csrf_abc", "csrf_abd"))
        #expect(!TokenSecret.constantTimeEqual("csrf_abc", "csrf_ab"))
        #expect(!TokenSecret.constantTimeEqual("", "x"))
    }
}

@Suite("Principal names")
struct PrincipalNameTests {
    @Test("a name is exactly the pattern: no line break after it", arguments: ["alice\n", "alice\r", "alice\r\n", "\nalice", "Alice", ""])
    func refused(_ name: String) {
        #expect(!PolicyLoader.isValidName(name))
    }

    @Test func accepted() {
        #expect(PolicyLoader.isValidName("alice") && PolicyLoader.isValidName("deploy-bot.v2_x"))
        #expect(PolicyLoader.isValidName("0") && PolicyLoader.isValidName(String(repeating: "a", count: 63)))
        #expect(!PolicyLoader.isValidName(String(repeating: "a", count: 64)))
        #expect(!PolicyLoader.isValidName("-a") && !PolicyLoader.isValidName(".a") && !PolicyLoader.isValidName("_a"))
    }

    /// The byte check agrees with the rule written as a regular expression on random strings over an
    /// alphabet of valid and invalid characters (letters in both cases, a line break, non-ASCII).
    @Test func agreesWithThePattern() throws {
        let pattern = try NSRegularExpression(pattern: "\\A[a-z0-9][a-z0-9._-]{0,62}\\z")
        let alphabet = Array("az09._-Z \n\r/é\u{0}")
        var generator = SystemRandomNumberGenerator()
        var accepted = 0
        for round in 0..<20_000 {
            let length = round % 3 == 0 ? Int.random(in: 60...66, using: &generator) : Int.random(in: 0...8, using: &generator)
            let name = String((0..<length).map { _ in
                Int.random(in: 0..<4, using: &generator) == 0 ? alphabet.randomElement(using: &generator)! : Array("abc019")[Int.random(in: 0..<6, using: &generator)]
            })
            let expected = pattern.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) != nil
            #expect(PolicyLoader.isValidName(name) == expected, "\(name.debugDescription)")
            if expected { accepted += 1 }
        }
        #expect(accepted > 1_000 && accepted < 19_000)
    }
}
