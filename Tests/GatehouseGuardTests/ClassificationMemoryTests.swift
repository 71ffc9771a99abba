import GatehouseCore
import Testing
@testable import GatehouseGuard

@Suite("Remembered classifications")
struct ClassificationMemoryTests {
    @Test("a remembered result is dropped when the policy's guard settings change")
    func settingsChange() async {
        let guardian = ActionGuard()
        let truncate = Action(kind: .sql, text: "TRUNCATE sessions")
        #expect(await guardian.classify(truncate, settings: GuardSettings()).risk == .dangerous)
        #expect(await guardian.classify(truncate, settings: GuardSettings()).risk == .dangerous)
        let relaxed = GuardSettings(sqlLevels: ["truncate": .write])
        #expect(await guardian.classify(truncate, settings: relaxed).risk == .write)
        #expect(await guardian.classify(truncate, settings: GuardSettings()).risk == .dangerous)
        // normalize is part of the key: a result without the rebuilt statement is not reused for one with it.
        #expect(await guardian.classify(truncate, settings: GuardSettings(), normalize: true).normalized == "TRUNCATE sessions")
    }
}
