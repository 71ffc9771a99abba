import Foundation
import GatehouseTestSupport
import NIOCore
import Testing
@testable import GatehouseProxy

/// Random and mutated client byte streams for `FrontendDecoder`. The test command runs
/// `GATEHOUSE_FUZZ_INPUTS` inputs (20,000 by default, well under a second), the same knob as the classifier's fuzz run; the long run is
/// `GATEHOUSE_FUZZ_INPUTS=2000000 swift test --filter WireFuzz`.
@Suite struct WireFuzzTests {
    static var iterations: Int {
        ProcessInfo.processInfo.environment["GATEHOUSE_FUZZ_INPUTS"].flatMap { Int($0) } ?? 20_000
    }

    static let seed: UInt64 = 0x6761_7465_686F_7573

    typealias B = WireBytes

    static let startupCorpus: [[UInt8]] = [
        B.startup([("user", "alice"), ("database", "prod-db")]),
        B.startup([("user", "bob")], minor: 2),
        B.startup([]),
        B.sslRequest,
        B.gssEncRequest,
        B.cancel(processID: 99, secret: [1, 2, 3, 4]),
    ]

    static let typedCorpus: [[UInt8]] = [
        B.query("SELECT 1"),
        B.query("SELECT 'é' -- " + String(repeating: "x", count: 240)),
        B.parse("s1", "SELECT $1", types: [23]),
        B.parse("", "SELECT 2"),
        B.bind(portal: "p", statement: "s1"),
        B.bind(statement: ""),
        B.execute(portal: "p", limit: 5),
        B.describe("S", "s1"),
        B.describe("P", ""),
        B.close("S", "s1"),
        B.close("P", "p"),
        B.sync,
        B.flush,
        B.terminate,
        B.functionCall,
        B.password(B.cString("token")),
        B.typed("d", [0, 1, 2]),
        B.typed("c", []),
        B.typed("f", B.cString("stop")),
    ]

    /// Length and code values on and around every boundary the decoder checks.
    static let interesting: [Int32] = [
        .min, -1, 0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 200, 201, 268, 269, 9_999, 10_000, 10_001,
        Int32(64 << 20), Int32(64 << 20) + 1, .max, 80_877_102, 80_877_103, 80_877_104, 3 << 16, (3 << 16) | 2, 2 << 16,
    ]

    static func put(_ value: Int32, into bytes: inout [UInt8], at offset: Int) {
        let missing = offset + 4 - bytes.count
        if missing > 0 { bytes.append(contentsOf: [UInt8](repeating: 0, count: missing)) }
        bytes.replaceSubrange(offset..<(offset + 4), with: B.int32(value))
    }

    static func mutate(_ bytes: inout [UInt8], _ rng: inout SplitMix64) {
        guard !bytes.isEmpty else {
            bytes.append(UInt8.random(in: 0...255, using: &rng))
            return
        }
        let at = Int.random(in: 0..<bytes.count, using: &rng)
        switch rng.next() % 7 {
        case 0: // truncate
            bytes.removeSubrange(at...)
        case 1: // flip bits of one byte
            bytes[at] ^= UInt8.random(in: 1...255, using: &rng)
        case 2: // a boundary value somewhere
            let value = interesting.randomElement(using: &rng)!
            let offset = max(0, min(at, bytes.count - 4))
            put(value, into: &bytes, at: offset)
        case 3: // a huge or boundary length in the first message's header
            let value = interesting.randomElement(using: &rng)!
            let offset = Int.random(in: 0...1, using: &rng)
            put(value, into: &bytes, at: offset)
        case 4: // insert random bytes
            let count = Int.random(in: 1...8, using: &rng)
            let inserted = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
            bytes.insert(contentsOf: inserted, at: at)
        case 5: // delete a range
            let end = min(bytes.count, at + Int.random(in: 1...16, using: &rng))
            bytes.removeSubrange(at..<end)
        default: // duplicate a range
            let end = min(bytes.count, at + Int.random(in: 1...32, using: &rng))
            let copied = Array(bytes[at..<end])
            bytes.insert(contentsOf: copied, at: at)
        }
    }

    static func input(_ rng: inout SplitMix64, startupPhase: Bool) -> [UInt8] {
        if rng.next() % 4 == 0 {
            var bytes = (0..<Int.random(in: 0...48, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if !bytes.isEmpty, Bool.random(using: &rng) {
                bytes[0] = Array("QPBEDCSHXFpdcf".utf8).randomElement(using: &rng)!
            }
            return bytes
        }
        var bytes: [UInt8] = startupPhase ? startupCorpus.randomElement(using: &rng)! : []
        for _ in 0..<Int.random(in: 0...4, using: &rng) { bytes += typedCorpus.randomElement(using: &rng)! }
        for _ in 0..<Int.random(in: 0...3, using: &rng) { mutate(&bytes, &rng) }
        return bytes
    }

    struct Outcome {
        var failure: String?
        var frames = 0
        var threw = false
    }

    static func isStartupPhaseMessage(_ message: FrontendMessage) -> Bool {
        switch message {
        case .sslRequest, .gssEncRequest, .cancel, .startup: true
        default: false
        }
    }

    /// Feeds `input` to `decoder` in random chunks, as a connection would, until it is all fed or
    /// the decoder throws (which closes a connection).
    static func run(_ decoder: inout FrontendDecoder, _ input: [UInt8], _ rng: inout SplitMix64) -> Outcome {
        var outcome = Outcome()
        var buffer = ByteBufferAllocator().buffer(capacity: 16)
        var fed = 0
        var emitted: [UInt8] = []
        var calls = 0
        // Each call either returns a frame of at least 5 bytes or ends the round for this chunk.
        let callBudget = 2 * input.count + 4
        let maxChunk = [1, 3, 8, 64, Int.max].randomElement(using: &rng)!

        func finish() -> String? {
            if emitted.count > fed { return "frames hold \(emitted.count) bytes of the \(fed) fed" }
            if !emitted.elementsEqual(input.prefix(emitted.count)) { return "the frames' bytes are not the input's" }
            return nil
        }

        feeding: repeat {
            let chunk = min(input.count - fed, Int.random(in: 1...maxChunk, using: &rng))
            buffer.writeBytes(input[fed..<(fed + chunk)])
            fed += chunk
            if rng.next() % 8 == 0 { buffer.discardReadBytes() }
            reading: while true {
                calls += 1
                if calls > callBudget {
                    outcome.failure = "no progress after \(calls) calls"
                    return outcome
                }
                let before = buffer.readableBytes
                let wasStartup = decoder.inStartup
                let result: FrontendFrame?
                do throws(WireError) {
                    result = try decoder.next(&buffer)
                } catch {
                    outcome.threw = true
                    if error.message.isEmpty { outcome.failure = "a WireError without a message" }
                    break feeding
                }
                guard let frame = result else {
                    if buffer.readableBytes != before {
                        outcome.failure = "returned nil after consuming \(before - buffer.readableBytes) bytes"
                        return outcome
                    }
                    break reading
                }
                let size = frame.bytes.readableBytes
                if size < 5 || before - buffer.readableBytes != size {
                    outcome.failure = "a frame of \(size) bytes consumed \(before - buffer.readableBytes)"
                    return outcome
                }
                if wasStartup != isStartupPhaseMessage(frame.message) {
                    outcome.failure = "\(frame.message) decoded while inStartup was \(wasStartup)"
                    return outcome
                }
                if case .startup = frame.message, decoder.inStartup {
                    outcome.failure = "still in startup after a startup packet"
                    return outcome
                }
                outcome.frames += 1
                emitted += frame.bytes.readableBytesView
            }
        } while fed < input.count
        outcome.failure = outcome.failure ?? finish()
        return outcome
    }

    @Test func frontendDecoderNeverCrashesHangsOrOverreads() throws {
        let typedTemplate = try WireBytes.typedDecoder()
        var small = WireLimits()
        small.startupBytes = 200
        small.messageBytes = 200
        let smallTypedTemplate = try WireBytes.typedDecoder(limits: small)

        var failures: [String] = []
        var frames = 0, errors = 0, clean = 0
        for iteration in 0..<Self.iterations {
            var rng = SplitMix64(state: Self.seed &+ UInt64(iteration) &* 0x9E37_79B9_7F4A_7C15)
            let startupPhase = Bool.random(using: &rng)
            let useSmallLimits = rng.next() % 4 == 0
            let input = Self.input(&rng, startupPhase: startupPhase)
            var decoder = startupPhase
                ? FrontendDecoder(limits: useSmallLimits ? small : WireLimits())
                : (useSmallLimits ? smallTypedTemplate : typedTemplate)
            let outcome = Self.run(&decoder, input, &rng)
            frames += outcome.frames
            if outcome.threw { errors += 1 } else { clean += 1 }
            if let failure = outcome.failure {
                failures.append("iteration \(iteration) (\(startupPhase ? "startup" : "typed") phase): \(failure); input \(input.prefix(80))")
                if failures.count >= 10 { break }
            }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        if Self.iterations >= 1_000 {
            // The inputs reach all three outcomes, or the test proves little.
            #expect(frames > 0)
            #expect(errors > 0)
            #expect(clean > 0)
        }
    }
}
