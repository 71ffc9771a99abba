import GatehouseCore
import Testing
@testable import GatehouseGuard

@Suite("Remembered classifications are keyed by bytes")
struct ByteExactMemoryTests {
    @Test("texts that Swift calls equal but whose bytes differ are classified separately")
    func canonicallyEquivalentTextsAreNotConfused() async {
        let guardian = ActionGuard()
        // U+037E (Greek question mark) is canonically equivalent to `;`, but PostgreSQL reads it as
        // part of an identifier: one harmless SELECT. With an ASCII `;` it is a second statement.
        let greek = "SELECT 1 AS x\u{037E}DELETE FROM orders"
        let ascii = "SELECT 1 AS x;DELETE FROM orders"
        #expect(greek == ascii, "Swift's String equality is canonical equivalence")
        let first = await guardian.classify(Action(kind: .sql, text: greek), settings: GuardSettings())
        let second = await guardian.classify(Action(kind: .sql, text: ascii), settings: GuardSettings())
        #expect(first.risk == .read)
        #expect(second.risk == .dangerous)
        #expect(guardian.classifyInline(Action(kind: .sql, text: ascii), settings: GuardSettings())?.risk == .dangerous)
    }
}
