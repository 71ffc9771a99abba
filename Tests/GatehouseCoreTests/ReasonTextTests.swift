import Foundation
import GatehouseTestSupport
import Testing
@testable import GatehouseCore

@Suite("Reason text")
struct ReasonTextTests {
    @Test("low-information reasons are recognised; real ones are not", arguments: [
        ("need access", true), ("asdf", true), ("test", true), ("please give me access to prod db asap", true),
        ("aaaa bbbb", true), ("", true),
        ("INC-4411 fix stuck migration", false), ("restart the stuck worker", false), ("look at slow queries", false),
        ("CHG-77 reindex orders", false),
    ])
    func lowInformation(reason: String, low: Bool) {
        #expect(ReasonText.isLowInformation(reason) == low)
    }

    @Test("near-identical reasons are similar; different ones are not")
    func similarity() {
        let base = ReasonText.trigrams("Need to check customer records for the quarterly report")
        #expect(ReasonText.similarity(base, ReasonText.trigrams("need to check customer records for the quarterly report!")) >= 0.99)
        #expect(ReasonText.similarity(base, ReasonText.trigrams("Need to check customer record for the quarterly reports")) >= 0.8)
        #expect(ReasonText.similarity(base, ReasonText.trigrams("INC-7781 rebuild the orders index after failed migration")) < 0.3)
    }

    /// Random ASCII texts over an alphabet that exercises every edge of both rules: capitals, small
    /// letters, digits, `-`, `_`, spaces, punctuation, CR LF.
    static func randomTexts(count: Int, seed: UInt64) -> [String] {
        var generator = SplitMix64(state: seed)
        let alphabet = Array("AZBINCKX09185azq-- _.,:;()/\r\n\t#")
        return (0..<count).map { _ in
            String((0..<Int.random(in: 0...40, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! })
        } + ["INC-1", "ABCDEFGHIJ-1", "ABCDEFGHIJK-1", "A1-2", "a-1", "INC-12a", "INC-12_", "_INC-12", "xINC-1", "INC-1-2", "INC--1",
             "CHG-77/OPS-9", "(INC-4411)", "A-1", "AB-", "AB-x", "-", "--a--", "a-", "\r\nab-cd-\r\n", "INC-4411 fix stuck migration"]
    }

    @Test("ASCII words are read byte by byte exactly as by grapheme cluster, on 20,000 random texts")
    func asciiWordsAgree() throws {
        for text in Self.randomTexts(count: 20_000, seed: 7) {
            let fast = try #require(ReasonText.asciiWords(text), "\(text.debugDescription) is ASCII")
            #expect(fast == ReasonText.characterWords(text), "\(text.debugDescription)")
        }
        #expect(ReasonText.asciiWords("café au lait") == nil, "other text takes the grapheme path")
        #expect(ReasonText.words("Café AU-lait, INC-1") == ["café", "au-lait", "inc-1"])
    }

    @Test("ASCII tickets are scanned exactly as the regular expression finds them, on 20,000 random texts")
    func asciiTicketsAgree() throws {
        for text in Self.randomTexts(count: 20_000, seed: 11) {
            let fast = try #require(SpamScore.asciiTickets(text), "\(text.debugDescription) is ASCII")
            #expect(fast == SpamScore.regexTickets(text), "\(text.debugDescription)")
        }
        #expect(SpamScore.tickets(in: "INC-1 and CHG-77, not ABCDEFGHIJK-1 nor xOPS-2") == ["INC-1", "CHG-77"])
        #expect(SpamScore.asciiTickets("Ünïcode INC-1") == nil)
        #expect(SpamScore.tickets(in: "Ünïcode INC-1") == ["INC-1"])
    }
}
