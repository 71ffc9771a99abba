import Crypto
import Foundation

/// One exact action someone wants to run: a SQL text or a shell command line.
public struct Action: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable, CaseIterable { case sql, shell }
    /// Stored with the request and shown in every listing of it: far more than the classifier parses
    /// (128 KiB), and no more than a body could carry when it was limited to 256 KiB.
    public static let maximumBytes = 256 * 1024

    public var kind: Kind
    public var text: String

    public init(kind: Kind, text: String) {
        self.kind = kind
        self.text = text
    }

    /// SHA-256 of the exact bytes: what a one-shot approval is bound to.
    public var digest: String {
        Hex.encode(SHA256.hash(data: Data(text.utf8)))
    }

    /// The digests a one-shot approval of this action may carry: the exact text's, and for SQL also
    /// those of the text without surrounding whitespace and trailing semicolons, and with one (psql sends `...;`,
    /// people approve `...`, or the other way round; all are the same statement).
    public var approvalDigests: Set<String> {
        var digests: Set<String> = [digest]
        if kind == .sql {
            var trimmed = Substring(text)
            while let last = trimmed.last, last == ";" || last.isWhitespace { trimmed.removeLast() }
            while let first = trimmed.first, first.isWhitespace { trimmed.removeFirst() }
            if !trimmed.isEmpty {
                digests.insert(Action(kind: .sql, text: String(trimmed)).digest)
                digests.insert(Action(kind: .sql, text: trimmed + ";").digest)
            }
        }
        return digests
    }

    /// Why the text cannot be accepted at all, or nil.
    public var problem: String? {
        if text.isEmpty { return "the action text is empty; give the exact statement or command" }
        if text.utf8.count > Action.maximumBytes {
            return "the action text is \(text.utf8.count) bytes; at most \(Action.maximumBytes) are accepted"
        }
        if text.utf8.contains(0) {
            return "the action text contains a NUL byte, which PostgreSQL and shells cut the text at; remove it"
        }
        return nil
    }
}

/// One rule that fired on an action: which, at what level, and where.
public struct Finding: Sendable, Equatable, Codable {
    public var category: String
    public var level: RiskLevel
    /// 1-based number of the statement (SQL) or command (shell) in the text.
    public var statement: Int
    /// Byte offset into the text the finding points at.
    public var position: Int
    public var detail: String

    public init(category: String, level: RiskLevel, statement: Int, position: Int, detail: String) {
        self.category = category
        self.level = level
        self.statement = statement
        self.position = position
        self.detail = detail
    }
}

/// What a classifier says about an action. The risk is the highest level of any finding (`read`
/// when nothing fired).
public struct ActionClassification: Sendable, Equatable, Codable {
    public var kind: Action.Kind
    public var risk: RiskLevel
    public var findings: [Finding]
    /// Number of statements (SQL) or simple commands (shell) found.
    public var statements: Int
    /// The statement rebuilt without comments, for approvers (SQL only; nil when not requested or
    /// not possible).
    public var normalized: String?
    /// The functions the text calls by name, other than those qualified with `pg_catalog` (SQL only).
    /// Who holds the database can look their bodies up (`FunctionReach`); not part of the encoded form.
    public var calls: [FunctionCallSite] = []
    /// Parameters (`$1`) a WHERE uses as a pattern (`LIKE $1`, `~ $1`) whose value decides whether it matches every
    /// row: who holds the values bound (the guard proxy) judges the text with them put in (`BoundValues`). Not
    /// part of the encoded form.
    public var patternParameters: [PatternParameter] = []

    private enum CodingKeys: String, CodingKey {
        case kind, risk, findings, statements, normalized
    }

    public init(kind: Action.Kind, findings: [Finding], statements: Int, normalized: String? = nil, calls: [FunctionCallSite] = []) {
        self.kind = kind
        self.findings = findings
        self.statements = statements
        self.normalized = normalized
        self.calls = calls
        self.risk = findings.map(\.level).max() ?? .read
    }

    public var categories: [String] {
        var seen = Set<String>()
        return findings.map(\.category).filter { seen.insert($0).inserted }
    }
}

/// A call of a function by name in a SQL text: the name as written (schema when qualified, as the
/// parser gives it: unquoted names lower-cased) and where the call is.
public struct FunctionCallSite: Sendable, Hashable {
    public var schema: String?
    public var name: String
    public var statement: Int
    public var position: Int
    /// Written as a field of a row (`t.f`, `(row).f`): PostgreSQL calls a function `f` of that row
    /// when the row has no column `f`.
    public var attributeNotation: Bool

    public init(schema: String?, name: String, statement: Int, position: Int, attributeNotation: Bool = false) {
        self.schema = schema
        self.name = name
        self.statement = statement
        self.position = position
        self.attributeNotation = attributeNotation
    }

    /// `schema.name`, or the bare name.
    public var qualifiedName: String { schema.map { "\($0).\(name)" } ?? name }
}

/// A parameter of a statement's text used where its value matters to the guard (`x LIKE $1`).
public struct PatternParameter: Sendable, Equatable, Hashable {
    /// `$number`.
    public var number: Int
    /// Its byte offset in the text.
    public var location: Int
    /// It stands where PostgreSQL reads a text (a pattern, a setting's name): a value sent in binary that is UTF-8 is
    /// that text. Elsewhere (`($1 IS NULL OR id = $1)`) its type, and so what binary bytes mean, is not known here.
    public var text: Bool

    public init(number: Int, location: Int, text: Bool = true) {
        self.number = number
        self.location = location
        self.text = text
    }
}

/// A statement's text with the values bound to its parameters written in as constants, so the guard can judge what
/// the statement does with them (`DELETE FROM t WHERE v LIKE $1` with `%` bound deletes every row).
public enum BoundValues {
    /// One value as the extended protocol's Bind carries it, with the type its Parse declared (0: none, PostgreSQL
    /// infers it as it would an untyped literal's).
    public enum Value: Sendable, Equatable {
        case null
        /// Sent as text.
        case text(String, type: UInt32 = 0)
        /// Sent in binary, and UTF-8 without NUL: the text itself when the type is a text's.
        case binaryText(String, type: UInt32 = 0)
        /// Any other binary value: written in as the widest pattern, `%` (fail closed).
        case opaque
    }

    /// The texts written in and whether the guard's answer for it may be lower than for the statement with its
    /// parameters (`mayLower`): only when every value written in is exactly what the database reads: NULL, or ASCII
    /// text sent as text with no declared type or one named here, or sent in binary where a text is read. (A value
    /// not known exactly, a type the proxy cannot name, a non-ASCII value a changed client_encoding could read
    /// otherwise: the answer with the values can only add to the one without.)
    public struct Substitution: Sendable, Equatable {
        public var text: String
        public var mayLower: Bool

        public init(text: String, mayLower: Bool) {
            self.text = text
            self.mayLower = mayLower
        }
    }

    /// PostgreSQL's built-in types by OID, as a value is written in with its declared type (`'01'::pg_catalog.int4`).
    static let typeNames: [UInt32: String] = [
        16: "bool", 19: "name", 20: "int8", 21: "int2", 23: "int4", 25: "text", 26: "oid", 114: "json", 700: "float4", 701: "float8",
        1042: "bpchar", 1043: "varchar", 1082: "date", 1083: "time", 1114: "timestamp", 1184: "timestamptz", 1186: "interval", 1700: "numeric",
        2950: "uuid", 3802: "jsonb",
    ]
    /// Types whose binary form is their UTF-8 text, read as written (not bpchar: it drops trailing spaces).
    static let textTypes: Set<UInt32> = [0, 25, 1043, 19, 705]

    /// The text with each used parameter replaced by its value as a constant (`'%'`, `NULL`, `'5'::pg_catalog.int4`);
    /// nil when there is nothing to replace (no such parameter, or the text at a location is not that parameter).
    public static func substitute(_ text: String, _ uses: [PatternParameter], _ values: [Value]) -> Substitution? {
        var bytes = Array(text.utf8)
        var replaced = false
        var exact = true
        func quoted(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "''") + "'" }
        for use in Set(uses).sorted(by: { $0.location > $1.location }) {
            let token = Array("$\(use.number)".utf8)
            guard use.number >= 1, use.location >= 0, use.location + token.count <= bytes.count,
                  Array(bytes[use.location..<use.location + token.count]) == token,
                  use.location + token.count == bytes.count || !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[use.location + token.count]) else { continue }
            let value = use.number <= values.count ? values[use.number - 1] : .opaque
            let constant: String
            switch value {
            case .null:
                constant = "NULL"
            case .text(let text, let type):
                if type == 0 {
                    constant = quoted(text)
                } else if let name = typeNames[type] {
                    constant = quoted(text) + "::pg_catalog." + name
                } else {
                    // A type not named here (an extension's): what its input makes of the text is not known.
                    constant = "'%'"
                    exact = false
                }
                if !text.utf8.allSatisfy({ $0 < 0x80 }) { exact = false }
            case .binaryText(let text, let type):
                if use.text, textTypes.contains(type) {
                    constant = quoted(text)
                    if !text.utf8.allSatisfy({ $0 < 0x80 }) { exact = false }
                } else {
                    constant = "'%'"
                    exact = false
                }
            case .opaque:
                constant = "'%'"
                exact = false
            }
            bytes.replaceSubrange(use.location..<use.location + token.count, with: Array(constant.utf8))
            replaced = true
        }
        return replaced ? Substitution(text: String(decoding: bytes, as: UTF8.self), mayLower: exact) : nil
    }
}
