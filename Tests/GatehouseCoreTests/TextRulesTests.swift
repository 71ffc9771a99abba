import Foundation
import Testing
@testable import GatehouseCore

/// Free text refuses what would make an approver read something other than what was stored; what
/// is shown to people writes such characters out.
@Suite("Text rules: invisible and direction-changing characters")
struct TextRulesTests {
    static let hidden: [UInt32] = [0x202E, 0x2066, 0x200B, 0x2060, 0x2064, 0x00AD, 0xE0041, 0xE0001, 0xFFF9, 0xFFFB, 0x180E, 0x3164,
                                   0x034F, 0x2028, 0x2029, 0xFEFF, 0x061C, 0x115F, 0xFFA0]

    @Test("refused in free text, named by code point", arguments: hidden)
    func refused(_ value: UInt32) throws {
        let scalar = try #require(Unicode.Scalar(value))
        let text = "INC-1 fix " + String(Character(scalar)) + "the rows"
        #expect(throws: GatehouseError.self) { try TextRules.check(text, field: "reason") }
        do { try TextRules.check(text, field: "reason") } catch {
            #expect(error.code == "deceptive_character")
            #expect(error.message.contains(String(format: "U+%04X", value)))
        }
    }

    @Test("written out when shown, in statements too (line breaks kept there)", arguments: hidden)
    func shown(_ value: UInt32) throws {
        let scalar = try #require(Unicode.Scalar(value))
        let text = "SELECT '" + String(Character(scalar)) + "x'\nFROM t"
        let visible = TextRules.visible(text, keepLineBreaks: true)
        #expect(!visible.unicodeScalars.contains(scalar))
        #expect(visible.contains("\\u{" + String(value, radix: 16) + "}"))
        #expect(visible.contains("\n"))
        #expect(TextRules.visible(text).contains("\\u{a}"), "without keepLineBreaks a newline is written out too")
    }

    @Test("a text that spells an escape out is never shown as one that holds the character: its own backslashes are doubled")
    func spelledOutEscapes() {
        let spelled = "SELECT '\\u{202e}' FROM t"
        let held = "SELECT '\u{202E}' FROM t"
        #expect(TextRules.visible(held) == "SELECT '\\u{202e}' FROM t")
        #expect(TextRules.visible(spelled) == "SELECT '\\\\u{202e}' FROM t")
        #expect(TextRules.visible(spelled) != TextRules.visible(held))
        // A backslash before the character itself, and two before the spelling, stay apart too.
        #expect(TextRules.visible("\\\u{202E}") == "\\\\\\u{202e}")
        #expect(TextRules.visible("\\\\u{202e}") == "\\\\\\\\u{202e}")
        // Without either, backslashes are shown as they are.
        #expect(TextRules.visible("SELECT E'\\n' ~ '\\d+'") == "SELECT E'\\n' ~ '\\d+'")
    }

    @Test("ordinary text, other scripts, emoji and zero-width joiners pass unchanged")
    func ordinary() throws {
        for text in ["INC-4411 fix the stuck migration", "پرونده‌ها را بررسی کن", "नमस्ते दुनिया", "deploy 👩‍💻 now", "naïve café — résumé"] {
            try TextRules.check(text, field: "reason")
            #expect(TextRules.visible(text) == text)
        }
    }
}
