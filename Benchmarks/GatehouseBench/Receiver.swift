import Foundation
import HTTPTypes
import Hummingbird
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
            let object = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any]
            let sent = (object?["timestamp"] as? String).flatMap(Self.date) ?? arrived
            let line = String(format: "%@ %.4f\n", id, arrived.timeIntervalSince(sent))
            output.withLock { $0.write(Data(line.utf8)) }
            return .ok
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)))
        try await app.runService()
    }

    static func date(_ text: String) -> Date? {
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return fractional.date(from: text) ?? ISO8601DateFormatter().date(from: text)
    }
}
