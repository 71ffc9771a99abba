/// Rules for free text people type (reasons, tickets, comments): what an approver reads must be
/// exactly what was stored, so characters that can rewrite a terminal or reorder text are refused.
public enum TextRules {
    /// Bidirectional embedding, override and isolate controls, and invisible characters that make
    /// text display differently from what it contains. The zero-width joiners (U+200C, U+200D) stay
    /// allowed: emoji sequences and several scripts (Persian, Indic) need them.
    static let deceptiveScalars: Set<UInt32> = [
        0x200B, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E,
        0x2066, 0x2067, 0x2068, 0x2069, 0x061C, 0xFEFF,
    ]

    public static func check(_ text: String, field: String) throws(GatehouseError) {
        for scalar in text.unicodeScalars {
            if scalar.properties.generalCategory == .control {
                throw .invalid(field, "control_character",
                               "\(field) contains a control character (U+\(hex(scalar))); write it on one line, without tabs, escapes or NUL bytes")
            }
            if deceptiveScalars.contains(scalar.value) {
                throw .invalid(field, "deceptive_character",
                               "\(field) contains an invisible or direction-changing character (U+\(hex(scalar))); remove it so approvers see what you wrote")
            }
        }
    }

    static func hex(_ scalar: Unicode.Scalar) -> String {
        let digits = String(scalar.value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
