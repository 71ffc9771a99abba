@testable import GatehouseServer
import Testing

@Suite("Authorization header")
struct BearerTests {
    @Test("bearer tokens are read with a case-insensitive scheme and surrounding spaces trimmed",
          arguments: [("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER   abc  ", "abc"), ("Bearer a b", "a b")])
    func parsed(header: String, token: String) {
        #expect(RequestInfo(authorization: header, remoteAddress: nil).bearerToken == token)
    }

    @Test("other schemes and malformed headers give no token", arguments: ["Basic abc", "Bearer", "Bearerabc", "", "Token abc", "Bearer\tabc"])
    func refused(header: String) {
        let token = RequestInfo(authorization: header, remoteAddress: nil).bearerToken
        #expect(token == nil || token == "", "\(header) -> \(token ?? "nil")")
    }
}
