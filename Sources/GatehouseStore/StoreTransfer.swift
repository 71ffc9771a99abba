import Foundation
import GatehouseCore
import SQLKit

/// Moving a whole store between databases (SQLite to PostgreSQL and back) as JSON lines: a header,
/// one line per row (`{"table": ..., "row": {...}}`), and a trailer with the row count, so a cut-off
/// file is refused. Every table, every column; the audit chain is copied as it is and must verify
/// in the target before the import commits. An export is a full copy of the database, token hashes
/// included: whoever can write the file can write any state, as with the database itself. Import
/// only files you made and kept safe.
public enum StoreTransfer {
    /// Data tables, parents before children.
    public static let tables = ["tokens", "requests", "approvals", "grants", "audit_events", "audit_head",
                                "rate_limits", "refusals", "principal_flags", "notifications", "break_glass",
                                "webhook_deliveries", "cursors", "identities"]
    static let format = "gatehouse-export"
    static let formatVersion = 1
    static let pageSize = 1_000
    /// Each table's primary key, for a stable page order (the first column, unless named here).
    static let keys = ["approvals": ["request_id", "approver"], "webhook_deliveries": ["id", "endpoint"], "identities": ["issuer", "subject"]]

    public struct Summary: Sendable, Equatable {
        public var rows: [String: Int] = [:]
        public var total: Int { rows.values.reduce(0, +) }
        public var schemaVersion = 0
        public var auditEvents = 0
    }

    /// Writes the store to `emit`, one JSON line at a time, from one consistent snapshot (it runs
    /// in a write transaction, so nothing changes underneath it; it changes nothing itself).
    public static func export(_ store: GatehouseStore, emit: @escaping @Sendable (String) throws -> Void) async throws -> Summary {
        try await store.write { session in
            var summary = Summary()
            summary.schemaVersion = try await session.schemaVersion()
            try emit(line(["format": format, "version": formatVersion, "schema_version": summary.schemaVersion,
                           "exported_at": Date().rfc3339]))
            for table in tables {
                let columns = try await session.columns(of: table)
                let keyColumns = (keys[table] ?? [columns[0].name]).compactMap { name in columns.first { $0.name == name } }
                let order = SQLList(keyColumns.map { SQLIdentifier($0.name) })
                // Keyset pages: each starts after the last key of the one before, from the primary key's
                // index, so a page costs the same at the end of a table of millions as at its start.
                var after: SQLList?
                while true {
                    let start: SQLQueryString = after.map { "WHERE (\(order)) > (\($0))" } ?? ""
                    let rows = try await session.db.raw("""
                        SELECT * FROM \(ident: table) \(start) ORDER BY \(order) LIMIT \(bind: pageSize)
                        """).all()
                    for row in rows {
                        var object: [String: Any] = [:]
                        for column in columns {
                            object[column.name] = column.isInteger
                                ? try row.decodeOptional(column: column.name, as: Int64.self).map { $0 as Any } ?? NSNull()
                                : try row.decodeOptional(column: column.name, as: String.self).map { $0 as Any } ?? NSNull()
                        }
                        try emit(line(["table": table, "row": object]))
                    }
                    summary.rows[table, default: 0] += rows.count
                    guard rows.count == pageSize, let last = rows.last else { break }
                    after = SQLList(try keyColumns.map { column -> any SQLExpression in
                        column.isInteger ? SQLBind(try last.decode(column: column.name, as: Int64.self))
                                         : SQLBind(try last.decode(column: column.name, as: String.self))
                    })
                }
            }
            summary.auditEvents = summary.rows["audit_events"] ?? 0
            try emit(line(["end": true, "rows": summary.total]))
            return summary
        }
    }

    /// Reads an export into an empty store, all in one transaction: refused (and nothing written)
    /// when the target holds data, the file is cut off or from a newer schema, a row does not fit
    /// the target's tables, or the imported audit chain does not verify.
    public static func `import`(_ store: GatehouseStore, lines: [String]) async throws -> Summary {
        let remaining = LineReader.Remaining(lines)
        return try await `import`(store, next: { remaining.next() })
    }

    /// The same, reading the export one line at a time from `next` (nil at its end): rows go into the
    /// transaction as they are read, so memory stays flat whatever the size of the file; a file cut off
    /// anywhere is found at its end, before the commit.
    /// `anchors`: audit events recorded elsewhere that the imported log must hold with their hashes.
    public static func `import`(_ store: GatehouseStore, anchors: [AuditChain.Anchor] = [],
                                next: @escaping @Sendable () throws -> String?) async throws -> Summary {
        let reader = LineReader(next)
        guard let (_, header) = try reader.object(), header["format"] as? String == format else {
            throw refuse("import_not_export", "the first line is not a gatehouse export header; make the file with `gatehouse export`")
        }
        guard header["version"] as? Int == formatVersion else {
            throw refuse("import_version_unknown", "this export has format version \(header["version"] ?? "?"); this gatehouse reads version \(formatVersion)")
        }
        let sourceSchema = header["schema_version"] as? Int ?? 0
        return try await store.write { session in
            var summary = Summary()
            summary.schemaVersion = try await session.schemaVersion()
            guard sourceSchema <= summary.schemaVersion else {
                throw refuse("import_schema_too_new", "the export is from schema version \(sourceSchema) but this gatehouse knows only up to \(summary.schemaVersion); import with a newer gatehouse")
            }
            let present = try await session.rowCounts()
            if let (table, count) = present.first(where: { $0.value > 0 }) {
                throw refuse("import_target_not_empty", "the target database already holds data (\(count) rows in \(table)); import only into a new database, prepared with `gatehouse migrate` and never served")
            }
            var columns: [String: [(name: String, isInteger: Bool)]] = [:]
            for table in tables { columns[table] = try await session.columns(of: table) }
            var expected: Int?
            while let (number, object) = try reader.object() {
                guard expected == nil else {
                    throw refuse("import_row_invalid", "line \(number) follows the end line; the file holds more than one export or was damaged")
                }
                if object["end"] as? Bool == true {
                    guard let rows = object["rows"] as? Int else {
                        throw refuse("import_truncated", "line \(number) ends the export without its row count; export again")
                    }
                    expected = rows
                    continue
                }
                try await insert(object, line: number, columns: columns, into: session)
                summary.rows[object["table"] as! String, default: 0] += 1
            }
            guard let expected else {
                throw refuse("import_truncated", "the export has no end line: the file was cut off; export again")
            }
            guard summary.total == expected else {
                throw refuse("import_truncated", "the export says it has \(expected) rows but \(summary.total) are there; export again")
            }
            let admins = try await session.db.raw("SELECT COUNT(*) AS n FROM tokens WHERE is_bootstrap_admin = 1").first()?.decode(column: "n", as: Int.self) ?? 0
            guard admins <= 1 else {
                throw refuse("import_row_invalid", "the export holds \(admins) bootstrap admin tokens; a store has at most one")
            }
            let verification = try await session.verifyAuditChain(anchors: anchors)
            guard verification.ok else {
                throw refuse("import_audit_broken", "the imported audit chain does not verify (\(verification.problem ?? "broken") at event \(verification.brokenAt.map(String.init) ?? "?")); nothing was imported")
            }
            summary.auditEvents = verification.eventsChecked
            if let contradiction = try await session.stateContradictingAudit() {
                throw refuse("import_state_unaudited", "\(contradiction): the export's rows were edited apart from its audit log; nothing was imported")
            }
            return summary
        }
    }

    static func refuse(_ code: String, _ message: String) -> GatehouseError { GatehouseError(.invalid, code, message) }

    /// One row line of an export, inserted as it is, every value checked against the target's column.
    static func insert(_ object: [String: Any], line number: Int, columns: [String: [(name: String, isInteger: Bool)]],
                       into session: StoreSession) async throws {
        guard let table = object["table"] as? String, let tableColumns = columns[table], let row = object["row"] as? [String: Any] else {
            throw refuse("import_row_invalid", "line \(number) names no known table (the tables are \(tables.joined(separator: ", ")))")
        }
        var names: [String] = []
        var values: [any SQLExpression] = []
        for (name, value) in row.sorted(by: { $0.key < $1.key }) {
            guard let column = tableColumns.first(where: { $0.name == name }) else {
                throw refuse("import_row_invalid", "line \(number): \(table) has no column \(name) in this schema")
            }
            names.append(name)
            if value is NSNull {
                values.append(SQLLiteral.null)
            } else if column.isInteger, let integer = Self.integer(value) {
                values.append(SQLBind(integer))
            } else if !column.isInteger, let text = value as? String {
                values.append(SQLBind(text))
            } else {
                throw refuse("import_row_invalid", "line \(number): \(table).\(name) holds \(type(of: value)), not \(column.isInteger ? "an integer" : "text")")
            }
        }
        do {
            try await session.db.insert(into: table).columns(names).values(values).run()
        } catch {
            // The database's own words (`constraintUniqueFailed: UNIQUE constraint failed: tokens.hash`) said with the line.
            // (PostgresNIO says what failed only when reflected.)
            let said = String(reflecting: error).lowercased()
            let why = said.contains("unique") || said.contains("duplicate key") ? "the row repeats a key another line already holds"
                : said.contains("not null") || said.contains("null value") ? "the row leaves out a value its table requires"
                : "the row does not fit its table"
            throw refuse("import_row_invalid", "line \(number): \(why) (table \(table)); the file was edited or damaged: export again")
        }
    }

    /// A JSON number that is a whole 64-bit integer, exactly.
    static func integer(_ value: Any) -> Int64? {
        guard let number = value as? NSNumber, !(value is String) else { return nil }
        let integer = number.int64Value
        return NSNumber(value: integer).isEqual(to: number) ? integer : nil
    }

    static func line(_ object: [String: Any]) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }
}

/// An export's lines as JSON objects, blank lines skipped, numbered as in the file. Read by one task at a
/// time (the import), first outside its transaction for the header, then inside it.
final class LineReader: @unchecked Sendable {
    private let next: @Sendable () throws -> String?
    private var number = 0

    init(_ next: @escaping @Sendable () throws -> String?) { self.next = next }

    func object() throws -> (Int, [String: Any])? {
        while let text = try next() {
            number += 1
            guard !text.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
                throw StoreTransfer.refuse("import_line_invalid", "line \(number) is not a JSON object; is this a file from `gatehouse export`?")
            }
            return (number, object)
        }
        return nil
    }

    /// Lines already in memory, handed out in order.
    final class Remaining: @unchecked Sendable {
        private let lines: [String]
        private var index = 0
        private let lock = NSLock()

        init(_ lines: [String]) { self.lines = lines }

        func next() -> String? {
            lock.withLock {
                guard index < lines.count else { return nil }
                defer { index += 1 }
                return lines[index]
            }
        }
    }
}

extension StoreSession {
    /// What access the store holds in force that its audit log does not say (an export's state rows edited apart
    /// from its verified log): a grant in force that no `grant.started` event started with the same holder,
    /// resource, role, level (recorded since it was), expiry and approved statement, or that an event ended
    /// (revoked, released, expired, used); a live API token that no `token.created` event made for its principal,
    /// or that `token.revoked` revoked. Nil when all agree. Memory: the grants in force and live tokens only (the
    /// log is read by action, page by page, through its index).
    public func stateContradictingAudit() async throws -> String? {
        struct Held { var grant: Grant; var started = false }
        var grants: [String: Held] = [:]
        for row in try await db.raw("SELECT * FROM grants WHERE ended_at IS NULL").all() {
            let grant = try Self.grant(row)
            grants[grant.id] = Held(grant: grant)
        }
        struct Live { var token: TokenRecord; var made = false }
        var tokens: [String: Live] = [:]
        for row in try await db.raw("SELECT * FROM tokens WHERE revoked_at IS NULL AND kind IN ('api', 'session')").all() {
            let token = try Self.token(row)
            tokens[token.id] = Live(token: token)
        }
        let actions: [AuditAction] = [.grantStarted, .grantRevoked, .grantReleased, .grantExpired, .grantUsed, .tokenCreated, .tokenRevoked,
                                      .signedIn, .signedOut, .sessionsRevoked]
        for action in actions {
            var after: Int64?
            while true {
                let page = try await auditEvents(.init(afterSeq: after, action: action.rawValue, limit: 5_000))
                for event in page {
                    switch action {
                    case .grantStarted:
                        guard let held = grants[event.subject] else { continue }
                        let grant = held.grant, details = event.details
                        let differs = [("holder", grant.principal, details["principal"]), ("resource", grant.resource, event.resource),
                                       ("role", grant.role, details["role"]), ("expiry", grant.expiresAt.rfc3339, details["expires_at"]),
                                       ("approved statement", grant.actionDigest, details["sha256"]),
                                       ("level", grant.allows.rawValue, details["allows"] ?? grant.allows.rawValue)]
                            .first { $0.1 != $0.2 }
                        if let (what, held, logged) = differs {
                            return "grant \(grant.id) is in force with \(what) \(held ?? "none"), but its grant.started event (\(event.seq)) says \(logged ?? "none")"
                        }
                        grants[event.subject]?.started = true
                    case .tokenCreated:
                        guard let token = tokens[event.subject]?.token, token.kind == .api else { continue }
                        guard event.details["principal"] == token.principal else {
                            return "token \(event.subject) is live for \(token.principal), but its token.created event (\(event.seq)) made it for \(event.details["principal"] ?? "nobody")"
                        }
                        guard (event.details["admin"] == "true") == token.isBootstrapAdmin else {
                            return "token \(event.subject) is live \(token.isBootstrapAdmin ? "as" : "not as") the bootstrap admin's, but its token.created event (\(event.seq)) says otherwise"
                        }
                        tokens[event.subject]?.made = true
                    case .signedIn:
                        // A sign-in session: its holder, end and the provider's groups (the first 50, as the event keeps them).
                        guard let token = tokens[event.subject]?.token, token.kind == .session else { continue }
                        let differs = [("holder", token.principal, event.details["principal"]), ("end", token.expiresAt?.rfc3339, event.details["expires_at"]),
                                       ("groups", (token.groups ?? []).prefix(50).joined(separator: ","), event.details["provider_groups"] ?? "")]
                            .first { $0.1 != $0.2 }
                        if let (what, held, logged) = differs {
                            return "session \(token.id) is live with \(what) \(held ?? "none"), but its identity.signed_in event (\(event.seq)) says \(logged ?? "none")"
                        }
                        tokens[event.subject]?.made = true
                    case .tokenRevoked, .signedOut:
                        if tokens[event.subject] != nil { return "token \(event.subject) is live, but event \(event.seq) (\(action.rawValue)) ended it" }
                    case .sessionsRevoked:
                        // Every token the principal held then, but the bootstrap admin's, was revoked.
                        if let token = tokens.values.first(where: { $0.token.principal == event.subject && !$0.token.isBootstrapAdmin && $0.token.createdAt < event.at })?.token {
                            return "token \(token.id) of \(event.subject) is live, but event \(event.seq) (\(action.rawValue)) ended every token they held then"
                        }
                    default:
                        if grants[event.subject] != nil { return "grant \(event.subject) is in force, but event \(event.seq) (\(action.rawValue)) ended it" }
                    }
                }
                guard page.count == 5_000, let last = page.last else { break }
                after = last.seq
            }
        }
        if let grant = grants.values.first(where: { !$0.started }) {
            return "grant \(grant.grant.id) is in force, but no grant.started event started it"
        }
        if let token = tokens.values.first(where: { !$0.made })?.token {
            return "\(token.kind == .session ? "session" : "token") \(token.id) is live, but no \(token.kind == .session ? "identity.signed_in" : "token.created") event made it"
        }
        return nil
    }

    /// The schema version recorded by the migrations.
    public func schemaVersion() async throws -> Int {
        try await db.raw("SELECT MAX(version) AS v FROM schema_migrations").first()?.decodeOptional(column: "v", as: Int.self) ?? 0
    }

    /// How many rows each data table holds.
    public func rowCounts() async throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for table in StoreTransfer.tables {
            counts[table] = try await db.raw("SELECT COUNT(*) AS n FROM \(ident: table)").first()?.decode(column: "n", as: Int.self) ?? 0
        }
        return counts
    }

    /// A table's columns in order, and whether each holds integers (every other column holds text).
    func columns(of table: String) async throws -> [(name: String, isInteger: Bool)] {
        let rows: [any SQLRow]
        if db.dialect.name == "sqlite" {
            rows = try await db.raw("SELECT name, type FROM pragma_table_info(\(bind: table)) ORDER BY cid").all()
        } else {
            rows = try await db.raw("""
                SELECT column_name AS name, data_type AS type FROM information_schema.columns
                WHERE table_schema = current_schema() AND table_name = \(bind: table) ORDER BY ordinal_position
                """).all()
        }
        return try rows.map { row in
            (try row.decode(column: "name", as: String.self), try row.decode(column: "type", as: String.self).lowercased().contains("int"))
        }
    }

    /// The whole audit chain, verified up to its head; events beyond the head (or any event when the
    /// head is missing) break it too, since every write moves the head with its events.
    /// `anchors`: events known from elsewhere that the log must still hold with their hashes.
    public func verifyAuditChain(anchors: [AuditChain.Anchor] = []) async throws -> AuditChain.Verification {
        let head = try await auditHead()
        // Page by page (by seq, from an index), holding one page and the last link: memory stays flat
        // however long the log is.
        var walker = AuditChain.Walker(anchors: anchors)
        var after: Int64? = nil
        while true {
            let page = try await auditEvents(.init(afterSeq: after, upToSeq: head?.seq, limit: 5_000))
            for event in page {
                if let broken = walker.check(event) { return broken }
            }
            guard page.count == 5_000, let last = page.last else { break }
            after = last.seq
        }
        let verification = walker.finish(head: head)
        guard verification.ok else { return verification }
        // Read the newest event before the head again: a write committing in between only moves the head further.
        let newest = try await db.raw("SELECT MAX(seq) AS seq FROM audit_events").first()?.decodeOptional(column: "seq", as: Int64.self) ?? 0
        let headNow = try await auditHead()?.seq ?? 0
        guard newest <= headNow else {
            return AuditChain.Verification(ok: false, eventsChecked: verification.eventsChecked, brokenAt: headNow + 1,
                                           problem: "events after the chain head exist (the head records event \(headNow), the log holds event \(newest)): the head was altered or events were inserted")
        }
        return verification
    }
}

/// A file's lines, read in chunks (1 MiB) as they are asked for: `gatehouse import` reads an export of any
/// size this way.
public final class FileLines: @unchecked Sendable {
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var position = 0
    private var ended = false
    private let chunk: Int

    public init(_ handle: FileHandle, chunk: Int = 1 << 20) {
        self.handle = handle
        self.chunk = chunk
    }

    /// The next line without its newline, or nil at the end of the file.
    public func next() throws -> String? {
        while true {
            if let newline = buffer[position...].firstIndex(of: UInt8(ascii: "\n")) {
                defer { position = newline + 1 }
                return String(decoding: buffer[position..<newline], as: UTF8.self)
            }
            if ended {
                guard position < buffer.count else { return nil }
                defer { position = buffer.count }
                return String(decoding: buffer[position...], as: UTF8.self)
            }
            // Keep the unfinished line, drop what was read, then append the next chunk.
            buffer.removeFirst(position)
            position = 0
            let chunk = try handle.read(upToCount: chunk) ?? Data()
            if chunk.isEmpty { ended = true } else { buffer.append(contentsOf: chunk) }
        }
    }
}
