import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// A webhook receiver for scripts/bench-notify.sh: answers every `POST /hook` with 200 and records each
/// message's id and its lag (arrival time minus the message's `timestamp`). Native and light, so that what
/// the benchmark measures is the outbox, not a receiver competing for the same two cores.
enum Receiver {
    static func run(port: Int, log path: String) async throws {
        FileManager.default.createFile(atPath: path, contents: nil)
        guard let file = FileHandle(forWritingAtPath: path) else { throw BenchError("cannot write \(path)") }
        let output = Mutex(file)
        let router = Router()
        router.post("hook") { request, _ -> HTTPResponse.Status in
            let body = try await request.body.collect(upTo: 1 << 20)
            let arrived = Date()
            let id = request.headers[HTTPField.Name("webhook-id")!] ?? "?"
            let sent = Self.timestamp(in: body.readableBytesView).flatMap(Self.date) ?? arrived
            let lag = (arrived.timeIntervalSince(sent) * 10_000).rounded() / 10_000
            output.withLock { $0.write(Data("\(id) \(lag)\n".utf8)) }
            return .ok
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)))
        try await app.runService()
    }

    /// The message's `"timestamp"` field, found in its bytes (a JSON parse and a date formatter made per
    /// message cost the receiver more CPU than the server spent sending the message).
    static func timestamp(in body: ByteBufferView) -> String? {
        let key = Array(#""timestamp":""#.utf8)
        guard let start = body.firstRange(of: key)?.upperBound, let end = body[start...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
        return String(decoding: body[start..<end], as: UTF8.self)
    }

    static func date(_ text: String) -> Date? {
        (try? Date(text, strategy: fractional)) ?? (try? Date(text, strategy: whole))
    }

    static let fractional = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    static let whole = Date.ISO8601FormatStyle()
}
