import Foundation
import Testing
@testable import GatehouseCore

@Suite("TimeSpan")
struct TimeSpanTests {
    @Test("valid durations parse to the right number of seconds", arguments: [
        ("90s", Int64(90)),
        ("30m", 1_800),
        ("1h30m", 5_400),
        ("7d", 604_800),
        ("1d2h3m4s", 93_784),
        ("1h", 3_600),
        ("2h0m", 7_200),
        ("0h1s", 1),
        ("  45m  ", 2_700),     // surrounding spaces are trimmed
        ("3650d", 315_360_000), // exactly the maximum
    ])
    func parsesValid(text: String, seconds: Int64) throws {
        #expect(try TimeSpan.parse(text).seconds == seconds)
    }

    enum Expected: String, Sendable {
        case empty, malformed, zero, tooLong

        func matches(_ error: TimeSpan.ParseError) -> Bool {
            switch (self, error) {
            case (.empty, .empty), (.malformed, .malformed), (.zero, .zero), (.tooLong, .tooLong): true
            default: false
            }
        }
    }

    @Test("invalid durations are rejected with the matching error", arguments: [
        ("30x", Expected.malformed),
        ("0s", .zero),
        ("0m", .zero),
        ("0d0h0m0s", .zero),
        ("-5m", .malformed),
        ("", .empty),
        ("  ", .empty),
        ("1.5h", .malformed),
        ("m30", .malformed),
        ("30", .malformed),
        ("30mm", .malformed),
        ("1m1h", .malformed),      // units out of order
        ("1h1h", .malformed),      // a unit twice
        ("1h 30m", .malformed),    // no spaces inside
        ("30M", .malformed),       // units are lowercase
        ("٣m", .malformed),        // non-ASCII digits
        ("+5m", .malformed),
        ("99999999999d", .tooLong),
        ("3651d", .tooLong),       // over the 3650d maximum
        ("3650d1s", .tooLong),
        ("87600h1s", .tooLong),
    ])
    func rejectsInvalid(text: String, expected: Expected) {
        do {
            let span = try TimeSpan.parse(text)
            Issue.record("'\(text)' parsed as \(span.seconds)s")
        } catch {
            #expect(expected.matches(error), "'\(text)' gave \(error)")
        }
    }

    @Test("the error carries the trimmed text and a helpful message")
    func errorText() {
        #expect(throws: TimeSpan.ParseError.malformed("30x")) { try TimeSpan.parse(" 30x ") }
        #expect(throws: TimeSpan.ParseError.zero("0m")) { try TimeSpan.parse("0m") }
        #expect(throws: TimeSpan.ParseError.tooLong("3651d")) { try TimeSpan.parse("3651d") }
        #expect(TimeSpan.ParseError.malformed("30x").description.contains("1h30m"))
        #expect(TimeSpan.ParseError.tooLong("3651d").description.contains("3650d"))
    }

    @Test("huge numbers never overflow into a valid value")
    func hugeValues() {
        for text in ["9223372036854775807s", "999999999d", "999999999h999999999m", "18446744073709551616s"] {
            #expect(throws: TimeSpan.ParseError.self, "\(text)") { try TimeSpan.parse(text) }
        }
    }

    @Test("description is the shortest form", arguments: [
        (Int64(90), "1m30s"),
        (5_400, "1h30m"),
        (604_800, "7d"),
        (93_784, "1d2h3m4s"),
        (86_401, "1d1s"),
        (1, "1s"),
        (0, "0s"),
    ])
    func description(seconds: Int64, text: String) {
        #expect(TimeSpan(seconds: seconds).description == text)
    }

    @Test("description parses back to the same value", arguments: ["90s", "30m", "1h30m", "7d", "1d2h3m4s", "3600s", "120m", "3650d"])
    func roundTrip(text: String) throws {
        let span = try TimeSpan.parse(text)
        #expect(try TimeSpan.parse(span.description) == span)
    }

    @Test("90s is written 1m30s and parses back to 90 seconds")
    func ninetySeconds() throws {
        let span = try TimeSpan.parse("90s")
        #expect(span.description == "1m30s")
        #expect(try TimeSpan.parse(span.description).seconds == 90)
    }

    @Test("spans order by length")
    func ordering() throws {
        #expect(try TimeSpan.parse("59m") < TimeSpan.parse("1h"))
        #expect(try !(TimeSpan.parse("60m") < TimeSpan.parse("1h")))
        #expect(try TimeSpan.parse("60m") == TimeSpan.parse("1h"))
    }

    @Test("Codable uses the text form and validates it")
    func codable() throws {
        let data = try JSONEncoder().encode(["d": TimeSpan(seconds: 5_400)])
        #expect(String(decoding: data, as: UTF8.self) == #"{"d":"1h30m"}"#)
        let decoded = try JSONDecoder().decode([String: TimeSpan].self, from: Data(#"{"d":"7d"}"#.utf8))
        #expect(decoded["d"]?.seconds == 604_800)
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode([String: TimeSpan].self, from: Data(#"{"d":"30x"}"#.utf8))
        }
    }
}
