import Foundation
import GatehouseCore
import Testing

@Suite("RFC 3339 formatting")
struct RFC3339Tests {
    @Test("matches Foundation's ISO 8601 formatter to the second, with the stored milliseconds",
          arguments: [Int64(0), 951_782_400_000, 951_868_799_999, 1_709_164_800_123, 1_800_000_000_456, 4_102_444_800_000,
                      -1, -86_400_001, 253_402_300_799_999])
    func matchesFoundation(ms: Int64) {
        let date = Date(unixMilliseconds: ms)
        let seconds = Date(timeIntervalSince1970: TimeInterval(ms >= 0 ? ms / 1000 : (ms - 999) / 1000))
        let expected = Date.ISO8601FormatStyle(timeZone: .gmt).format(seconds).dropLast()
            + String(format: ".%03dZ", Int(((ms % 1000) + 1000) % 1000))
        #expect(date.rfc3339 == expected)
    }

    @Test("every day of 2024 and 2100 (leap and non-leap century) formats like Foundation")
    func everyDay() {
        for start in [Int64(1_704_067_200), 4_102_444_800] {
            for day in Int64(0)..<367 {
                let seconds = start + day * 86_400 + 45_296
                let date = Date(timeIntervalSince1970: TimeInterval(seconds))
                #expect(date.rfc3339 == Date.ISO8601FormatStyle(timeZone: .gmt).format(date).dropLast() + ".000Z")
            }
        }
    }
}
