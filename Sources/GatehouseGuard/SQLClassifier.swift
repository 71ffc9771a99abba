// Over 400 lines on purpose: one walk over PostgreSQL's parse tree, with the node rules it applies
// (statements, functions, catalogs, settings, PL/pgSQL bodies) kept together so none is skipped.
import Foundation
import GatehouseCore

/// Classifies PostgreSQL statements from PostgreSQL's own parse tree.
///
/// `classify` must run on a thread with a large stack (`ParserThreads`): libpg_query recurses once per
/// nesting level of an expression and does not guard every path, so the text is capped at
/// `maximumBytes` and the stack is sized for the deepest tree that many bytes can build.
public struct SQLClassifier: Sendable {
    /// Longest statement text parsed. A chain of `1+1+...` this long nests 65,536 levels, which
    /// libpg_query parses within `ParserThreads.stackSize`.
    public static let maximumBytes = 128 * 1024
    /// Deepest JSON tree read back from the parser.
    static let maximumTreeDepth = 4_000
    /// How many bodies deep (a DO block inside a function body ...) the classifier follows.
    static let maximumBodyDepth = 4

    public var settings: GuardSettings

    public init(settings: GuardSettings = GuardSettings()) {
        self.settings = settings
    }

    public func classify(_ text: String, normalize: Bool = false) -> ActionClassification {
        var walk = SQLWalk(settings: settings)
        let count = walk.classifyText(text, body: nil)
        var normalized: String?
        if normalize, text.utf8.count <= SQLClassifier.maximumBytes, walk.parsed {
            normalized = PgQuery.deparse(text)
        }
        return ActionClassification(kind: .sql, findings: walk.findings, statements: count, normalized: normalized)
    }
}

/// Where a nested body (DO block, function body, PL/pgSQL expression) sits in the outer text.
private struct BodyContext {
    var position: Int
    var label: String
    var depth: Int
}

private struct SQLWalk {
    let settings: GuardSettings
    var findings: [Finding] = []
    var statement = 1
    var body: BodyContext?
    var prepared: Set<String> = []
    /// Whether the outermost text parsed (so it can be rebuilt for approvers).
    var parsed = false
    private var statementText: Substring = ""

    init(settings: GuardSettings) {
        self.settings = settings
    }

    // MARK: Findings

    mutating func fire(_ category: String, at position: Int, _ detail: String) {
        var position = position
        var detail = detail
        if let body {
            position = body.position
            detail = "in \(body.label): \(detail)"
        }
        let level = settings.level(of: category, kind: .sql)
        if findings.contains(where: { $0.category == category && $0.statement == statement && $0.position == position && $0.detail == detail }) {
            return
        }
        findings.append(Finding(category: category, level: level, statement: statement, position: position, detail: detail))
    }

    // MARK: Texts

    /// Parses and walks one SQL text; returns how many statements it held.
    @discardableResult
    mutating func classifyText(_ text: String, body: BodyContext?) -> Int {
        let outer = self.body
        self.body = body
        defer { self.body = outer }
        let size = text.utf8.count
        if size > SQLClassifier.maximumBytes {
            fire("too_complex", at: 0, "the text is \(size) bytes; the guard parses at most \(SQLClassifier.maximumBytes) bytes per action; split it into smaller statements or ask approval for this exact text")
            return 1
        }
        if text.utf8.contains(0) {
            fire("unparseable", at: 0, "the text contains a NUL byte; PostgreSQL would stop reading there")
            return 1
        }
        let bytes: [UInt8]
        switch PgQuery.parse(text) {
        case let .failure(error):
            fire("unparseable", at: error.position ?? 0, "PostgreSQL's parser says: \(error.message)")
            return 1
        case let .success(json):
            bytes = json
        }
        let tree: ParseTree
        do {
            tree = try ParseTreeReader.read(bytes, maximumDepth: SQLClassifier.maximumTreeDepth)
        } catch {
            fire("too_complex", at: 0, "the statement is \(error.message); simplify it or ask approval for this exact text")
            return 1
        }
        if body == nil { parsed = true }
        let statements = tree["stmts"]?.elements ?? []
        for (index, entry) in statements.enumerated() {
            if body == nil { statement = index + 1 }
            var location = entry["stmt_location"]?.intValue ?? 0
            let length = entry["stmt_len"]?.intValue ?? 0
            statementText = slice(text, from: location, length: length)
            // Point at the statement's first word, not the whitespace after the previous `;`.
            location += statementText.utf8.prefix { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }.count
            guard let node = entry["stmt"] else { continue }
            if let (type, _) = node.tagged, SQLNodeRule.byNodeType[type] == nil {
                fire("unrecognized_statement", at: location, "\(type) has no rule in the guard")
            }
            visit(node, location: location)
        }
        return max(statements.count, 1)
    }

    private func slice(_ text: String, from location: Int, length: Int) -> Substring {
        let utf8 = text.utf8
        guard location >= 0, location <= utf8.count else { return Substring(text) }
        let start = utf8.index(utf8.startIndex, offsetBy: location)
        let end = length > 0 && location + length <= utf8.count ? utf8.index(start, offsetBy: length) : utf8.endIndex
        return Substring(text[start..<end])
    }

    // MARK: Tree walk

    mutating func visit(_ node: ParseTree, location: Int) {
        switch node {
        case let .object(fields):
            if let (type, nodeFields) = node.tagged {
                visitNode(type, nodeFields, location: nodeFields["location"]?.intValue ?? location)
            } else {
                for field in fields { visit(field.value, location: location) }
            }
        case let .array(values):
            for value in values { visit(value, location: location) }
        default:
            break
        }
    }

    private mutating func visitChildren(_ fields: ParseTree, location: Int, skipping skipped: String? = nil) {
        guard case let .object(entries) = fields else { return }
        for entry in entries where entry.key != skipped {
            visit(entry.value, location: location)
        }
    }

    private mutating func visitNode(_ type: String, _ fields: ParseTree, location: Int) {
        // Target tables (COPY, UPDATE, DELETE, INSERT, ALTER ...) are untagged RangeVars.
        if let relation = fields["relation"], relation.tagged == nil, let name = relation["relname"]?.stringValue {
            if SQLNodeRule.credentialRelations.contains(name) {
                fire("read_credentials", at: relationLocation(fields, location), "\(Self.describe(type)) on \(name)")
            } else if name == "pg_settings", type != "SelectStmt" {
                fire("unsafe_setting", at: relationLocation(fields, location), "\(Self.describe(type)) on pg_settings changes settings")
            }
        }
        if type == "RenameStmt", fields["renameType"]?.stringValue == "OBJECT_DATABASE" {
            fire("alter_database", at: location, "ALTER DATABASE ... RENAME")
        }
        guard let rule = SQLNodeRule.byNodeType[type] else {
            visitChildren(fields, location: location)
            return
        }
        switch rule {
        case .readStatement:
            break
        case .transaction:
            // Two-phase commit acts on transactions that outlive the session: another session's
            // prepared transaction can be committed or rolled back, and locks stay after disconnect.
            let kind = fields["kind"]?.stringValue ?? ""
            if ["TRANS_STMT_PREPARE", "TRANS_STMT_COMMIT_PREPARED", "TRANS_STMT_ROLLBACK_PREPARED"].contains(kind) {
                fire("prepared_transaction", at: location, Self.describe(type))
            }
            if Self.setsReadWrite(fields["options"]) {
                fire("unsafe_setting", at: location, "BEGIN READ WRITE switches off a read-only default")
            }
        case let .fire(category):
            fire(category, at: location, Self.describe(type))
        case .select:
            if fields["intoClause"] != nil { fire("select_into", at: location, "SELECT ... INTO creates a table") }
            if fields["lockingClause"] != nil { fire("row_lock", at: location, "SELECT ... FOR UPDATE/SHARE locks rows") }
        case .insert:
            fire("write_data", at: relationLocation(fields, location), "INSERT")
        case .update:
            judgeWhere(fields, verb: "UPDATE", dangerous: "update_without_where", location: location)
        case .delete:
            judgeWhere(fields, verb: "DELETE", dangerous: "delete_without_where", location: location)
        case .merge:
            let at = relationLocation(fields, location)
            fire("write_data", at: at, "MERGE")
            // A WHEN clause with its own condition does not touch every matched row.
            let changes = fields["mergeWhenClauses"]?.elements.contains { clause in
                let command = clause.tagged?.fields["commandType"]?.stringValue
                return (command == "CMD_DELETE" || command == "CMD_UPDATE") && clause.tagged?.fields["condition"] == nil
            } ?? false
            if changes, let condition = fields["joinCondition"], WhereAnalysis.isTriviallyTrue(condition) {
                fire("merge_all_rows", at: at, "MERGE ... ON a condition that is always true updates or deletes every row of \(relationName(fields))")
            }
        case .copy:
            if fields["is_program"]?.boolValue == true {
                fire("copy_program", at: location, "COPY ... PROGRAM '\(fields["filename"]?.stringValue ?? "")' runs a command on the database server")
            } else if let file = fields["filename"]?.stringValue {
                fire("copy_file", at: location, "COPY ... '\(file)' reads or writes a file on the database server")
            }
            if fields["is_from"]?.boolValue == true { fire("write_data", at: relationLocation(fields, location), "COPY ... FROM loads rows") }
        case .explain:
            // EXPLAIN without ANALYZE plans the statement but does not run it.
            let analyze = fields["options"]?.elements.contains { option in
                guard let element = option.tagged?.fields, element["defname"]?.stringValue == "analyze" else { return false }
                return Self.isOn(element["arg"])
            } ?? false
            if !analyze { return }
        case .drop:
            let kind = fields["removeType"]?.stringValue ?? ""
            let category = switch kind {
            case "OBJECT_TABLE": "drop_table"
            case "OBJECT_SCHEMA": "drop_schema"
            default: "drop_object"
            }
            let what = kind.replacingPrefix("OBJECT_").lowercased().replacingOccurrences(of: "_", with: " ")
            fire(category, at: location, "DROP \(what.uppercased()) \(Self.objectNames(fields["objects"]))")
        case .alterTable:
            var fired = false
            for command in fields["cmds"]?.elements ?? [] {
                guard let subtype = command.tagged?.fields["subtype"]?.stringValue,
                      let category = SQLNodeRule.alterTableCategories[subtype] else { continue }
                fire(category, at: relationLocation(fields, location), "ALTER TABLE \(relationName(fields)) \(subtype.replacingPrefix("AT_"))")
                fired = true
            }
            if !fired { fire("schema_change", at: relationLocation(fields, location), "ALTER TABLE \(relationName(fields))") }
        case .setting:
            let kind = fields["kind"]?.stringValue ?? ""
            let name = (fields["name"]?.stringValue ?? "").lowercased()
            if kind != "VAR_RESET" && kind != "VAR_RESET_ALL" {
                if SQLNodeRule.roleSettings.contains(name) {
                    fire("role_change", at: location, "SET \(name.uppercased()) changes who the session acts as")
                } else if SQLNodeRule.unsafeSettings.contains(name) {
                    fire("unsafe_setting", at: location, "SET \(name)")
                } else if ["transaction", "session characteristics"].contains(name), Self.setsReadWrite(fields["args"]) {
                    fire("unsafe_setting", at: location, "SET \(name.uppercased()) ... READ WRITE switches off a read-only default")
                }
            }
        case .createFunction:
            fire("schema_change", at: location, "CREATE FUNCTION \(Self.objectNames(.array([fields["funcname"] ?? .null])))")
            judgeFunctionBody(fields, location: location)
        case .doBlock:
            judgeDoBlock(fields, location: location)
        case .prepare:
            // Only a PREPARE the server surely runs before the EXECUTE counts: a top-level one. One
            // inside a function or DO body may never run (`DO $$ BEGIN RETURN; PREPARE ...`), and then
            // EXECUTE would run a statement prepared elsewhere (by another message of the session).
            if body == nil, let name = fields["name"]?.stringValue { prepared.insert(name) }
        case .execute:
            let name = fields["name"]?.stringValue ?? ""
            if !prepared.contains(name) {
                fire("execute_prepared", at: location, "EXECUTE \(name) runs a prepared statement whose text is not part of this input; classify the PREPARE together with it")
            }
        case .functionCall:
            // Unquoted names arrive lower-cased from the parser; a quoted "PG_READ_FILE" is another function.
            let name = fields["funcname"]?.elements.last?["String"]?["sval"]?.stringValue ?? ""
            if SQLNodeRule.tableToXML.contains(name), let first = fields["args"]?.elements.first,
               let text = (first["A_Const"] ?? first["TypeCast"]?["arg"]?["A_Const"])?["sval"]?["sval"]?.stringValue,
               let table = SQLNodeRule.plainRelationName(text) {
                // A table named by a plain constant: a read of that table (of a credential catalog, dangerous).
                if SQLNodeRule.credentialRelations.contains(table) {
                    fire("read_credentials", at: location, "\(name)('\(text)') reads a credential catalog")
                }
            } else if let category = SQLNodeRule.functions[name] {
                fire(category, at: location, "calls \(name)()")
                // table_to_xml('pg_authid', ...) names its table in a string.
                if category == "dynamic_sql", let table = fields["args"]?.elements.first?["A_Const"]?["sval"]?["sval"]?.stringValue,
                   SQLNodeRule.credentialRelations.contains(table.split(separator: ".").last.map(String.init) ?? table) {
                    fire("read_credentials", at: location, "\(name)('\(table)') reads a credential catalog")
                }
            }
        case .relation:
            let name = fields["relname"]?.stringValue ?? ""
            if SQLNodeRule.credentialRelations.contains(name) {
                fire("read_credentials", at: location, "reads \(name)")
            }
        }
        visitChildren(fields, location: location)
    }

    private mutating func judgeWhere(_ fields: ParseTree, verb: String, dangerous: String, location: Int) {
        let at = relationLocation(fields, location)
        let table = relationName(fields)
        if let condition = fields["whereClause"] {
            if WhereAnalysis.isTriviallyTrue(condition) {
                fire(dangerous, at: at, "\(verb) on \(table) with a WHERE that is true for every row")
            } else {
                fire("write_data", at: at, "\(verb) on \(table)")
            }
        } else {
            fire(dangerous, at: at, "\(verb) on \(table) without WHERE changes every row")
        }
    }

    private func relationLocation(_ fields: ParseTree, _ fallback: Int) -> Int {
        fields["relation"]?["location"]?.intValue ?? fallback
    }

    private func relationName(_ fields: ParseTree) -> String {
        guard let relation = fields["relation"] else { return "?" }
        let schema = relation["schemaname"]?.stringValue.map { "\($0)." } ?? ""
        return schema + (relation["relname"]?.stringValue ?? "?")
    }

    // MARK: Bodies

    private mutating func judgeDoBlock(_ fields: ParseTree, location: Int) {
        var code: String?
        var language = "plpgsql"
        var at = location
        for argument in fields["args"]?.elements ?? [] {
            guard let element = argument.tagged?.fields else { continue }
            switch element["defname"]?.stringValue {
            case "as":
                code = element["arg"]?["String"]?["sval"]?.stringValue
                at = element["location"]?.intValue ?? location
            case "language":
                language = (element["arg"]?["String"]?["sval"]?.stringValue ?? language).lowercased()
            default: break
            }
        }
        guard let code else { return }
        guard language == "plpgsql" else {
            fire("untrusted_language", at: at, "DO block in \(language), which the guard cannot read")
            return
        }
        let tag = Self.dollarTag(avoiding: code)
        judgePlpgsql("DO \(tag)\(code)\(tag)", position: at, label: "DO block")
    }

    private mutating func judgeFunctionBody(_ fields: ParseTree, location: Int) {
        var language = fields["sql_body"] == nil ? "" : "sql"
        var body: [String] = []
        var at = location
        for option in fields["options"]?.elements ?? [] {
            guard let element = option.tagged?.fields else { continue }
            switch element["defname"]?.stringValue {
            case "language":
                language = (element["arg"]?["String"]?["sval"]?.stringValue ?? "").lowercased()
            case "as":
                body = element["arg"]?["List"]?["items"]?.elements.compactMap { $0["String"]?["sval"]?.stringValue } ?? []
                at = element["location"]?.intValue ?? location
            default: break
            }
        }
        guard !body.isEmpty else { return }  // SQL-standard body: already in the tree and walked
        guard SQLNodeRule.readableLanguages.contains(language), body.count == 1 else {
            fire("untrusted_language", at: at, "function body in \(language.isEmpty ? "an unnamed language" : language), which the guard cannot read")
            return
        }
        if language == "sql" {
            guard let context = nestedBody(at: at, label: "function body") else { return }
            classifyText(body[0], body: context)
        } else {
            judgePlpgsql(String(statementText), position: at, label: "function body")
        }
    }

    private func nestedBody(at position: Int, label: String) -> BodyContext? {
        let depth = (body?.depth ?? 0) + 1
        guard depth <= SQLClassifier.maximumBodyDepth else { return nil }
        return BodyContext(position: body?.position ?? position, label: body.map { "\($0.label), \(label)" } ?? label, depth: depth)
    }

    private mutating func judgePlpgsql(_ source: String, position: Int, label: String) {
        guard let context = nestedBody(at: position, label: label) else {
            fire("too_complex", at: position, "bodies nested more than \(SQLClassifier.maximumBodyDepth) deep")
            return
        }
        let outer = body
        body = context
        defer { body = outer }
        let json: [UInt8]
        switch PgQuery.parsePlpgsql(source) {
        case let .failure(error):
            fire("unparseable", at: position, "PostgreSQL's PL/pgSQL parser says: \(error.message)")
            return
        case let .success(bytes):
            json = bytes
        }
        do {
            let tree = try ParseTreeReader.read(json, maximumDepth: SQLClassifier.maximumTreeDepth)
            walkPlpgsql(tree)
        } catch {
            fire("too_complex", at: position, "the body is \(error.message)")
        }
    }

    private mutating func walkPlpgsql(_ node: ParseTree) {
        switch node {
        case let .object(fields):
            if let (type, inner) = node.tagged {
                switch type {
                case "PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors":
                    fire("dynamic_sql", at: 0, "EXECUTE of a string built at run time")
                case "PLpgSQL_stmt_open" where inner["dynquery"] != nil:
                    fire("dynamic_sql", at: 0, "OPEN ... FOR EXECUTE of a string built at run time")
                case "PLpgSQL_stmt_return_query" where inner["dynquery"] != nil:
                    fire("dynamic_sql", at: 0, "RETURN QUERY EXECUTE of a string built at run time")
                case "PLpgSQL_expr":
                    if let query = inner["query"]?.stringValue { judgeEmbeddedSQL(query) }
                    return
                default: break
                }
                walkPlpgsql(inner)
            } else {
                for field in fields { walkPlpgsql(field.value) }
            }
        case let .array(values):
            for value in values { walkPlpgsql(value) }
        default:
            break
        }
    }

    /// A PL/pgSQL expression is a statement (`DELETE FROM t`), an expression (`x > 0`) or an
    /// assignment (`x := f(y)`); read it as whichever PostgreSQL accepts, and fail closed otherwise.
    /// Whether a list of transaction options (`BEGIN ...`, `SET TRANSACTION ...`) says READ WRITE.
    static func setsReadWrite(_ options: ParseTree?) -> Bool {
        (options?.elements ?? []).contains { option in
            guard let element = option["DefElem"], element["defname"]?.stringValue == "transaction_read_only" else { return false }
            // The parse tree leaves out zero values: READ WRITE is an A_Const without a number.
            return (element["arg"]?["A_Const"]?["ival"]?["ival"]?.intValue ?? 0) == 0
        }
    }

    private mutating func judgeEmbeddedSQL(_ query: String) {
        var candidates = [query, "SELECT " + query]
        if let assignment = query.range(of: ":=") {
            candidates.append("SELECT " + query[assignment.upperBound...])
        } else if let assignment = query.firstIndex(of: "=") {
            candidates.append("SELECT " + query[query.index(after: assignment)...])
        }
        for candidate in candidates {
            if case .success = PgQuery.parse(candidate) {
                let outer = body
                classifyText(candidate, body: outer)
                return
            }
        }
        fire("unparseable", at: 0, "a PL/pgSQL expression the guard cannot read: \(query.prefix(80))")
    }

    // MARK: Helpers

    static func isOn(_ argument: ParseTree?) -> Bool {
        guard let argument else { return true }  // `EXPLAIN (ANALYZE)` alone means on
        if let value = argument["String"]?["sval"]?.stringValue?.lowercased() {
            return !["off", "false", "0", "no", "f", "n"].contains(value)
        }
        if let integer = argument["Integer"] {
            return (integer["ival"]?.intValue ?? 0) != 0
        }
        if let boolean = argument["Boolean"] {
            return boolean["boolval"]?.boolValue ?? false
        }
        return true
    }

    static func dollarTag(avoiding code: String) -> String {
        var tag = "$gh$"
        var counter = 0
        while code.contains(tag) {
            counter += 1
            tag = "$gh\(counter)$"
        }
        return tag
    }

    static func objectNames(_ objects: ParseTree?) -> String {
        let names = (objects?.elements ?? []).map { object -> String in
            let parts = object["List"]?["items"]?.elements ?? object.elements
            let strings = parts.compactMap { $0["String"]?["sval"]?.stringValue }
            return strings.isEmpty ? (object["String"]?["sval"]?.stringValue ?? "?") : strings.joined(separator: ".")
        }
        return names.joined(separator: ", ")
    }

    static func describe(_ type: String) -> String {
        var words: [String] = []
        var current = ""
        for character in type.replacingSuffix("Stmt") {
            if character.isUppercase, !current.isEmpty {
                words.append(current)
                current = ""
            }
            current.append(character)
        }
        if !current.isEmpty { words.append(current) }
        return words.joined(separator: " ").uppercased()
    }
}

extension String {
    func replacingPrefix(_ prefix: String) -> String {
        hasPrefix(prefix) ? String(dropFirst(prefix.count)) : self
    }

    func replacingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
