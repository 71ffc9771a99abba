import NIOCore
import Testing
@testable import GatehouseProxy

@Suite struct WireTests {
    @Test func placeholder() { #expect(Wire.query("x").readableBytes == 7) }
}
