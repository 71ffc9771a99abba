import Foundation
import GatehouseTestSupport
import NIOCore
import Testing
@testable import GatehouseProxy

// MARK: - Hand-built protocol bytes (shared by the proxy's unit tests)

/// PostgreSQL protocol messages built byte by byte, independently of `Wire`, and small decoding
/// helpers. Used by `WireTests`, `StatementFlowTests` and `SignInTests`.
enum WireBytes {
    static func join(_ parts: [UInt8]...) -> [UInt8] { parts.flatMap { $0 } }

    static func int16(_ value: Int16) -> [UInt8] {
        let bits = UInt16(bitPattern: value)
        return [UInt8(bits >> 8), UInt8(bits & 0xFF)]
    }

    static func int32(_ value: Int32) -> [UInt8] {
        let bits = UInt32(bitPattern: value)
        return [UInt8(bits >> 24), UInt8((bits >> 16) & 0xFF), UInt8((bits >> 8) & 0xFF), UInt8(bits & 0xFF)]
    }

    static func cString(_ text: String) -> [UInt8] { Array(text.utf8) + [0] }

    /// A typed message: the type byte, an Int32 length counting itself, the body.
    static func typed(_ type: Character, _ body: [UInt8]) -> [UInt8] {
        join([type.asciiValue!], int32(Int32(body.count + 4)), body)
    }

    /// A packet without a type byte (startup phase): Int32 length counting itself, the body.
    static func packet(_ body: [UInt8]) -> [UInt8] { join(int32(Int32(body.count + 4)), body) }

    // Frontend, startup phase.

    static let sslRequestCode: Int32 = 80_877_103
    static let gssEncRequestCode: Int32 = 80_877_104
    static let cancelRequestCode: Int32 = 80_877_102

    static let sslRequest = packet(int32(sslRequestCode))
    static let gssEncRequest = packet(int32(gssEncRequestCode))

    static func cancel(processID: Int32, secret: [UInt8]) -> [UInt8] {
        packet(join(int32(cancelRequestCode), int32(processID), secret))
    }

    static func startup(_ pairs: [(String, String)], major: Int32 = 3, minor: Int32 = 0) -> [UInt8] {
        packet(join(int32((major << 16) | minor), pairs.flatMap { join(cString($0.0), cString($0.1)) }, [0]))
    }

    // Frontend, typed.

    static func query(_ text: String) -> [UInt8] { typed("Q", cString(text)) }

    static func parse(_ name: String, _ query: String, types: [Int32] = []) -> [UInt8] {
        typed("P", join(cString(name), cString(query), int16(Int16(types.count)), types.flatMap { int32($0) }))
    }

    /// What follows the two names in a Bind: one text-format parameter `42`, one binary result column.
    static let bindTail: [UInt8] = join(int16(1), int16(0), int16(1), int32(2), Array("42".utf8), int16(1), int16(1))

    static func bind(portal: String = "", statement: String, tail: [UInt8] = bindTail) -> [UInt8] {
        typed("B", join(cString(portal), cString(statement), tail))
    }

    static func execute(portal: String = "", limit: Int32 = 0) -> [UInt8] { typed("E", join(cString(portal), int32(limit))) }
    static func describe(_ kind: Character, _ name: String) -> [UInt8] { typed("D", join([kind.asciiValue!], cString(name))) }
    static func close(_ kind: Character, _ name: String) -> [UInt8] { typed("C", join([kind.asciiValue!], cString(name))) }
    static let sync = typed("S", [])
    static let flush = typed("H", [])
    static let terminate = typed("X", [])
    /// FunctionCall of OID 1598 with one text argument `1`.
    static let functionCall = typed("F", join(int32(1598), int16(0), int16(1), int32(1), [0x31], int16(0)))
    static func password(_ bytes: [UInt8]) -> [UInt8] { typed("p", bytes) }

    // Backend.

    static func authentication(_ code: Int32, _ data: [UInt8] = []) -> [UInt8] { typed("R", join(int32(code), data)) }
    static func parameterStatus(_ name: String, _ value: String) -> [UInt8] { typed("S", join(cString(name), cString(value))) }
    static func backendKeyData(processID: Int32, secret: [UInt8]) -> [UInt8] { typed("K", join(int32(processID), secret)) }
    static func readyForQuery(_ status: Character = "I") -> [UInt8] { typed("Z", [status.asciiValue!]) }
    static let parseComplete = typed("1", [])
    static let bindComplete = typed("2", [])
    static let closeComplete = typed("3", [])
    static func errorResponse(_ fields: [(Character, String)]) -> [UInt8] {
        typed("E", join(fields.flatMap { join([$0.0.asciiValue!], cString($0.1)) }, [0]))
    }

    // Decoding.

    /// A decoder that has read a startup packet, so it reads typed messages.
    static func typedDecoder(limits: WireLimits = WireLimits()) throws -> FrontendDecoder {
        var decoder = FrontendDecoder(limits: limits)
        var buffer = ByteBuffer(bytes: startup([("user", "alice")]))
        _ = try decoder.next(&buffer)
        guard !decoder.inStartup, buffer.readableBytes == 0 else { throw WireError("the test startup packet was not read") }
        return decoder
    }

    /// Everything `decoder` makes of `bytes` in one buffer: the frames, the error if one was thrown,
    /// and how many bytes were left unread.
    static func decode(_ bytes: [UInt8], with decoder: inout FrontendDecoder) -> (frames: [FrontendFrame], error: WireError?, left: Int) {
        var buffer = ByteBuffer(bytes: bytes)
        var frames: [FrontendFrame] = []
        do throws(WireError) {
            while let frame = try decoder.next(&buffer) { frames.append(frame) }
        } catch {
            return (frames, error, buffer.readableBytes)
        }
        return (frames, nil, buffer.readableBytes)
    }

    /// The error a fresh decoder (startup phase) throws for `bytes`, nil when it throws none.
    static func startupError(_ bytes: [UInt8], limits: WireLimits = WireLimits()) -> WireError? {
        var decoder = FrontendDecoder(limits: limits)
        return decode(bytes, with: &decoder).error
    }

    /// The error a decoder past startup throws for `bytes`, nil when it throws none.
    static func typedError(_ bytes: [UInt8], limits: WireLimits = WireLimits()) throws -> WireError? {
        var decoder = try typedDecoder(limits: limits)
        return decode(bytes, with: &decoder).error
    }

    /// All typed messages in `buffer`, which must hold whole messages only.
    static func frontendFrames(_ buffer: ByteBuffer, sourceLocation: SourceLocation = #_sourceLocation) throws -> [FrontendFrame] {
        var decoder = try typedDecoder()
        var rest = buffer
        var frames: [FrontendFrame] = []
        while let frame = try decoder.next(&rest) { frames.append(frame) }
        #expect(rest.readableBytes == 0, "bytes left after the last whole message", sourceLocation: sourceLocation)
        return frames
    }

    static func frontendMessages(_ buffer: ByteBuffer, sourceLocation: SourceLocation = #_sourceLocation) throws -> [FrontendMessage] {
        try frontendFrames(buffer, sourceLocation: sourceLocation).map(\.message)
    }

    /// The one typed message `bytes` hold.
    static func frontendFrame(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws -> FrontendFrame {
        let frames = try frontendFrames(ByteBuffer(bytes: bytes), sourceLocation: sourceLocation)
        try #require(frames.count == 1, "expected exactly one message", sourceLocation: sourceLocation)
        return frames[0]
    }

    static func backendFrames(_ buffer: ByteBuffer, sourceLocation: SourceLocation = #_sourceLocation) throws -> [BackendFrame] {
        var decoder = BackendDecoder()
        var rest = buffer
        var frames: [BackendFrame] = []
        while let frame = try decoder.next(&rest) { frames.append(frame) }
        #expect(rest.readableBytes == 0, "bytes left after the last whole message", sourceLocation: sourceLocation)
        return frames
    }

    static func backendFrame(_ buffer: ByteBuffer, sourceLocation: SourceLocation = #_sourceLocation) throws -> BackendFrame {
        let frames = try backendFrames(buffer, sourceLocation: sourceLocation)
        try #require(frames.count == 1, "expected exactly one message", sourceLocation: sourceLocation)
        return frames[0]
    }

    static func backendFrame(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws -> BackendFrame {
        try backendFrame(ByteBuffer(bytes: bytes), sourceLocation: sourceLocation)
    }

    /// The fields of the one ErrorResponse `buffer` holds, nil when it holds anything else.
    static func errorFields(_ buffer: ByteBuffer, sourceLocation: SourceLocation = #_sourceLocation) throws -> ErrorFields? {
        let frame = try backendFrame(buffer, sourceLocation: sourceLocation)
        guard case .errorResponse(let fields) = frame.message else { return nil }
        return fields
    }

    /// The bytes of a typed message after its header, `skip` more bytes and `strings` C strings.
    static func tail(of buffer: ByteBuffer, skip: Int = 0, strings: Int) -> [UInt8] {
        var bytes = Array(buffer.readableBytesView.dropFirst(5 + skip))
        for _ in 0..<strings {
            guard let end = bytes.firstIndex(of: 0) else { return [] }
            bytes.removeSubrange(...end)
        }
        return bytes
    }
}

// MARK: - FrontendDecoder, BackendDecoder, Wire

@Suite struct WireTests {
    typealias B = WireBytes

    // Startup phase.

    @Test func decodesSSLRequest() throws {
        let bytes: [UInt8] = [0x00, 0x00, 0x00, 0x08, 0x04, 0xD2, 0x16, 0x2F]
        #expect(bytes == B.sslRequest)
        var decoder = FrontendDecoder()
        let result = B.decode(bytes, with: &decoder)
        #expect(result.error == nil)
        #expect(result.left == 0)
        let frame = try #require(result.frames.first)
        #expect(result.frames.count == 1)
        #expect(frame.message == .sslRequest)
        #expect(Array(frame.bytes.readableBytesView) == bytes)
        #expect(decoder.inStartup, "an SSLRequest is followed by another startup-phase packet")
    }

    @Test func decodesGSSENCRequest() throws {
        let bytes: [UInt8] = [0x00, 0x00, 0x00, 0x08, 0x04, 0xD2, 0x16, 0x30]
        var decoder = FrontendDecoder()
        let result = B.decode(bytes, with: &decoder)
        #expect(result.error == nil)
        let frame = try #require(result.frames.first)
        #expect(frame.message == .gssEncRequest)
        #expect(decoder.inStartup)
    }

    @Test func decodesCancelRequest() throws {
        let bytes: [UInt8] = [0x00, 0x00, 0x00, 0x10, 0x04, 0xD2, 0x16, 0x2E, 0x00, 0x00, 0x30, 0x39, 0xDE, 0xAD, 0xBE, 0xEF]
        #expect(bytes == B.cancel(processID: 12345, secret: [0xDE, 0xAD, 0xBE, 0xEF]))
        #expect(Array(Wire.cancelRequest(processID: 12345, secret: [0xDE, 0xAD, 0xBE, 0xEF]).readableBytesView) == bytes)
        var decoder = FrontendDecoder()
        let result = B.decode(bytes, with: &decoder)
        #expect(result.error == nil)
        let frame = try #require(result.frames.first)
        #expect(frame.message == .cancel(processID: 12345, secret: [0xDE, 0xAD, 0xBE, 0xEF]))
        #expect(decoder.inStartup)

        // Protocol 3.2 allows a longer secret, up to 256 bytes.
        let long = B.cancel(processID: 7, secret: Array(repeating: 0xAB, count: 256))
        var second = FrontendDecoder()
        let longResult = B.decode(long, with: &second)
        #expect(longResult.error == nil)
        #expect(longResult.frames.first?.message == .cancel(processID: 7, secret: Array(repeating: 0xAB, count: 256)))
    }

    @Test func decodesStartupMessageWithParametersInOrder() throws {
        let pairs = [("user", "alice"), ("database", "prod-db"), ("application_name", "psql"), ("client_encoding", "UTF8")]
        let bytes = B.startup(pairs)
        #expect(Array(bytes.prefix(8)) == [0x00, 0x00, 0x00, UInt8(bytes.count), 0x00, 0x03, 0x00, 0x00])
        #expect(Array(Wire.startup(pairs).readableBytesView) == bytes)
        var decoder = FrontendDecoder()
        let result = B.decode(bytes, with: &decoder)
        #expect(result.error == nil)
        #expect(result.left == 0)
        let frame = try #require(result.frames.first)
        guard case .startup(let parameters) = frame.message else {
            Issue.record("expected a startup message, got \(frame.message)")
            return
        }
        #expect(parameters.protocolMinor == 0)
        #expect(parameters.pairs.map(\.0) == ["user", "database", "application_name", "client_encoding"])
        #expect(parameters.pairs.map(\.1) == ["alice", "prod-db", "psql", "UTF8"])
        #expect(parameters["database"] == "prod-db")
        #expect(parameters["options"] == nil)
        #expect(parameters == StartupParameters(protocolMinor: 0, pairs: pairs))
        #expect(parameters != StartupParameters(protocolMinor: 0, pairs: pairs.reversed()))
        #expect(Array(frame.bytes.readableBytesView) == bytes)
        #expect(!decoder.inStartup, "after the startup packet every message is typed")
    }

    @Test func decodesStartupProtocolMinor() throws {
        var decoder = FrontendDecoder()
        let result = B.decode(B.startup([("user", "bob")], minor: 2), with: &decoder)
        #expect(result.error == nil)
        #expect(result.frames.first?.message == .startup(StartupParameters(protocolMinor: 2, pairs: [("user", "bob")])))
    }

    @Test func sslRequestThenStartupThenTypedInOneBuffer() throws {
        var decoder = FrontendDecoder()
        let result = B.decode(B.join(B.sslRequest, B.startup([("user", "u")]), B.query("SELECT 1"), B.sync), with: &decoder)
        #expect(result.error == nil)
        #expect(result.left == 0)
        #expect(result.frames.map(\.message) == [.sslRequest, .startup(StartupParameters(pairs: [("user", "u")])), .query("SELECT 1"), .sync])
    }

    // Typed messages, built by hand.

    @Test func decodesTypedMessagesBuiltByHand() throws {
        let query: [UInt8] = [0x51, 0x00, 0x00, 0x00, 0x0D, 0x53, 0x45, 0x4C, 0x45, 0x43, 0x54, 0x20, 0x31, 0x00]
        let parse: [UInt8] = [0x50, 0x00, 0x00, 0x00, 0x16, 0x73, 0x00,
                              0x53, 0x45, 0x4C, 0x45, 0x43, 0x54, 0x20, 0x24, 0x31, 0x00,
                              0x00, 0x01, 0x00, 0x00, 0x00, 0x17]
        let bind: [UInt8] = [0x42, 0x00, 0x00, 0x00, 0x0D, 0x00, 0x73, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]
        let execute: [UInt8] = [0x45, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00]
        let describe: [UInt8] = [0x44, 0x00, 0x00, 0x00, 0x07, 0x53, 0x73, 0x00]
        let close: [UInt8] = [0x43, 0x00, 0x00, 0x00, 0x07, 0x50, 0x63, 0x00]
        let sync: [UInt8] = [0x53, 0x00, 0x00, 0x00, 0x04]
        let flush: [UInt8] = [0x48, 0x00, 0x00, 0x00, 0x04]
        let terminate: [UInt8] = [0x58, 0x00, 0x00, 0x00, 0x04]
        let functionCall: [UInt8] = [0x46, 0x00, 0x00, 0x00, 0x13, 0x00, 0x00, 0x06, 0x3E, 0x00, 0x00, 0x00, 0x01,
                                     0x00, 0x00, 0x00, 0x01, 0x31, 0x00, 0x00]
        let password: [UInt8] = [0x70, 0x00, 0x00, 0x00, 0x08, 0x61, 0x62, 0x63, 0x00]

        // The helpers the other suites use build exactly these bytes.
        #expect(B.query("SELECT 1") == query)
        #expect(B.parse("s", "SELECT $1", types: [23]) == parse)
        #expect(B.bind(statement: "s", tail: B.join(B.int16(0), B.int16(0), B.int16(0))) == bind)
        #expect(B.execute() == execute)
        #expect(B.describe("S", "s") == describe)
        #expect(B.close("P", "c") == close)
        #expect(B.sync == sync && B.flush == flush && B.terminate == terminate)
        #expect(B.functionCall == functionCall)
        #expect(Array(Wire.query("SELECT 1").readableBytesView) == query)

        let all = [query, parse, bind, execute, describe, close, sync, flush, terminate, functionCall, password]
        var decoder = try B.typedDecoder()
        let result = B.decode(B.join(all.flatMap { $0 }), with: &decoder)
        #expect(result.error == nil)
        #expect(result.left == 0)
        #expect(result.frames.map(\.message) == [
            .query("SELECT 1"),
            .parse(statement: "s", query: "SELECT $1"),
            .bind(portal: "", statement: "s"),
            .execute(portal: ""),
            .describe,
            .close(kind: UInt8(ascii: "P"), name: "c"),
            .sync,
            .flush,
            .terminate,
            .functionCall,
            .password([0x61, 0x62, 0x63, 0x00]),
        ])
        #expect(result.frames.map { Array($0.bytes.readableBytesView) } == all, "each frame carries its exact bytes")
    }

    @Test func decodesNamedPortalsAndCopyMessages() throws {
        var decoder = try B.typedDecoder()
        let result = B.decode(B.join(
            B.bind(portal: "p1", statement: "s1"), B.execute(portal: "p1", limit: 10), B.close("S", "s1"),
            B.typed("d", [1, 2, 3]), B.typed("c", []), B.typed("f", B.cString("no"))
        ), with: &decoder)
        #expect(result.error == nil)
        #expect(result.frames.map(\.message) == [
            .bind(portal: "p1", statement: "s1"), .execute(portal: "p1"), .close(kind: UInt8(ascii: "S"), name: "s1"),
            .copyData, .copyDone, .copyFail,
        ])
    }

    @Test func messageSplitAcrossBuffersWaitsForTheRest() throws {
        let typed = B.parse("s1", "SELECT $1 -- é", types: [23])
        for cut in 1..<typed.count {
            var decoder = try B.typedDecoder()
            var buffer = ByteBuffer(bytes: typed[..<cut])
            let first = try decoder.next(&buffer)
            let waited = first == nil
            #expect(waited, "a message cut after \(cut) bytes is not whole")
            #expect(buffer.readableBytes == cut, "nothing is consumed while waiting")
            buffer.writeBytes(typed[cut...])
            let second = try decoder.next(&buffer)
            let frame = try #require(second)
            #expect(frame.message == .parse(statement: "s1", query: "SELECT $1 -- é"))
            #expect(Array(frame.bytes.readableBytesView) == typed)
            #expect(buffer.readableBytes == 0)
        }

        let startup = B.startup([("user", "alice"), ("database", "prod-db")])
        for cut in 1..<startup.count {
            var decoder = FrontendDecoder()
            var buffer = ByteBuffer(bytes: startup[..<cut])
            let first = try decoder.next(&buffer)
            let waited = first == nil
            #expect(waited)
            #expect(buffer.readableBytes == cut)
            #expect(decoder.inStartup)
            buffer.writeBytes(startup[cut...])
            let second = try decoder.next(&buffer)
            let frame = try #require(second)
            #expect(frame.message == .startup(StartupParameters(pairs: [("user", "alice"), ("database", "prod-db")])))
            #expect(!decoder.inStartup)
        }
    }

    @Test func emptyBufferNeedsMoreBytes() throws {
        var startup = FrontendDecoder()
        var empty = ByteBuffer()
        let none = try startup.next(&empty)
        let waitedForLength = none == nil
        #expect(waitedForLength)
        var typed = try B.typedDecoder()
        var header = ByteBuffer(bytes: [UInt8(ascii: "Q"), 0, 0])
        let partial = try typed.next(&header)
        let waitedForHeader = partial == nil
        #expect(waitedForHeader)
        #expect(header.readableBytes == 3)
    }

    // Startup-phase errors.

    @Test func startupShorterThanItsHeaderIsAnError() {
        let error = B.startupError([0x00, 0x00, 0x00, 0x07, 0x00, 0x03, 0x00, 0x00])
        #expect(error?.message.contains("shorter than its own header") == true)
        #expect(B.startupError(B.int32(0)) != nil, "the length alone is enough to refuse")
        #expect(B.startupError(B.int32(-8)) != nil)
    }

    @Test func startupLongerThanTheLimitIsAnError() {
        let error = B.startupError(B.int32(10_001))
        #expect(error?.message.contains("longer than the 10000 allowed") == true)
        #expect(B.startupError(B.int32(10_000)) == nil, "exactly the limit waits for the rest")
        var small = WireLimits()
        small.startupBytes = 20
        #expect(B.startupError(B.startup([("user", "a-rather-long-name")]), limits: small) != nil)
        #expect(B.startupError(B.startup([("user", "a")]), limits: small) == nil)
    }

    @Test func protocolVersion2IsRefused() {
        let error = B.startupError(B.startup([("user", "alice")], major: 2))
        #expect(error?.message.contains("unsupported frontend protocol 2.0") == true)
        #expect(B.startupError(B.startup([("user", "alice")], major: 4)) != nil)
    }

    @Test func unterminatedStartupParametersAreAnError() {
        let noEnd = B.packet(B.join(B.int32(3 << 16), B.cString("user"), B.cString("alice")))
        #expect(B.startupError(noEnd)?.message.contains("not terminated by an empty parameter name") == true)
        let noValue = B.packet(B.join(B.int32(3 << 16), B.cString("user")))
        #expect(B.startupError(noValue)?.message.contains("has no value") == true)
        let unterminatedName = B.packet(B.join(B.int32(3 << 16), Array("user".utf8)))
        #expect(B.startupError(unterminatedName) != nil)
        let empty = B.packet(B.int32(3 << 16))
        #expect(B.startupError(empty) != nil)
        let trailing = B.packet(B.join(B.int32(3 << 16), B.cString("user"), B.cString("alice"), [0], [0x41]))
        #expect(B.startupError(trailing)?.message.contains("after its end") == true)
        let notUTF8 = B.packet(B.join(B.int32(3 << 16), [0xFF, 0xFE, 0x00], B.cString("x"), [0]))
        #expect(B.startupError(notUTF8)?.message.contains("UTF-8") == true)
    }

    @Test func malformedSpecialRequestsAreErrors() {
        #expect(B.startupError(B.packet(B.join(B.int32(B.sslRequestCode), [0, 0, 0, 0])))?.message.contains("always 8") == true)
        #expect(B.startupError(B.packet(B.join(B.int32(B.gssEncRequestCode), [0, 0, 0, 0])))?.message.contains("always 8") == true)
        #expect(B.startupError(B.packet(B.join(B.int32(B.cancelRequestCode), B.int32(1))))?.message.contains("CancelRequest") == true)
        #expect(B.startupError(B.cancel(processID: 1, secret: Array(repeating: 0, count: 257))) != nil)
    }

    // Typed-phase errors.

    @Test func typedLengthShorterThanItsFieldIsAnError() throws {
        let error = try B.typedError([UInt8(ascii: "Q"), 0x00, 0x00, 0x00, 0x03])
        #expect(error?.message.contains("shorter than its own length field") == true)
        #expect(try B.typedError(B.join([UInt8(ascii: "Q")], B.int32(-1))) != nil)
        #expect(try B.typedError(B.join([UInt8(ascii: "S")], B.int32(0))) != nil)
    }

    @Test func typedLengthOverTheLimitIsAnError() throws {
        var small = WireLimits()
        small.messageBytes = 64
        let over = B.query(String(repeating: "x", count: 60)) // length 4 + 61 = 65
        #expect(try B.typedError(over, limits: small)?.message.contains("longer than the 64 allowed") == true)
        let exactly = B.query(String(repeating: "x", count: 59)) // length 64
        #expect(try B.typedError(exactly, limits: small) == nil)
        // With the default limit the header alone is refused; the body is never waited for.
        let huge = B.join([UInt8(ascii: "d")], B.int32(Int32(64 << 20) + 1))
        #expect(try B.typedError(huge)?.message.contains("longer than") == true)
        #expect(try B.typedError(B.join([UInt8(ascii: "d")], B.int32(Int32(64 << 20)))) == nil)
    }

    @Test func unknownTypeByteIsAnError() throws {
        #expect(try B.typedError(B.typed("z", []))?.message.contains("unknown message type 'z'") == true)
        #expect(try B.typedError(B.join([0x01], B.int32(4)))?.message.contains("\\x1") == true)
        #expect(try B.typedError(B.typed("Z", [0x49])) != nil, "ReadyForQuery is the server's, not the client's")
    }

    @Test func queryTextMustBeNULTerminatedUTF8() throws {
        let unterminated = B.typed("Q", Array("SELECT 1".utf8))
        #expect(try B.typedError(unterminated)?.message.contains("Query text is not NUL-terminated") == true)
        let invalid = B.typed("Q", [0x53, 0xC3, 0x28, 0x00])
        #expect(try B.typedError(invalid)?.message.contains("Query text is not valid UTF-8") == true)
        let overlong = B.typed("Q", [0xC0, 0xA7, 0x00]) // an overlong encoding of "'"
        #expect(try B.typedError(overlong) != nil)
    }

    @Test func parseWithABadParameterCountIsAnError() throws {
        let tooFew = B.typed("P", B.join(B.cString("s"), B.cString("SELECT $1, $2"), B.int16(2), B.int32(23)))
        #expect(try B.typedError(tooFew)?.message.contains("Parse parameter type list is malformed") == true)
        let negative = B.typed("P", B.join(B.cString("s"), B.cString("SELECT 1"), B.int16(-1)))
        #expect(try B.typedError(negative) != nil)
        let missing = B.typed("P", B.join(B.cString("s"), B.cString("SELECT 1")))
        #expect(try B.typedError(missing) != nil)
        let extra = B.typed("P", B.join(B.cString("s"), B.cString("SELECT 1"), B.int16(0), [0, 0, 0, 23]))
        #expect(try B.typedError(extra) != nil)
        let unterminatedQuery = B.typed("P", B.join(B.cString("s"), Array("SELECT 1".utf8)))
        #expect(try B.typedError(unterminatedQuery)?.message.contains("Parse query is not NUL-terminated") == true)
    }

    @Test func otherMalformedTypedMessagesAreErrors() throws {
        #expect(try B.typedError(B.typed("E", B.cString("p"))) != nil, "Execute without a row limit")
        #expect(try B.typedError(B.typed("E", B.join(B.cString("p"), B.int32(0), [0]))) != nil)
        #expect(try B.typedError(B.typed("D", B.join([UInt8(ascii: "X")], B.cString("s"))))?.message.contains("Describe") == true)
        #expect(try B.typedError(B.typed("C", []))?.message.contains("Close") == true)
        #expect(try B.typedError(B.typed("B", B.cString("portal-only"))) != nil)
    }

    // BackendDecoder.

    @Test func decodesBackendMessages() throws {
        let mechanisms = B.join(B.cString("SCRAM-SHA-256"), B.cString("SCRAM-SHA-256-PLUS"), [0])
        let bytes = B.join(
            B.authentication(10, mechanisms),
            B.parameterStatus("server_version", "17.2"),
            B.backendKeyData(processID: 4242, secret: [1, 2, 3, 4]),
            B.readyForQuery("T"),
            B.typed("C", B.cString("SELECT 1")),
            B.typed("1", []),
            B.typed("3", []),
            B.authentication(5, [9, 8, 7, 6]),
            B.authentication(12, [1]),
            B.authentication(7)
        )
        let frames = try B.backendFrames(ByteBuffer(bytes: bytes))
        #expect(frames.map(\.message) == [
            .authentication(.sasl(mechanisms: ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"])),
            .parameterStatus(name: "server_version", value: "17.2"),
            .backendKeyData(processID: 4242, secret: [1, 2, 3, 4]),
            .readyForQuery(status: UInt8(ascii: "T")),
            .other(UInt8(ascii: "C")),
            .parseComplete,
            .closeComplete,
            .authentication(.md5Password(salt: [9, 8, 7, 6])),
            .authentication(.saslFinal([1])),
            .authentication(.unsupported(code: 7)),
        ])
        #expect(frames.flatMap { Array($0.bytes.readableBytesView) } == bytes)
    }

    @Test func decodesErrorResponseFields() throws {
        let bytes = B.errorResponse([("S", "ERROR"), ("V", "ERROR"), ("C", "42P01"), ("M", "relation \"nope\" does not exist"), ("P", "15")])
        let frame = try B.backendFrame(bytes)
        guard case .errorResponse(let fields) = frame.message else {
            Issue.record("expected an ErrorResponse, got \(frame.message)")
            return
        }
        #expect(fields["S"] == "ERROR")
        #expect(fields["C"] == "42P01")
        #expect(fields["M"] == "relation \"nope\" does not exist")
        #expect(fields["P"] == "15")
        #expect(fields["H"] == nil)
        #expect(fields.fields.map(\.0) == Array("SVCMP".utf8))
    }

    @Test func backendMessageSplitAcrossBuffers() throws {
        let bytes = B.parameterStatus("TimeZone", "UTC")
        for cut in 1..<bytes.count {
            var decoder = BackendDecoder()
            var buffer = ByteBuffer(bytes: bytes[..<cut])
            let first = try decoder.next(&buffer)
            let waited = first == nil
            #expect(waited)
            #expect(buffer.readableBytes == cut)
            buffer.writeBytes(bytes[cut...])
            let second = try decoder.next(&buffer)
            #expect(second?.message == .parameterStatus(name: "TimeZone", value: "UTC"))
        }
    }

    @Test func backendImpossibleLengthsAreErrors() {
        for bytes in [B.join([UInt8(ascii: "Z")], B.int32(3)), B.join([UInt8(ascii: "D")], B.int32(-5)),
                      B.join([UInt8(ascii: "D")], B.int32(Int32((1 << 30) + 1)))] {
            var decoder = BackendDecoder()
            var buffer = ByteBuffer(bytes: bytes)
            var thrown: WireError?
            do throws(WireError) { _ = try decoder.next(&buffer) } catch { thrown = error }
            #expect(thrown?.message.contains("impossible length") == true)
        }
    }

    @Test func wireErrorRoundTripsThroughBackendDecoder() throws {
        let buffer = Wire.error(code: "42501", message: "permission denied for table accounts", hint: "request the write role")
        let fields = try #require(try B.errorFields(buffer))
        #expect(fields["S"] == "ERROR")
        #expect(fields["V"] == "ERROR")
        #expect(fields["C"] == "42501")
        #expect(fields["M"] == "permission denied for table accounts")
        #expect(fields["H"] == "request the write role")
        #expect(fields["D"] == nil)

        let fatal = try #require(try B.errorFields(Wire.error(code: "28000", message: "no", detail: "why", fatal: true)))
        #expect(fatal["S"] == "FATAL")
        #expect(fatal["V"] == "FATAL")
        #expect(fatal["D"] == "why")
        #expect(fatal["H"] == nil)

        // And the exact bytes, built by hand.
        let expected = B.errorResponse([("S", "ERROR"), ("V", "ERROR"), ("C", "C1"), ("M", "m")])
        #expect(Array(Wire.error(code: "C1", message: "m").readableBytesView) == expected)
    }

    @Test func wireBuildersMakeTheProtocolsBytes() throws {
        #expect(Array(Wire.authentication(3).readableBytesView) == [0x52, 0, 0, 0, 8, 0, 0, 0, 3])
        #expect(Array(Wire.authentication(10, [1, 2]).readableBytesView) == B.authentication(10, [1, 2]))
        #expect(Array(Wire.parse(statement: "s", query: "SELECT 1").readableBytesView) == B.parse("s", "SELECT 1"))
        #expect(Array(Wire.password([0x61, 0]).readableBytesView) == B.password([0x61, 0]))
        #expect(Array(Wire.negotiateProtocolVersion(minor: 0, unrecognized: ["_pq_.a"]).readableBytesView)
            == B.typed("v", B.join(B.int32(0), B.int32(1), B.cString("_pq_.a"))))
        let empty = Wire.message(UInt8(ascii: "S")) { _ in }
        #expect(Array(empty.readableBytesView) == B.sync)
    }
}

// MARK: - Fuzzing the client decoder
