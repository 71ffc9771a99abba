import Foundation
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
}
