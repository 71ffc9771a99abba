import Foundation
import GatehouseTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Raw bytes at the proxy's port: each bad connection is closed with an error, never crashes or
/// stalls the proxy, and a normal client still gets in afterwards.
@Suite(.serialized) struct HostileInputTests {
    /// Sends `bytes`, then reads until the proxy closes (at most 10 s) and returns what came back.
    static func exchange(port: Int, _ bytes: [UInt8], thenClose: Bool = false) async throws -> (reply: [UInt8], closed: Bool) {
        try await TestPorts.exchange(port: port, bytes, thenClose: thenClose)
    }

    static func int32(_ value: Int32) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }

    static func startup(_ pairs: [(String, String)]) -> [UInt8] {
        var body = int32(3 << 16)
        for (key, value) in pairs { body += Array(key.utf8) + [0] + Array(value.utf8) + [0] }
        body += [0]
        return int32(Int32(body.count + 4)) + body
    }

    @Test func badConnectionsAreClosedAndTheProxyGoesOn() async throws {
        let harness = try await ProxyHarness.start()
        defer { Task { await harness.stop() } }
        try await harness.grant("alice")
        let port = harness.proxyPort
        let sslRequest = Self.int32(8) + Self.int32(80_877_103)
        let cases: [(String, [UInt8])] = [
            ("garbage after SSLRequest", sslRequest + Array("hello, this is not TLS".utf8)),
            ("absurd startup length", Self.int32(Int32.max) + Self.int32(3 << 16)),
            ("negative startup length", Self.int32(-5) + [1, 2, 3, 4]),
            ("protocol 2", Self.int32(8) + Self.int32(2 << 16)),
            ("a typed message before startup", [UInt8(ascii: "Q")] + Self.int32(9) + Array("SELECT".utf8)),
            ("startup without terminator", Self.int32(20) + Self.int32(3 << 16) + Array("user\0alice\0".utf8) + [1]),
            ("replication startup", Self.startup([("user", "alice"), ("replication", "database")])),
            ("options startup", Self.startup([("user", "alice"), ("options", "-c standard_conforming_strings=off")])),
            ("SJIS client encoding", Self.startup([("user", "alice"), ("client_encoding", "SJIS")])),
            ("absurd password length", Self.startup([("user", "alice")]) + [UInt8(ascii: "p")] + Self.int32(Int32.max)),
            ("a 1 MB password before sign-in", Self.startup([("user", "alice")]) + [UInt8(ascii: "p")] + Self.int32(1 << 20)),
            ("query instead of a password", Self.startup([("user", "alice")]) + [UInt8(ascii: "Q")] + Self.int32(13) + Array("SELECT 1\0".utf8)),
        ]
        for (name, bytes) in cases {
            let (reply, closed) = try await Self.exchange(port: port, bytes)
            #expect(closed, "\(name): the proxy closed the connection")
            let text = String(decoding: reply, as: UTF8.self)
            #expect(text.contains("FATAL") || reply.isEmpty || reply == [UInt8(ascii: "N")] , "\(name): \(text)")
        }
        // Half a packet and then nothing more: the connection goes when the client goes.
        for cut in [3, 7, 15] {
            let (_, closed) = try await Self.exchange(port: port, Array(Self.startup([("user", "alice"), ("database", "prod-db")]).prefix(cut)), thenClose: true)
            #expect(closed, "cut at \(cut)")
        }
        // After a sign-in, a message with an absurd length or an unknown type ends that session only.
        let token = harness.tokens["alice"]!
        let signIn = Self.startup([("user", "alice"), ("database", "prod-db")]) + [UInt8(ascii: "p")] + Self.int32(Int32(4 + token.utf8.count + 1)) + Array(token.utf8) + [0]
        for (name, tail) in [("absurd length", [UInt8(ascii: "Q")] + Self.int32(0x7FFF_FFF0)),
                             ("unknown type", [UInt8(ascii: "~")] + Self.int32(4)),
                             ("length below 4", [UInt8(ascii: "Q")] + Self.int32(2))] {
            let (reply, closed) = try await Self.exchange(port: port, signIn + tail)
            let text = String(decoding: reply, as: UTF8.self)
            #expect(closed, "\(name)")
            #expect(text.contains("FATAL") && text.contains("08P01"), "\(name): \(text)")
        }
        #expect(harness.process.isRunning)
        let fine = try await harness.psql("alice", "SELECT count(*) FROM accounts;")
        #expect(fine.stdout.contains("10"), "\(fine)")
    }
}
