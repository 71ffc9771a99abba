import ArgumentParser
import Foundation
import GatehouseCore

enum OutputFormat: String, CaseIterable, ExpressibleByArgument {
    case table, json
}

/// Formatting for the client commands: JSON as the server sent it, or aligned tables for people.
enum Output {
    static func json(_ data: Data) {
        if let object = try? JSONSerialization.jsonObject(with: data),
           let pretty = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]) {
            print(String(decoding: pretty, as: UTF8.self))
        } else {
            print(String(decoding: data, as: UTF8.self))
        }
    }

    /// A value of the API's types as the server writes it: keys sorted, times in RFC 3339 with milliseconds.
    static func encoded<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.rfc3339)
        }
        return try encoder.encode(value)
    }

    /// The same value as a JSON object, for the human printers below.
    static func object<T: Encodable>(_ value: T) -> [String: Any] {
        guard let data = try? encoded(value) else { return [:] }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
    }

    static func table(_ headers: [String], _ rows: [[String]]) {
        guard !rows.isEmpty else {
            print("(none)")
            return
        }
        var widths = headers.map(\.count)
        for row in rows {
            for (index, cell) in row.enumerated() where index < widths.count {
                widths[index] = max(widths[index], min(cell.count, 60))
            }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                let clipped = cell.count > 60 ? String(cell.prefix(57)) + "..." : cell
                return index == cells.count - 1 ? clipped : clipped.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        print(line(headers.map { $0.uppercased() }))
        for row in rows { print(line(row)) }
    }

    /// Under a listing's table, on stderr (the table stays clean for pipes): how to get the next page.
    static func nextPage(_ body: [String: Any]) {
        guard let next = body["next_cursor"] as? String else { return }
        FileHandle.standardError.write(Data("more: run the same command with --cursor \(next)\n".utf8))
    }

    static func fields(_ pairs: [(String, String?)]) {
        let width = pairs.map(\.0.count).max() ?? 0
        for (name, value) in pairs {
            guard let value, !value.isEmpty else { continue }
            print("\(name.padding(toLength: width, withPad: " ", startingAt: 0))  \(value)")
        }
    }

    /// Text from the server, made safe for a terminal: control and direction-changing characters
    /// are shown escaped, never interpreted.
    static func safe(_ text: String) -> String {
        TextRules.visible(text)
    }

    static func string(_ object: [String: Any], _ key: String) -> String {
        switch object[key] {
        case let value as String: return safe(value)
        case let value as NSNumber: return value.stringValue
        case nil: return ""
        case let value?: return "\(value)"
        }
    }

    static func request(_ r: [String: Any]) {
        let given = r["approvals"] as? [[String: Any]] ?? []
        let approvals = given.map {
            "\(string($0, "approver")) \(string($0, "decision"))" + (($0["counted"] as? Bool) == false ? " (no longer counts)" : "")
                + (string($0, "comment").isEmpty ? "" : ": \(string($0, "comment"))")
        }
        let counted = given.filter { string($0, "decision") == "approve" && ($0["counted"] as? Bool) != false }.count
        fields([
            ("id", string(r, "id")), ("state", string(r, "state")), ("requester", string(r, "requester")),
            ("resource", string(r, "resource")), ("role", string(r, "role")), ("duration", string(r, "duration")),
            ("reason", string(r, "reason")), ("ticket", string(r, "ticket")),
            ("approvals", "\(counted) of \(string(r, "approvals_required")) required"),
            ("decisions", approvals.joined(separator: "; ")), ("created", string(r, "created_at")),
            ("pending until", string(r, "state") == "pending" ? string(r, "pending_expires_at") : nil),
            ("decided", string(r, "decided_at")), ("decided by", string(r, "decided_by")),
            ("note", string(r, "state_reason")), ("grant", string(r, "grant_id")),
        ] + actionFields(r["action"] as? [String: Any]) + spamFields(r["antispam"] as? [String: Any]))
    }

    /// The spam score and each signal that fired, with its points: why the request was treated as it was.
    static func spamFields(_ s: [String: Any]?) -> [(String, String?)] {
        guard let s else { return [] }
        let signals = (s["signals"] as? [[String: Any]] ?? []).map { signal in
            let points = (signal["points"] as? Int) ?? 0
            return "\(string(signal, "signal")) \(points >= 0 ? "+" : "")\(points): \(string(signal, "detail"))"
        }
        return [("spam score", "\(string(s, "score")) (\(string(s, "action")))")] + signals.map { ("  signal", $0) }
    }

    /// What an approver must see of a one-shot action: the statement rebuilt without comments first.
    static func actionFields(_ a: [String: Any]?) -> [(String, String?)] {
        guard let a else { return [] }
        return [
            ("action", string(a, "kind")), ("risk", string(a, "risk") + ((a["categories"] as? [String]).flatMap { $0.isEmpty ? nil : " (\($0.joined(separator: ", ")))" } ?? "")),
            ("statement", a["normalized"] == nil ? nil : string(a, "normalized")), ("exact text", string(a, "text")),
            ("sha256", string(a, "sha256")),
        ]
    }

    static func classification(_ c: [String: Any]) {
        fields([("risk", string(c, "risk")), ("statements", string(c, "statements")),
                ("normalized", c["normalized"] == nil ? nil : string(c, "normalized")), ("sha256", string(c, "sha256"))])
        let findings = c["findings"] as? [[String: Any]] ?? []
        if !findings.isEmpty {
            table(["LEVEL", "CATEGORY", "STMT", "BYTE", "DETAIL"], findings.map {
                [string($0, "level"), string($0, "category"), string($0, "statement"), string($0, "position"), string($0, "detail")]
            })
        }
    }

    static func grant(_ g: [String: Any]) {
        fields([
            ("id", string(g, "id")), ("state", string(g, "state")), ("principal", string(g, "principal")),
            ("resource", string(g, "resource")), ("role", string(g, "role")), ("allows", string(g, "allows")),
            ("starts", string(g, "starts_at")), ("expires", string(g, "expires_at")), ("ended", string(g, "ended_at")),
            ("ended by", string(g, "ended_by")), ("comment", string(g, "end_comment")), ("request", string(g, "request_id")),
            ("action sha256", g["action_sha256"] == nil ? nil : string(g, "action_sha256")),
        ])
    }
}
