import Foundation
import GatehouseAPI
import GatehouseCore
import HTTPTypes
import NIOCore
import OpenAPIRuntime
import Testing
@testable import GatehouseServer

/// `POST /v1/check` is read and answered by `CheckWire` for the plain forms of its body and by the
/// generated layer for everything else; these tests hold the two to one contract.
@Suite("The check endpoint's own reader and writer")
struct CheckWireTests {
    static func generated(_ body: [UInt8]) -> Components.Schemas.CheckInput? {
        try? JSONDecoder().decode(Components.Schemas.CheckInput.self, from: Data(body))
    }

    static func fast(_ body: [UInt8]) -> Components.Schemas.CheckInput? {
        body.withUnsafeBytes { CheckWire.decode($0) }
    }

    /// The bodies clients send: each is read here (not handed on), and read as Foundation reads it.
    static let plain: [String] = [
        #"{"resource":"prod-db","role":"read"}"#,
        #"{"role":"read","resource":"prod-db","principal":"alice"}"#,
        #"{"resource":"prod-db","role":"read","principal":null}"#,
        " {\n  \"resource\" : \"prod-db\",\t\"role\": \"write\"\r\n} \n",
        #"{"resource":"prod-db","action":{"kind":"sql","text":"SELECT 1"}}"#,
        #"{"action":{"text":"DELETE FROM t WHERE id = 1","kind":"sql"},"resource":"prod-db","principal":"bob"}"#,
        #"{"resource":"prod-host","action":{"kind":"shell","text":"kubectl get pods -n \"prod\" \/ x\\y\nz\tq\b\f\r"}}"#,
        #"{"resource":"prod-db","action":{"kind":"sql","text":"SELECT 'é😀' AS x"}}"#,
        #"{"resource":"Prod-DB","role":"../x"}"#,  // not names: read here, refused by the handler as the generated route refuses them
    ]

    @Test("the plain forms are read here, and exactly as the generated layer reads them")
    func plainForms() throws {
        for text in Self.plain {
            let body = Array(text.utf8)
            let fast = try #require(Self.fast(body), "not read: \(text)")
            #expect(fast == Self.generated(body), "\(text)")
        }
    }

    /// Bodies the reader leaves to the generated layer: it would read some of them differently
    /// (`\u` escapes, duplicate keys) or not at all.
    @Test("everything else is handed on", arguments: [
        "", "{}", "[]", "null", #""resource""#, #"{"resource":"prod-db"}"#, #"{"role":"read"}"#,
        #"{"resource":"prod-db","role":"read","extra":1}"#, #"{"resource":"prod-db","role":"read","role":"write"}"#,
        #"{"resource":"prod-db","role":"read","action":{"kind":"sql","text":"x"}}"#,
        #"{"resource":"prod-db","role":"r\u0065ad"}"#, #"{"resource":"prod-db","role":5}"#, #"{"resource":"prod-db","role":null}"#,
        #"{"resource":"prod-db","role":"read"} x"#, #"{"resource":"prod-db","role":"read",}"#, #"{"resource":"prod-db" "role":"read"}"#,
        #"{"resource":"prod-db","action":{"kind":"python","text":"x"}}"#, #"{"resource":"prod-db","action":{"kind":"sql"}}"#,
        #"{"resource":"prod-db","action":{"kind":"sql","text":"x","extra":true}}"#, #"{"resource":"prod-db","action":"SELECT 1"}"#,
        "{\"resource\":\"prod-db\",\"role\":\"re\nad\"}", #"{"resource":"prod-db","role":"read""#, #"{"resource":"prod-db","role":"read\"}"#,
        #"{"resource":"prod-db","role":"read","principal":nul}"#, "\u{FEFF}{\"resource\":\"prod-db\",\"role\":\"read\"}",
    ])
    func handedOn(_ text: String) {
        #expect(Self.fast(Array(text.utf8)) == nil)
    }

    @Test("invalid UTF-8 in a string is handed on")
    func invalidUTF8() {
        for bad: [UInt8] in [[0xFF], [0xC3], [0xED, 0xA0, 0x80], [0xC0, 0xAF]] {
            let body = Array(#"{"resource":"prod-db","role":"r"#.utf8) + bad + Array(#""}"#.utf8)
            #expect(Self.fast(body) == nil)
            #expect(Self.generated(body) == nil)
        }
    }

    /// Every byte of every plain body deleted, replaced by one of a set of JSON-significant bytes, or
    /// with one inserted: whatever the reader still reads, Foundation reads the same way.
    @Test("bodies one byte away from a plain form: read alike or handed on")
    func mutations() {
        let replacements: [UInt8] = Array(#"{}[]",:\/ nu0a"#.utf8) + [0x00, 0x0A, 0x7F, 0x80, 0xC3, 0xFF]
        var compared = 0, readHere = 0
        for text in Self.plain {
            let body = Array(text.utf8)
            for index in body.indices {
                var variants: [[UInt8]] = [Array(body[..<index] + body[(index + 1)...])]
                for byte in replacements {
                    var replaced = body
                    replaced[index] = byte
                    variants.append(replaced)
                    var inserted = body
                    inserted.insert(byte, at: index)
                    variants.append(inserted)
                }
                for variant in variants {
                    compared += 1
                    guard let fast = Self.fast(variant) else { continue }
                    readHere += 1
                    #expect(fast == Self.generated(variant), "\(String(decoding: variant, as: UTF8.self).debugDescription)")
                }
            }
        }
        #expect(compared > 10_000)
        #expect(readHere > 1_000)  // the comparison is not empty: many variants are still plain bodies
    }

    // MARK: writing

    static func foundationEncoded(_ result: Components.Schemas.CheckResult) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let transcoder = PreciseDateTranscoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(try transcoder.encode(date))
        }
        return Array(try encoder.encode(result))
    }

    static func randomText(_ generator: inout some RandomNumberGenerator) -> String {
        let alphabet: [String] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\r", "\t", "\u{8}", "\u{C}", "\u{0}", "\u{1}", "\u{1F}",
                                  "\u{7F}", "é", "😀", "\u{2028}", "'", "{", "}", ",", ":"]
        return (0..<Int.random(in: 0...12, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }.joined()
    }

    @Test("answers are the bytes Foundation's encoder writes with the server's settings")
    func answersMatchFoundation() throws {
        var generator = SystemRandomNumberGenerator()
        func text() -> String { Self.randomText(&generator) }
        func maybe<T>(_ value: @autoclosure () -> T) -> T? { Bool.random(using: &generator) ? value() : nil }
        let decisions: [Components.Schemas.CheckResult.DecisionPayload] = [.allow, .approvalRequired, .deny]
        let risks: [Components.Schemas.Risk] = [.read, .write, .dangerous, .forbidden]
        for _ in 0..<3_000 {
            var result = Components.Schemas.CheckResult(decision: decisions.randomElement(using: &generator)!, principal: text(), resource: text())
            result.role = maybe(text())
            result.usedGrant = maybe(Bool.random(using: &generator))
            result.requestCommands = maybe((0..<Int.random(in: 0...3, using: &generator)).map { _ in text() })
            result.reason = maybe(text())
            result.grantId = maybe(text())
            result.expiresAt = maybe(Date(timeIntervalSince1970: Double(Int.random(in: 0...4_000_000_000_000, using: &generator)) / 1000))
            result.requestCommand = maybe(text())
            result.classification = maybe(.init(
                kind: Bool.random(using: &generator) ? .sql : .shell, risk: risks.randomElement(using: &generator)!,
                statements: Int.random(in: 0...100, using: &generator),
                findings: (0..<Int.random(in: 0...3, using: &generator)).map { _ in
                    .init(category: text(), level: risks.randomElement(using: &generator)!, statement: Int.random(in: 1...9, using: &generator),
                          position: Int.random(in: -1...100_000, using: &generator), detail: text())
                },
                normalized: maybe(text()), sha256: text()))
            let written = Array(buffer: CheckWire.encode(result))
            #expect(written == (try Self.foundationEncoded(result)), "\(String(decoding: written, as: UTF8.self))")
        }
    }

    // MARK: which requests take this path

    @Test("only a plain JSON content type and a plain or absent Accept take this path")
    func headers() {
        func takes(_ contentType: String?, _ accept: String? = nil) -> Bool {
            var fields = HTTPFields()
            if let contentType { fields[.contentType] = contentType }
            if let accept { fields[.accept] = accept }
            return CheckFastPath.plainJSON(fields)
        }
        #expect(takes("application/json"))
        #expect(takes("Application/JSON; charset=utf-8"))
        #expect(takes("application/json", "*/*"))
        #expect(takes("application/json", "application/json"))
        #expect(!takes(nil))
        #expect(!takes("text/plain"))
        #expect(!takes("application/problem+json"))
        #expect(!takes("application/jsonx"))
        #expect(!takes("application/json", "text/html"))
        #expect(!takes("application/json", "application/json, text/plain"))
    }
}

/// Over HTTP: the same check sent in a plain form (answered by `CheckFastPath`) and with an `Accept`
/// list (answered by the generated route) gets the same status, content type and bytes, allowed,
/// refused or in error.
@Suite("The check endpoint's two paths over HTTP")
struct CheckPathsTests {
    @Test("every kind of answer is the same byte for byte on both paths")
    func sameAnswers() async throws {
        try await TestServer.with { server in
            let t = try await server.tokens("alice", "bob", "erin")
            #expect(try await server.request(t["alice"]!, role: "read", duration: "1h", reason: "INC-1 read the orders").status == 201)
            let cases: [(token: String, body: String)] = [
                (t["alice"]!, #"{"resource":"prod-db","role":"read"}"#),                       // allow, with a grant
                (t["alice"]!, #"{"resource":"prod-db","role":"write"}"#),                      // approval required
                (t["alice"]!, #"{"resource":"nowhere","role":"read"}"#),                       // deny
                (t["alice"]!, #"{"resource":"prod-db","role":"read","principal":"bob"}"#),     // 403: not an admin
                (t["erin"]!, #"{"resource":"prod-db","role":"read","principal":"alice"}"#),    // an admin on alice's behalf
                (t["alice"]!, #"{"resource":"Prod-DB","role":"read"}"#),                       // 400: not a name
                (t["alice"]!, #"{"resource":"prod-db","action":{"kind":"sql","text":"SELECT * FROM orders WHERE id = 7"}}"#),
                (t["alice"]!, #"{"resource":"prod-db","action":{"kind":"sql","text":"DELETE FROM orders -- all\n"}}"#),
                (t["alice"]!, #"{"resource":"prod-db","action":{"kind":"sql","text":"DROP DATABASE prod"}}"#),
                (t["bob"]!, #"{"resource":"prod-host","action":{"kind":"shell","text":"helm uninstall \"web\" \/ now"}}"#),
                (t["alice"]!, #"{"resource":"prod-db","action":{"kind":"sql","text":"SELECT 1\u0000"}}"#),  // 400: a NUL byte; handed on by both forms
                (t["alice"]!, #"{"resource":"prod-db","action":{"kind":"sql","text":""}}"#),   // 400: empty action
            ]
            var fastAnswers = 0
            for (token, body) in cases {
                if CheckWireTests.fast(Array(body.utf8)) != nil { fastAnswers += 1 }
                let plain = try await server.send(.POST, "/v1/check", token: token, rawBody: Data(body.utf8))
                let generated = try await server.send(.POST, "/v1/check", token: token, rawBody: Data(body.utf8),
                                                      headers: [("Accept", "application/json, application/problem+json")])
                #expect(plain.status == generated.status, "\(body)")
                #expect(plain.headers["Content-Type"] == generated.headers["Content-Type"], "\(body)")
                #expect(plain.headers["Cache-Control"] == ["no-store"])
                #expect(String(decoding: plain.body, as: UTF8.self) == String(decoding: generated.body, as: UTF8.self), "\(body)")
            }
            #expect(fastAnswers == cases.count - 1)
            // The statuses the cases were written for, so a change in what one of them tests is noticed.
            let statuses = try await cases.asyncMap { try await server.send(.POST, "/v1/check", token: $0.token, rawBody: Data($0.body.utf8)).status }
            #expect(statuses == [200, 200, 200, 403, 200, 400, 200, 200, 200, 200, 400, 400])
        }
    }
}

extension Array {
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await transform(element)) }
        return out
    }
}
