/// Rules for free text people type (reasons, tickets, comments): what an approver reads must be
/// exactly what was stored, so characters that can rewrite a terminal or reorder text are refused.
public enum TextRules {
    /// Characters that are not Unicode format characters but show as nothing (fillers, blanks,
    /// the combining grapheme joiner): refused in free text and shown escaped, like format characters.
    static let invisibleScalars: Set<UInt32> = [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x2800, 0x3164, 0xFFA0]
    /// The zero-width joiners (U+200C, U+200D) stay allowed in free text: emoji sequences and several
    /// scripts (Persian, Indic) need them.
    static let allowedFormat: Set<UInt32> = [0x200C, 0x200D]

    /// Whether a character could make text display differently from what it contains: format
    /// characters (bidirectional controls, zero-width spaces, soft hyphens, tags, interlinear
    /// annotations...), line and paragraph separators, and invisible fillers.
    public static func isDeceptive(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .format: return !allowedFormat.contains(scalar.value)
        case .lineSeparator, .paragraphSeparator: return true
        default: return invisibleScalars.contains(scalar.value)
        }
    }

    public static func check(_ text: String, field: String) throws(GatehouseError) {
        for scalar in text.unicodeScalars {
            if scalar.properties.generalCategory == .control {
                throw .invalid(field, "control_character",
                               "\(field) contains a control character (U+\(hex(scalar))); write it on one line, without tabs, escapes or NUL bytes")
            }
            if isDeceptive(scalar) {
                throw .invalid(field, "deceptive_character",
                               "\(field) contains an invisible or direction-changing character (U+\(hex(scalar))); remove it so approvers see what you wrote")
            }
        }
    }

    /// Text as a person should see it: control, format and invisible characters are written out as
    /// `\u{202e}` instead of acting on the text around them. `keepLineBreaks` leaves newlines and
    /// tabs (statements span lines). So that a text that spells `\u{202e}` out is not shown as one that
    /// holds U+202E, a text with either has every backslash of its own doubled (`\\u{202e}` is the spelling);
    /// any other text is shown as it is, backslashes and all.
    public static func visible(_ text: String, keepLineBreaks: Bool = false) -> String {
        func escaped(_ scalar: Unicode.Scalar) -> Bool {
            let control = scalar.properties.generalCategory == .control && !(keepLineBreaks && (scalar == "\n" || scalar == "\t"))
            return control || (isDeceptive(scalar) && !allowedFormat.contains(scalar.value))
        }
        let doubled = text.contains("\\u{") || text.unicodeScalars.contains(where: escaped)
        guard doubled else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if escaped(scalar) {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else if scalar == "\\" {
                out += "\\\\"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func hex(_ scalar: Unicode.Scalar) -> String {
        let digits = String(scalar.value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
