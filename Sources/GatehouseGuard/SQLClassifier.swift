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
            normalized = PgQuery.deparse(text) ?? PgQuery.withoutComments(text)
        }
        var classification = ActionClassification(kind: .sql, findings: walk.findings, statements: count, normalized: normalized, calls: walk.calls)
        classification.patternParameters = walk.constants.patternParameters
        return classification
    }

    /// The classification of a text of this shape, and whether it holds for every text of the shape
    /// (`ActionGuard` then remembers it by shape): nothing in it read a constant's value, no text nested
    /// in this one was classified, and every constant of the shape is a constant of the parse tree (a
    /// string that is a name, an option or a function body is not one, and its value may matter).
    func classify(_ text: String, shape: SQLShape) -> (classification: ActionClassification, holdsForShape: Bool) {
        var walk = SQLWalk(settings: settings)
        walk.collectConstants = true
        let count = walk.classifyText(text, body: nil)
        var classification = ActionClassification(kind: .sql, findings: walk.findings, statements: count, calls: walk.calls)
        classification.patternParameters = walk.constants.patternParameters
        let holds = walk.parsed && walk.texts == 1 && !walk.constants.happened
            && shape.constants.allSatisfy { walk.constantLocations.contains($0.start) || $0.sign.map(walk.constantLocations.contains) == true }
        return (classification, holds)
    }

    /// Classifies what a function does when it is called, from its definition as
    /// `pg_get_functiondef` gives it (`CREATE OR REPLACE FUNCTION ... AS $function$ body $function$`):
    /// the findings of its body (labelled "in function body"), and the functions the body calls.
    /// Creating the function is not itself a finding here.
    public func classifyDefinition(_ text: String) -> ActionClassification {
        var walk = SQLWalk(settings: settings)
        walk.definitionOnly = true
        let count = walk.classifyText(text, body: nil)
        return ActionClassification(kind: .sql, findings: walk.findings, statements: count, calls: walk.calls)
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
    /// What `findings` holds, to fire each finding once.
    private struct FiredKey: Hashable {
        var category: String
        var statement: Int
        var position: Int
        var detail: String
    }
    private var fired: Set<FiredKey> = []
    var statement = 1
    var body: BodyContext?
    var prepared: Set<String> = []
    /// Tables created earlier in this text: changes to them lock or break nothing anyone uses yet.
    var created: Set<String> = []
    /// Whether the outermost text parsed (so it can be rebuilt for approvers).
    var parsed = false
    /// Functions called by name, each name once (`ActionClassification.calls`).
    var calls: [FunctionCallSite] = []
    private var recordedCalls: Set<FunctionCallSite.Key> = []
    /// The text is a function's definition read for what calling it does (`classifyDefinition`).
    var definitionOnly = false
    /// The ways a body's names may be read: as `variables`, and (when there are any) as columns. A PL/pgSQL
    /// name is a value unless `#variable_conflict use_column` (or the same setting of the session) makes it
    /// the column; a LANGUAGE sql function's parameter is the column whenever the statement has one of its
    /// name. A statement that changes every row under either reading is judged to.
    var nameReadings: [Set<String>] { variables.isEmpty ? [variables] : [variables, []] }

    /// Inside a PL/pgSQL body: the names it declares (variables, parameters, records), which a
    /// statement of the body reads as values, not as columns of the row; inside a LANGUAGE sql body, its
    /// parameters and the function's name, which qualifies them (`f.x`).
    var variables: Set<String> = []
    /// The names the WITH clauses around the node being judged give their parts (`WITH users AS (...)`):
    /// a subquery there naming one reads that, not the table.
    var withNames: Set<String> = []
    /// The names each WITH part's own body sees, by the part's location: without RECURSIVE, the parts
    /// before it and those of the WITHs around (not itself, not the parts after it: there `users` is
    /// still the table); with RECURSIVE, every part of its WITH.
    var withScopes: [Int: Set<String>] = [:]
    /// The WITH parts around the statement that are copies of a table's rows (`WITH x AS (SELECT * FROM t)`,
    /// `WITH x AS (SELECT id FROM t)`), by name: the table each copies.
    var withCopies: [String: WhereAnalysis.TableName] = [:]
    private var statementText: Substring = ""
    /// Node types by name.
    let types = SQLNodeTypes.shared
    /// Reads of the values of the text's constants (`classify(_:shape:)`).
    let constants = ConstantUse()
    /// Where the outermost text's constants (`A_Const`) start, when `collectConstants`.
    var constantLocations: Set<Int> = []
    var collectConstants = false
    /// How many texts were parsed: the outermost one and those nested in it.
    var texts = 0

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
        // Looked up in a set: thousands of findings compared one by one took quadratic time.
        guard fired.insert(FiredKey(category: category, statement: statement, position: position, detail: detail)).inserted else { return }
        findings.append(Finding(category: category, level: level, statement: statement, position: position, detail: detail))
    }

    // MARK: Texts

    /// Parses and walks one SQL text; returns how many statements it held.
    @discardableResult
    mutating func classifyText(_ text: String, body: BodyContext?) -> Int {
        texts += 1
        let outer = self.body
        self.body = body
        defer { self.body = outer }
        let size = text.utf8.count
        if size > SQLClassifier.maximumBytes {
            fire("too_complex", at: 0, "the text is \(size) bytes; the guard parses at most \(SQLClassifier.maximumBytes) bytes per action; split it into smaller statements or ask approval for this exact text")
            return 1
        }
        if text.containsNUL {
            fire("unparseable", at: 0, "the text contains a NUL byte; PostgreSQL would stop reading there")
            return 1
        }
        // Constants' locations are offsets into this text while its tree is judged (nested texts set their own).
        let outerSource = constants.source
        constants.source = text
        defer { constants.source = outerSource }
        let walked = PgQuery.parse(text) { json in
            ParseTreeReader.read(json, maximumDepth: SQLClassifier.maximumTreeDepth) { tree in walkStatements(tree, of: text) }
        }
        switch walked {
        case let .failure(error):
            fire("unparseable", at: error.position ?? 0, "PostgreSQL's parser says: \(error.message)")
            return 1
        case let .success(.failure(error)):
            fire("too_complex", at: 0, "the statement is \(error.message); simplify it or ask approval for this exact text")
            return 1
        case let .success(.success(statements)):
            if body == nil, constants.exhausted {
                fire("too_complex", at: 0, "the statement's conditions take more than \(ConstantUse.stepLimit) steps to judge; simplify them or ask approval for this exact text")
            }
            return statements
        }
    }

    /// Walks every statement of the text's tree; returns how many statements it held.
    private mutating func walkStatements(_ tree: ParseTree, of text: String) -> Int {
        if body == nil {
            parsed = true
            if collectConstants { tree.constantLocations(into: &constantLocations) }
        }
        let statements = tree["stmts"]?.elements ?? []
        for (index, entry) in statements.enumerated() {
            if body == nil { statement = index + 1 }
            var location = entry["stmt_location"]?.intValue ?? 0
            let length = entry["stmt_len"]?.intValue ?? 0
            statementText = slice(text, from: location, length: length)
            // Point at the statement's first word, not the whitespace after the previous `;`.
            // PostgreSQL's spaces: space, tab, LF, CR, form feed (and vertical tab since PostgreSQL 17; in
            // 15 it is no space, so a statement cannot start after one).
            location += statementText.utf8.prefix { $0 == 0x20 || (0x09...0x0D).contains($0) }.count
            guard let node = entry["stmt"] else { continue }
            if let (type, fields) = types.tagged(node), type.rule == nil {
                fire("unrecognized_statement", at: location, "\(Self.name(of: type, fields)) has no rule in the guard")
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
        if let (type, nodeFields) = types.tagged(node) {
            let location = nodeFields.intValue(of: "location") ?? location
            if type.special == .commonTableExpr, let scope = withScopes[location] {
                let outer = withNames
                withNames = scope
                visitNode(type, nodeFields, location: location)
                withNames = outer
                return
            }
            visitNode(type, nodeFields, location: location)
        } else {
            for child in node.children { visit(child, location: location) }
        }
    }

    private mutating func visitChildren(_ fields: ParseTree, location: Int, skipping skipped: String? = nil) {
        guard fields.isObject else { return }
        for entry in fields.children where skipped.map({ !entry.hasKey($0) }) ?? true {
            visit(entry, location: location)
        }
    }

    private mutating func visitNode(_ type: SQLNodeType, _ fields: ParseTree, location: Int) {
        // Target tables (COPY, UPDATE, DELETE, INSERT, ALTER ...) are untagged RangeVars.
        if let relation = fields["relation"], relation.tag == nil, let name = relation["relname"]?.stringValue {
            if SQLNodeRule.credentialRelations.contains(name) {
                fire("read_credentials", at: relationLocation(fields, location), "\(Self.describe(Self.name(of: type, fields))) on \(name)")
            }
            if name == "pg_settings", type.special != .selectStmt {
                fire("unsafe_setting", at: relationLocation(fields, location), "\(Self.describe(Self.name(of: type, fields))) on pg_settings changes settings")
            } else if !SQLNodeRule.credentialRelations.contains(name), SQLNodeRule.isSystemCatalog(name, schema: relation["schemaname"]?.stringValue),
                      SQLNodeRule.changesRows(type.name, fields) {
                fire("catalog_write", at: relationLocation(fields, location), "\(Self.describe(Self.name(of: type, fields))) on the system catalog \(name)")
            }
        }
        switch type.special {
        case .callStmt:
            // The procedure called is an untagged FuncCall.
            recordCall(fields["funccall"]?["funcname"], location: location)
        case .trigger:
            // A trigger runs its function at every later event: bound here, judged by its body here.
            recordCall(fields["funcname"], location: location)
        case .createCast:
            bindFunction(fields["func"]?["objname"], in: "CREATE CAST", location: location)
        case .createForeignTable:
            judgeForeignTableOptions(fields["options"]?.elements ?? [], location: location)
        case .viewStmt:
            // CREATE VIEW ... WITH (security_barrier = false).
            judgeViewSafetyOptions(fields["options"]?.elements ?? [], reset: false, location: location)
            // An INSERT, UPDATE or DELETE on such a view is one on the catalog (`UPDATE v SET tgenabled = 'D'`).
            if let name = SQLNodeRule.updatableCatalogView(fields["query"]) {
                fire("catalog_write", at: fields["view"]?["location"]?.intValue ?? location,
                     "CREATE VIEW over the system catalog \(name): writing the view writes the catalog")
            }
        case .createPolicy, .alterPolicy:
            // A permissive policy (or any policy altered) whose USING or WITH CHECK holds for every row lets every
            // row through for the roles it names: row-level security is off for them, as DISABLE ROW LEVEL
            // SECURITY turns it off for everyone. (A restrictive one that holds for every row restricts nothing.)
            let loosens = type.special == .alterPolicy || fields["permissive"]?.boolValue == true
            if type.special == .alterPolicy, fields["roles"] != nil {
                fire("disable_safety", at: location, "ALTER POLICY \(fields["policy_name"]?.stringValue ?? "?") ... TO changes whom row-level security lets through (a permissive policy for more roles, a restrictive one for fewer)")
            }
            for (clause, name) in [("qual", "USING"), ("with_check", "WITH CHECK")] as [(StaticString, String)] where loosens {
                guard let condition = fields[clause], WhereAnalysis.isTriviallyTrue(condition, constants: constants) else { continue }
                fire("disable_safety", at: fields["table"]?["location"]?.intValue ?? location,
                     "POLICY \(fields["policy_name"]?.stringValue ?? "?") on \(fields["table"]?["relname"]?.stringValue ?? "?") lets every row through (\(name) is true for every row): row-level security is off for the roles it names")
                break
            }
        case .alterEventTrigger:
            // Disabled, or firing only in replica mode: the event trigger (DDL auditing, guards) stops firing.
            if ["D", "R"].contains(fields["tgenabled"]?.stringValue ?? "") {
                fire("disable_safety", at: location, "ALTER EVENT TRIGGER \(fields["trigname"]?.stringValue ?? "?") \(fields["tgenabled"]?.stringValue == "D" ? "DISABLE" : "ENABLE REPLICA") stops it firing in normal sessions")
            }
        case .alterTableStmt:
            for command in fields["cmds"]?.elements ?? [] {
                let subtype = command["AlterTableCmd"]?["subtype"]?.stringValue ?? ""
                let options = command["AlterTableCmd"]?["def"]?["List"]?["items"]?.elements ?? []
                if subtype == "AT_GenericOptions" { judgeForeignTableOptions(options, location: location) }
                // ALTER VIEW ... SET (security_invoker = false), RESET (security_barrier).
                guard subtype == "AT_SetRelOptions" || subtype == "AT_ResetRelOptions" else { continue }
                judgeViewSafetyOptions(options, reset: subtype == "AT_ResetRelOptions", location: location)
            }
        case .define:
            // `CREATE OPERATOR public.= (LEFTARG = int, RIGHTARG = numeric, ...)`: where pg_catalog has no `=` for those
            // types, PostgreSQL picks this one, and `WHERE id = 1.5` (a comparison to the guard) runs any function.
            if fields["kind"]?.stringValue == "OBJECT_OPERATOR",
               let name = fields["defnames"]?.lastElement?["String"]?["sval"]?.stringValue, SQLNodeRule.builtinOperators.contains(name) {
                fire("disable_safety", at: location, "CREATE OPERATOR \(name) takes the name of PostgreSQL's own operator: statements that look like PostgreSQL's \(name) (the guard reads them so) can call it instead, in every session")
            }
            // An operator's function, an aggregate's support functions.
            for definition in fields["definition"]?.elements ?? [] {
                guard let element = definition["DefElem"], SQLNodeRule.boundFunctionOptions.contains(element["defname"]?.stringValue ?? "") else { continue }
                bindFunction(element["arg"]?["TypeName"]?["names"] ?? element["arg"]?["List"]?["items"],
                             in: "CREATE \((fields["kind"]?.stringValue ?? "OBJECT_OPERATOR").replacingPrefix("OBJECT_"))", location: location)
            }
        default:
            break
        }
        // `t.f` and `(row).f` call a function f(t) when the row has no column f (attribute notation):
        // `(pid).pg_terminate_backend` is pg_terminate_backend(pid).
        var attributes: [String] = []
        if type.special == .columnRef, let parts = fields["fields"], parts.elementCount >= 2,
           let last = parts.lastElement?["String"]?["sval"]?.stringValue {
            attributes.append(last)
        }
        if type.special == .indirection {
            attributes += (fields["indirection"]?.elements ?? []).compactMap { $0["String"]?["sval"]?.stringValue }
        }
        for name in attributes {
            recordCall(name: name, schema: nil, location: location, attributeNotation: true)
            if let category = SQLNodeRule.functions[name] ?? (SQLNodeRule.tableToXML.contains(name) ? "dynamic_sql" : nil) {
                fire(category, at: location, "calls \(name)() written as a field ((x).\(name))")
            }
        }
        if type.special == .renameStmt, fields["renameType"]?.stringValue == "OBJECT_DATABASE" {
            fire("alter_database", at: location, "ALTER DATABASE ... RENAME")
        }
        judgeOutageRisk(type, fields, location: location)
        guard let rule = type.rule else {
            visitChildren(fields, location: location)
            return
        }
        let outerWithNames = withNames, outerWithScopes = withScopes, outerWithCopies = withCopies
        defer { withNames = outerWithNames; withScopes = outerWithScopes; withCopies = outerWithCopies }
        switch rule {
        case .select, .insert, .update, .delete, .merge:
            if let with = fields["withClause"] { enterWith(with) }
        default:
            break
        }
        switch rule {
        case .readStatement:
            if type.name == "VariableShowStmt", let name = fields["name"]?.stringValue, SQLNodeRule.credentialSettings.contains(name) {
                fire("read_credentials", at: location, name == "all" ? "SHOW ALL shows primary_conninfo, whose connection string can hold the replication password"
                                                                     : "SHOW \(name) can hold a password")
            }
        case .transaction:
            // Two-phase commit acts on transactions that outlive the session: another session's
            // prepared transaction can be committed or rolled back, and locks stay after disconnect.
            let kind = fields["kind"]?.stringValue ?? ""
            if ["TRANS_STMT_PREPARE", "TRANS_STMT_COMMIT_PREPARED", "TRANS_STMT_ROLLBACK_PREPARED"].contains(kind) {
                fire("prepared_transaction", at: location, Self.describe(type.name))
            }
            if Self.setsReadWrite(fields["options"], constants: constants) {
                fire("read_write", at: location, "BEGIN READ WRITE makes the transaction read-write")
            }
        case let .fire(category):
            fire(category, at: location, Self.describe(type.name))
            judgeSilentBreakage(type.name, fields, location: location)
            // A rule's actions run for each row of its table: NEW and OLD there are that row, the same for every
            // row of the table an action changes (`DO ALSO DELETE FROM t WHERE new.id IS NOT NULL` empties t).
            if type.name == "RuleStmt" {
                let outerVariables = variables
                defer { variables = outerVariables }
                variables.formUnion(["new", "old"])
                visitChildren(fields, location: location)
                return
            }
        case .select:
            if fields["intoClause"] != nil { fire("select_into", at: location, "SELECT ... INTO creates a table") }
            if fields["lockingClause"] != nil { fire("row_lock", at: location, "SELECT ... FOR UPDATE/SHARE locks rows") }
        case .insert:
            fire("write_data", at: relationLocation(fields, location), "INSERT")
            // `INSERT INTO t SELECT * FROM t ON CONFLICT (id) DO UPDATE SET ...`: every row conflicts with its own
            // copy, so every row is updated.
            if let conflict = fields["onConflictClause"], conflict["action"]?.stringValue == "ONCONFLICT_UPDATE",
               conflict["whereClause"] == nil, fields["cols"] == nil, let query = fields["selectStmt"],
               WhereAnalysis.selectsEveryColumn(query), let copied = WhereAnalysis.rowCopy(query, constants: constants),
               let written = changedTable(fields).written, written.mayBe(copied) {
                fire("update_without_where", at: relationLocation(fields, location),
                     "INSERT INTO \(relationName(fields)) SELECT * FROM itself ON CONFLICT DO UPDATE: every row meets its own copy, so every row is updated")
            }
        case .update:
            judgeWhere(fields, verb: "UPDATE", dangerous: "update_without_where", location: location)
        case .delete:
            judgeWhere(fields, verb: "DELETE", dangerous: "delete_without_where", location: location)
        case .merge:
            let at = relationLocation(fields, location)
            fire("write_data", at: at, "MERGE")
            let (target, written) = changedTable(fields)
            let clauses = fields["mergeWhenClauses"]?.elements ?? []
            // The readings of the body's names under which the WHEN clauses change every matched row.
            let readings = nameReadings.filter { Self.changesEveryMatchedRow(clauses, target: target, variables: $0, constants: constants) }
            if let condition = fields["joinCondition"], !readings.isEmpty {
                if readings.contains(where: { variables in
                    WhereAnalysis.isTriviallyTrue(condition, target: target, table: written, variables: variables, constants: constants)
                        || (!WhereAnalysis.mayReadChangedRow(beyondTruths: condition, target: target, table: written, variables: variables,
                                                             constants: constants)
                            && !WhereAnalysis.isCertainlyFalse(condition, constants: constants))
                }) {
                    constants.noteParameters(in: condition)
                    fire("merge_all_rows", at: at, "MERGE ... ON a condition that is the same for every row of \(relationName(fields)) updates or deletes all of them")
                } else if let written, let source = fields["sourceRelation"], readings.contains(where: {
                    WhereAnalysis.joinsItself(condition, items: [source], table: written, target: target, variables: $0, constants: constants)
                }) {
                    fire("merge_all_rows", at: at, "MERGE ... USING \(relationName(fields)) itself ON a condition every row meets with itself updates or deletes every row")
                }
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
                guard let element = option.taggedFields, element["defname"]?.stringValue == "analyze" else { return false }
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
            fire(category, at: location, "DROP \(what.uppercased()) \(Self.objectNames(fields["objects"]?.elements ?? []))")
        case .alterTable:
            var fired = false
            for command in fields["cmds"]?.elements ?? [] {
                guard let subtype = command.taggedFields?["subtype"]?.stringValue,
                      let category = SQLNodeRule.alterTableCategories[subtype] else { continue }
                fire(category, at: relationLocation(fields, location), "ALTER TABLE \(relationName(fields)) \(subtype.replacingPrefix("AT_"))")
                fired = true
            }
            if !fired { fire("schema_change", at: relationLocation(fields, location), "ALTER TABLE \(relationName(fields))") }
        case .setting:
            let kind = fields["kind"]?.stringValue ?? ""
            let name = (fields["name"]?.stringValue ?? "").lowercased()
            if kind == "VAR_RESET", name == "transaction_read_only" {
                // PostgreSQL 15 resets it to off, not to default_transaction_read_only: a read-only session's
                // transaction turns read-write (16 refuses the RESET).
                fire("read_write", at: location, "RESET transaction_read_only makes the transaction read-write")
            } else if kind != "VAR_RESET" && kind != "VAR_RESET_ALL" {
                if SQLNodeRule.roleSettings.contains(name) {
                    fire("role_change", at: location, "SET \(name.uppercased()) changes who the session acts as")
                } else if name == "client_encoding", kind == "VAR_SET_VALUE",
                          Self.settingValues(fields["args"], constants: constants).map(SQLClassifier.encodingName) == ["utf8"] {
                    // UTF-8, the encoding the guard reads (`pg_dump` output begins with it): nothing changes.
                } else if name == "standard_conforming_strings", kind == "VAR_SET_VALUE",
                          Self.settingValues(fields["args"], constants: constants).map(Self.parseBool) == [true] {
                    // On, as the guard reads every text (Rails sets it at each connection): nothing changes.
                } else if SQLNodeRule.readOnlySettings.contains(name) {
                    // On (read-only) changes nothing a grant allows; off, DEFAULT or FROM CURRENT may make it read-write.
                    if !(kind == "VAR_SET_VALUE" && Self.settingValues(fields["args"], constants: constants).map(Self.parseBool) == [true]) {
                        fire("read_write", at: location, "SET \(name) may make the session or transaction read-write")
                    }
                } else if SQLNodeRule.isUnsafeSetting(name) {
                    fire("unsafe_setting", at: location, "SET \(name)")
                } else if name == "search_path", SearchPath.shadowsCatalog(Self.settingValues(fields["args"], constants: constants)) {
                    fire("unsafe_setting", at: location, "SET search_path \(SearchPath.shadowingDetail)")
                } else if ["transaction", "session characteristics"].contains(name), Self.setsReadWrite(fields["args"], constants: constants) {
                    fire("read_write", at: location, "SET \(name.uppercased()) ... READ WRITE makes transactions read-write")
                }
            }
        case .createFunction:
            if !(definitionOnly && body == nil) {
                fire("schema_change", at: location, "CREATE FUNCTION \(fields["funcname"].map { Self.objectNames([$0]) } ?? "?")")
            }
            judgeFunctionBody(fields, location: location)
            if fields["sql_body"] != nil {
                // `BEGIN ATOMIC ... END`: the body is in the tree, walked with the parameters' names.
                let outerVariables = variables
                defer { variables = outerVariables }
                variables.formUnion(Self.parameterNames(fields))
                visitChildren(fields, location: location)
                return
            }
        case .doBlock:
            judgeDoBlock(fields, location: location)
        case .prepare:
            // Only a PREPARE the server surely runs before the EXECUTE counts: a top-level one. One
            // inside a function or DO body may never run (`DO $$ BEGIN RETURN; PREPARE ...`), and then
            // EXECUTE would run a statement prepared elsewhere (by another message of the session).
            if body == nil, let name = fields["name"]?.stringValue { prepared.insert(name) }
            // The guard proxy prepares every statement on the database under a name of its own (`gatehouse_...`): a
            // statement of that name made another way would run under a text the proxy checked for another.
            if let name = fields["name"]?.stringValue, name.lowercased().hasPrefix("gatehouse_") {
                fire("execute_prepared", at: location, "PREPARE \(name) takes a name the guard proxy gives its own prepared statements; choose another name")
            }
        case .execute:
            let name = fields["name"]?.stringValue ?? ""
            if !prepared.contains(name) {
                fire("execute_prepared", at: location, "EXECUTE \(name) runs a prepared statement whose text is not part of this input; classify the PREPARE together with it")
            }
        case .functionCall:
            // Unquoted names arrive lower-cased from the parser; a quoted "PG_READ_FILE" is another function.
            let name = fields["funcname"]?.lastElement?["String"]?["sval"]?.stringValue ?? ""
            recordCall(fields["funcname"], location: location)
            if SQLNodeRule.tableToXML.contains(name), let first = fields["args"]?.elements.first,
               constants.reading(),
               let text = Self.constantText(first),
               let table = SQLNodeRule.plainRelationName(text) {
                // A table named by a plain constant: a read of that table (of a credential catalog, dangerous).
                if SQLNodeRule.credentialRelations.contains(table) {
                    fire("read_credentials", at: location, "\(name)('\(text)') reads a credential catalog")
                }
            } else if SQLNodeRule.credentialSettingFunctions.contains(name) {
                fire("read_credentials", at: location, "\(name)() shows primary_conninfo, whose connection string can hold the replication password")
            } else if name == "current_setting" {
                // current_setting('primary_conninfo'); a name not given as a constant could be it.
                let first = fields["args"]?.elements.first
                let setting = constants.reading() ? Self.constantText(first)?.lowercased().nilIfNot(Self.isSettingName) : nil
                // current_setting($1): judged again with the name bound (SQLAlchemy reflects with one).
                if setting == nil, let first { constants.notePattern(first) }
                if setting.map({ SQLNodeRule.credentialSettings.contains($0) }) ?? true {
                    fire("read_credentials", at: location, "current_setting(\(setting.map { "'\($0)'" } ?? "a name known only when it runs")) can show primary_conninfo, whose connection string can hold the replication password")
                }
            } else if name == "set_config" {
                // Judged as `SET name = value` is, when the name is a constant: set_config('TimeZone', 'UTC', false)
                // (Django at each connection), set_config('jit', 'off', false) (asyncpg), set_config('app.tenant_id', $1, true).
                if let change = Self.settingChange(fields["args"]?.elements ?? [], constants: constants) {
                    fire(change.category, at: location, change.detail)
                }
            } else if name == "ts_rewrite", fields["args"]?.elements.count == 3 {
                // ts_rewrite(query, target, substitute) rewrites a tsquery; only the two-argument form runs a query.
            } else if let category = SQLNodeRule.functions[name],
                      SQLNodeRule.mayBeExtensionFunction(name, schema: Self.schemaOf(fields["funcname"])) {
                fire(category, at: location, "calls \(name)()")
                // table_to_xml('pg_authid', ...) names its table in a string.
                if category == "dynamic_sql", constants.reading(), let table = fields["args"]?.firstElement?["A_Const"]?["sval"]?["sval"]?.stringValue,
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

    /// Schema changes that leave running applications' statements failing or doing something else, with no error
    /// at the change itself: a DO INSTEAD rule on a table's writes (they do the rule's actions, or nothing, and
    /// report success), a publication of every table (UPDATE and DELETE on a table without a replica identity
    /// fail from then on), a partition created under a parent (its ACCESS EXCLUSIVE lock, and a scan of the
    /// DEFAULT partition under it, as ATTACH PARTITION).
    private mutating func judgeSilentBreakage(_ type: String, _ fields: ParseTree, location: Int) {
        switch type {
        case "RuleStmt":
            guard fields["instead"]?.boolValue == true, ["CMD_INSERT", "CMD_UPDATE", "CMD_DELETE"].contains(fields["event"]?.stringValue ?? "") else { return }
            let verb = (fields["event"]?.stringValue ?? "").replacingPrefix("CMD_")
            fire("breaking_change", at: location, "CREATE RULE ... ON \(verb) DO INSTEAD: every \(verb) on \(relationName(fields)) does the rule's actions instead (or nothing) and reports success")
        case "CreatePublicationStmt":
            let schemas = (fields["pubobjects"]?.elements ?? []).contains {
                ($0["PublicationObjSpec"]?["pubobjtype"]?.stringValue ?? "").hasPrefix("PUBLICATIONOBJ_TABLES_IN")
            }
            guard fields["for_all_tables"]?.boolValue == true || schemas else { return }
            fire("breaking_change", at: location, "CREATE PUBLICATION of every table\(schemas ? " of a schema" : ""): UPDATE and DELETE on one without a replica identity fail from then on")
        case "CreateStmt":
            guard fields["partbound"] != nil else { return }
            fire("locking_ddl", at: location, "CREATE TABLE ... PARTITION OF locks the parent ACCESS EXCLUSIVE and scans its DEFAULT partition, as ATTACH PARTITION")
        default:
            return
        }
    }

    /// A view's `security_invoker` or `security_barrier` switched off (reset, or set to anything PostgreSQL does not
    /// read as on): its readers get past its tables' row-level security, or through its filter.
    private mutating func judgeViewSafetyOptions(_ options: [ParseTree], reset: Bool, location: Int) {
        for option in options {
            guard let element = option["DefElem"], let name = element["defname"]?.stringValue,
                  SQLNodeRule.viewSafetyOptions.contains(name) else { continue }
            constants.read()
            let on = !reset && (element["arg"].map { Self.booleanValue($0) ?? false } ?? true)
            if !on {
                fire("disable_safety", at: location, "\(name) switched off: the view's readers get past \(name == "security_invoker" ? "its tables' row-level security (it reads them as the view's owner)" : "its filter (functions see rows it would hide)")")
            }
        }
    }

    /// A foreign table over a credential catalog (postgres_fdw's `table_name 'pg_authid'`, another wrapper's
    /// `table`): every later read of it, which looks like a read of an ordinary table, reads that catalog.
    /// file_fdw's `program` runs a command on the database server at every read, and its `filename` reads a
    /// server file: as COPY FROM PROGRAM and COPY FROM a file.
    private mutating func judgeForeignTableOptions(_ options: [ParseTree], location: Int) {
        for option in options {
            guard let element = option["DefElem"] else { continue }
            switch element["defname"]?.stringValue ?? "" {
            case "program":
                fire("copy_program", at: element["location"]?.intValue ?? location, "a foreign table whose every read runs a command on the database server (file_fdw's program)")
                continue
            case "filename":
                fire("copy_file", at: element["location"]?.intValue ?? location, "a foreign table whose every read reads a file on the database server (file_fdw's filename)")
                continue
            default: break
            }
            guard ["table_name", "table"].contains(element["defname"]?.stringValue ?? ""),
                  let value = element["arg"]?["String"]?["sval"]?.stringValue,
                  let table = SQLNodeRule.plainRelationName(value) ?? Optional(value), SQLNodeRule.credentialRelations.contains(table) else { continue }
            fire("read_credentials", at: element["location"]?.intValue ?? location, "a foreign table over \(value): every read of it reads that catalog")
        }
    }

    /// The schema a qualified name names (`app` of `app.schedule`); nil for a bare name.
    static func schemaOf(_ names: ParseTree?) -> String? {
        guard let names, names.elementCount >= 2 else { return nil }
        return names.elements[names.elementCount - 2]["String"]?["sval"]?.stringValue
    }

    /// A string constant, cast or not (`'orders'`, `'orders'::regclass`); nil for anything else.
    /// Only a cast that keeps the text as written counts (`'x'::text`, `'x'::varchar`, `'t'::regclass`): a cast to
    /// `bpchar` drops trailing spaces, one with a length cuts the text, and others read it as something else, so
    /// `'primary_conninfo '::bpchar` is not taken for the name it is not.
    static func constantText(_ node: ParseTree?) -> String? {
        if let cast = node?["TypeCast"] {
            guard let type = SQLClassifier.castType(cast), type.plain, ["text", "varchar", "regclass"].contains(type.name) else { return nil }
            return cast["arg"]?["A_Const"]?["sval"]?["sval"]?.stringValue
        }
        return node?["A_Const"]?["sval"]?["sval"]?.stringValue
    }

    /// A setting's name as PostgreSQL takes one (`TimeZone`, `app.tenant_id`): letters, digits, `_` and `$`, parts
    /// joined with dots.
    static func isSettingName(_ name: String) -> Bool {
        !name.isEmpty && name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { part in
            guard let first = part.utf8.first, first == UInt8(ascii: "_") || (first | 0x20) >= UInt8(ascii: "a") && (first | 0x20) <= UInt8(ascii: "z") else { return false }
            return part.utf8.allSatisfy { byte in
                byte == UInt8(ascii: "_") || byte == UInt8(ascii: "$") || ((byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z"))
                    || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
            }
        }
    }

    /// What a `set_config(name, value, is_local)` call changes that the guard minds, judged as `SET name = value`
    /// is: nil for a setting SET may change (`TimeZone`, `jit`, `statement_timeout`, an application's own dotted
    /// name), `read_write` for a read-only setting turned off, `set_config` (dangerous) for a setting the guard calls
    /// unsafe, the session's role, a `search_path` that shadows the catalog, and a name or such a value given only
    /// when the statement runs.
    static func settingChange(_ arguments: [ParseTree], constants: ConstantUse) -> (category: String, detail: String)? {
        guard constants.reading(), let name = Self.constantText(arguments.first)?.lowercased(), Self.isSettingName(name) else {
            if let first = arguments.first { constants.notePattern(first) }
            return ("set_config", "calls set_config() with a setting named only when it runs")
        }
        let value = arguments.count > 1 ? Self.constantText(arguments[1]) : nil
        // A value bound as a parameter, where the value matters, is judged again with it (`set_config('search_path', $1, false)`).
        func valueUnknown() { if value == nil, arguments.count > 1 { constants.notePattern(arguments[1]) } }
        if SQLNodeRule.roleSettings.contains(name) {
            return ("set_config", "set_config('\(name)') changes who the session acts as")
        }
        if SQLNodeRule.readOnlySettings.contains(name) {
            valueUnknown()
            return value.flatMap(Self.parseBool) == true ? nil : ("read_write", "set_config('\(name)') may make the session or transaction read-write")
        }
        if name == "client_encoding" || name == "standard_conforming_strings" { valueUnknown() }
        if name == "client_encoding", value.map(SQLClassifier.encodingName) == "utf8" { return nil }
        if name == "standard_conforming_strings", value.flatMap(Self.parseBool) == true { return nil }
        if SQLNodeRule.isUnsafeSetting(name) {
            return ("set_config", "set_config('\(name)') changes a setting the guard calls unsafe")
        }
        if name == "search_path" {
            valueUnknown()
            guard let value else { return ("set_config", "set_config('search_path') with a path given only when it runs") }
            if SearchPath.shadowsCatalog(SearchPath.entries(value)) { return ("set_config", "set_config('search_path') \(SearchPath.shadowingDetail)") }
        }
        return nil
    }

    /// A function an operator, aggregate or cast will call at every later use: remembered as a call, and
    /// judged as one when it is a dangerous built-in (`CREATE OPERATOR !!! (RIGHTARG = text, FUNCTION =
    /// pg_read_file)` makes `SELECT !!! '/etc/passwd'` read a file while looking like a read).
    private mutating func bindFunction(_ funcname: ParseTree?, in statement: String, location: Int) {
        recordCall(funcname, location: location)
        guard let name = funcname?.lastElement?["String"]?["sval"]?.stringValue, let category = SQLNodeRule.functions[name],
              SQLNodeRule.mayBeExtensionFunction(name, schema: Self.schemaOf(funcname)) else { return }
        fire(category, at: location, "\(statement) binds \(name)(), which every use of it then calls")
    }

    /// Remembers a call by name (not one qualified with `pg_catalog`, which names a built-in).
    private mutating func recordCall(_ funcname: ParseTree?, location: Int) {
        let parts = (funcname?.elements ?? []).compactMap { $0["String"]?["sval"]?.stringValue }
        guard let name = parts.last else { return }
        recordCall(name: name, schema: parts.count >= 2 ? parts[parts.count - 2] : nil, location: location)
    }

    private mutating func recordCall(name: String, schema: String?, location: Int, attributeNotation: Bool = false) {
        guard schema != "pg_catalog",
              recordedCalls.insert(FunctionCallSite.Key(schema: schema, name: name, attributeNotation: attributeNotation)).inserted else { return }
        calls.append(FunctionCallSite(schema: schema, name: name, statement: statement, position: body?.position ?? location,
                                      attributeNotation: attributeNotation))
    }

    private mutating func judgeWhere(_ fields: ParseTree, verb: String, dangerous: String, location: Int) {
        let at = relationLocation(fields, location)
        let table = relationName(fields)
        if let condition = fields["whereClause"] {
            let (target, written) = changedTable(fields)
            // DELETE ... USING, UPDATE ... FROM: a copy of the table itself among them, joined row to row.
            let joined = (fields["usingClause"] ?? fields["fromClause"])?.elements ?? []
            let readings = nameReadings
            if readings.contains(where: { WhereAnalysis.isTriviallyTrue(condition, target: target, table: written, variables: $0, constants: constants) }) {
                constants.noteParameters(in: condition)
                fire(dangerous, at: at, "\(verb) on \(table) with a WHERE that is true for every row")
            } else if let written, readings.contains(where: {
                WhereAnalysis.joinsItself(condition, items: joined, table: written, target: target, variables: $0, constants: constants)
            }) {
                fire(dangerous, at: at, "\(verb) on \(table) joined with itself on a condition every row meets with itself")
            } else if !joined.isEmpty,
                      readings.contains(where: {
                          !WhereAnalysis.mayReadChangedRow(beyondTruths: condition, target: target, table: written, variables: $0, constants: constants)
                      }),
                      !WhereAnalysis.isCertainlyFalse(condition, constants: constants) {
                // `UPDATE t SET ... FROM plans p WHERE p.id = 3`: the same answer for every row of t.
                constants.noteParameters(in: condition)
                fire(dangerous, at: at, "\(verb) on \(table) with a WHERE that reads only the other tables: every row or none")
            } else {
                fire("write_data", at: at, "\(verb) on \(table)")
            }
        } else {
            fire(dangerous, at: at, "\(verb) on \(table) without WHERE changes every row")
        }
    }

    /// The names a WITH gives its parts: the statement it belongs to sees them all, each part's own body
    /// only those before it (all of them with RECURSIVE), as PostgreSQL resolves them.
    private mutating func enterWith(_ with: ParseTree) {
        let parts = (with["ctes"]?.elements ?? []).compactMap { $0["CommonTableExpr"] }
        let names = parts.compactMap { $0["ctename"]?.stringValue }
        let recursive = with["recursive"]?.boolValue == true
        var seen = withNames
        for part in parts {
            if let location = part.intValue(of: "location") {
                withScopes[location] = recursive ? withNames.union(names) : seen
            }
            if let name = part["ctename"]?.stringValue {
                // A copy of a table's rows (through copies before it), read where the statement reads `name`.
                // With RECURSIVE, a part naming no part of its WITH is an ordinary one.
                let source = part["aliascolnames"] == nil ? part["ctequery"].flatMap { WhereAnalysis.rowCopy($0, constants: constants) } : nil
                withCopies[name] = source.flatMap { source in
                    guard source.schema == nil else { return source }
                    if recursive, names.contains(source.name) { return nil }
                    // An unqualified name a WITH part has taken is that part: a copy only when the part is one.
                    return seen.contains(source.name) ? withCopies[source.name] : source
                }
                seen.insert(name)
            }
        }
        withNames.formUnion(names)
    }

    /// The name the changed table of a DELETE, UPDATE or MERGE goes by (its alias, or its name when it has
    /// none: PostgreSQL hides an aliased table's name), and the table as written, with whether a WITH (its
    /// own or one around it) gives its name to a part of its own.
    private func changedTable(_ fields: ParseTree) -> (names: Set<String>, written: WhereAnalysis.TableName?) {
        let relation = fields["relation"]
        let names = Set([relation?["alias"]?["aliasname"]?.stringValue ?? relation?["relname"]?.stringValue].compactMap { $0 })
        guard var written = relation.flatMap(WhereAnalysis.TableName.init(relation:)) else { return (names, nil) }
        written.copies = withCopies
        written.shadowed = withNames.contains(written.name) && !(withCopies[written.name].map(written.isCopied) ?? false)
        let others = (fields["usingClause"]?.elements ?? []) + (fields["fromClause"]?.elements ?? []) + [fields["sourceRelation"]].compactMap { $0 }
        for item in others {
            guard let other = item["RangeVar"], other["alias"] == nil, other["relname"]?.stringValue == written.name,
                  let schema = other["schemaname"]?.stringValue else { continue }
            written.namedElsewhere.insert(schema)
        }
        return (names, written)
    }

    /// Whether every row the MERGE matches is updated or deleted: its WHEN MATCHED clauses, taken in order
    /// as PostgreSQL takes them, reach an UPDATE or DELETE without a condition (or with one true for every
    /// row) with no DO NOTHING on a condition before it (it would keep the rows it holds).
    private static func changesEveryMatchedRow(_ clauses: [ParseTree], target: Set<String>, variables: Set<String>,
                                               constants: ConstantUse) -> Bool {
        for clause in clauses {
            guard let fields = clause.taggedFields, fields["matched"]?.boolValue == true else { continue }
            let command = fields["commandType"]?.stringValue
            let changes = command == "CMD_DELETE" || command == "CMD_UPDATE"
            // A clause whose condition is false for every row (`WHEN MATCHED AND false THEN DO NOTHING`) holds none.
            if let condition = fields["condition"], WhereAnalysis.isCertainlyFalse(condition, constants: constants) { continue }
            guard let condition = fields["condition"],
                  !WhereAnalysis.isTriviallyTrue(condition, target: target, variables: variables, constants: constants) else { return changes }
            // A conditional UPDATE or DELETE changes the rows it holds: the rest go on to the next clause.
            if !changes { return false }
        }
        return false
    }

    // MARK: Outage risk

    /// Changes that take a table down without deleting anything, as migration linters (squawk) flag
    /// them: a lock held for a table-sized time (`locking_ddl`), or a rename or retype of what running
    /// clients use (`breaking_change`). A table created earlier in the same text is exempt.
    private mutating func judgeOutageRisk(_ type: SQLNodeType, _ fields: ParseTree, location: Int) {
        // Computed when a case needs them: most nodes are none of these.
        var at: Int { relationLocation(fields, location) }
        var name: String { relationName(fields) }
        var fresh: Bool { relationKey(fields["relation"]).map { created.contains($0) } ?? false }
        switch type.special {
        // `IF NOT EXISTS` creates nothing when the table is there: changes to it are changes to that table.
        case .createStmt:
            if fields["if_not_exists"]?.boolValue != true, let key = relationKey(fields["relation"]) { created.insert(key) }
        case .createTableAs:
            if fields["if_not_exists"]?.boolValue != true, let key = relationKey(fields["into"]?["rel"]) { created.insert(key) }
        case .indexStmt:
            if fields["concurrent"]?.boolValue != true, !fresh {
                fire("locking_ddl", at: at, "CREATE INDEX on \(name) without CONCURRENTLY blocks writes to it for the whole build; use CREATE INDEX CONCURRENTLY")
            }
        case .alterTableStmt:
            guard !fresh else { return }
            let commands = (fields["cmds"]?.elements ?? []).compactMap(\.taggedFields)
            if fields["objtype"]?.stringValue == "OBJECT_INDEX" {
                if commands.contains(where: { $0["subtype"]?.stringValue == "AT_SetTableSpace" }) {
                    fire("locking_ddl", at: at, "ALTER INDEX \(name) SET TABLESPACE copies the index under ACCESS EXCLUSIVE, blocking the table's writes and the reads that use it")
                }
                return
            }
            // Constraints this statement adds NOT VALID: validating one in the same statement holds its lock.
            let addedNotValid = Set(commands.compactMap { command -> String? in
                guard command["subtype"]?.stringValue == "AT_AddConstraint", let constraint = command["def"]?["Constraint"],
                      constraint["skip_validation"]?.boolValue == true else { return nil }
                return constraint["conname"]?.stringValue
            })
            for cmd in commands {
                if cmd["subtype"]?.stringValue == "AT_ValidateConstraint", let constraint = cmd["name"]?.stringValue, addedNotValid.contains(constraint) {
                    fire("locking_ddl", at: at, "ALTER TABLE \(name) VALIDATE CONSTRAINT \(constraint) in the statement that adds it checks every row under its ACCESS EXCLUSIVE lock; validate it in a later transaction")
                }
                judgeAlterTableCommand(cmd, table: name, at: at)
            }
        case .alterTableMoveAll:
            fire("locking_ddl", at: location, "ALTER ... ALL IN TABLESPACE copies every table or index it moves under ACCESS EXCLUSIVE")
        case .alterDomain:
            // Each table with a column of the domain is scanned under a SHARE lock, which blocks its writes.
            let domain = (fields["typeName"]?.elements ?? []).compactMap { $0["String"]?["sval"]?.stringValue }.joined(separator: ".")
            switch fields["subtype"]?.stringValue {
            case "C" where fields["def"]?["Constraint"]?["skip_validation"]?.boolValue != true:
                fire("locking_ddl", at: location, "ALTER DOMAIN \(domain) ADD CONSTRAINT checks every column of the domain in every table, blocking their writes meanwhile; add it NOT VALID")
            case "O":
                fire("locking_ddl", at: location, "ALTER DOMAIN \(domain) SET NOT NULL checks every column of the domain in every table, blocking their writes meanwhile")
            case "V":
                fire("locking_ddl", at: location, "ALTER DOMAIN \(domain) VALIDATE CONSTRAINT checks every column of the domain in every table, blocking their writes meanwhile")
            default:
                break
            }
        case .vacuum:
            if Self.hasOption(fields["options"], "full") {
                fire("locking_ddl", at: location, "VACUUM FULL rewrites each table under ACCESS EXCLUSIVE, blocking its reads and writes; plain VACUUM does not")
            }
        case .cluster:
            fire("locking_ddl", at: location, "CLUSTER rewrites the table under ACCESS EXCLUSIVE, blocking its reads and writes")
        case .reindex:
            if !Self.hasOption(fields["params"], "concurrently") {
                fire("locking_ddl", at: location, "REINDEX without CONCURRENTLY blocks writes to the table, and reads that would use the index; use REINDEX ... CONCURRENTLY")
            }
        case .refreshMatView:
            if fields["concurrent"]?.boolValue != true {
                fire("locking_ddl", at: at, "REFRESH MATERIALIZED VIEW \(name) without CONCURRENTLY blocks reads of it until done")
            }
        case .lock:
            // 5: SHARE, 6: SHARE ROW EXCLUSIVE, 7: EXCLUSIVE (each conflicts with ROW EXCLUSIVE: blocks writes),
            // 8: ACCESS EXCLUSIVE (blocks reads too), until the transaction ends.
            let mode = fields["mode"]?.intValue ?? 0
            let names = [5: "SHARE", 6: "SHARE ROW EXCLUSIVE", 7: "EXCLUSIVE", 8: "ACCESS EXCLUSIVE"]
            if mode >= 5 {
                fire("locking_ddl", at: location, "LOCK ... IN \(names[mode] ?? "ACCESS EXCLUSIVE") MODE blocks \(mode == 8 ? "reads and writes" : "writes") until the transaction ends")
            }
        case .renameStmt:
            let kind = fields["renameType"]?.stringValue ?? ""
            if Self.breakingRenames.contains(kind), !fresh {
                let what = kind.replacingPrefix("OBJECT_").lowercased().replacingOccurrences(of: "_", with: " ")
                let object = kind == "OBJECT_COLUMN" ? "\(name).\(fields["subname"]?.stringValue ?? "?")"
                    : fields["relation"] != nil ? name : fields["subname"]?.stringValue ?? Self.renamedObjectName(fields["object"])
                fire("breaking_change", at: location, "renames \(what) \(object), which running clients may use by name; add the new name beside the old one (a view, a new column) and move the clients first")
            }
        case .alterObjectSchema:
            if ["OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_FUNCTION", "OBJECT_PROCEDURE", "OBJECT_TYPE"].contains(fields["objectType"]?.stringValue ?? ""), !fresh {
                fire("breaking_change", at: location, "moves \(fields["relation"] != nil ? name : "an object") to schema \(fields["newschema"]?.stringValue ?? "?"), where running clients will not find it by its old name")
            }
        default:
            break
        }
    }

    /// Renames that break clients using the old name (not of indexes, constraints, sequences or triggers).
    static let breakingRenames: Set<String> = ["OBJECT_TABLE", "OBJECT_COLUMN", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_SCHEMA",
                                               "OBJECT_FUNCTION", "OBJECT_PROCEDURE", "OBJECT_FOREIGN_TABLE", "OBJECT_TYPE",
                                               "OBJECT_ATTRIBUTE", "OBJECT_DOMAIN"]

    private mutating func judgeAlterTableCommand(_ cmd: ParseTree, table: String, at: Int) {
        let subtype = cmd["subtype"]?.stringValue ?? ""
        let column = cmd["name"]?.stringValue ?? "?"
        switch subtype {
        case "AT_AlterColumnType":
            fire("locking_ddl", at: at, "ALTER TABLE \(table) ALTER COLUMN \(column) TYPE rewrites the table under ACCESS EXCLUSIVE, blocking its reads and writes")
            fire("breaking_change", at: at, "ALTER TABLE \(table) ALTER COLUMN \(column) TYPE changes what running clients read and write")
        case "AT_SetNotNull":
            fire("locking_ddl", at: at, "ALTER TABLE \(table) ALTER COLUMN \(column) SET NOT NULL scans the whole table under ACCESS EXCLUSIVE; add CHECK (\(column) IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL")
        case "AT_SetTableSpace", "AT_SetLogged", "AT_SetUnLogged", "AT_SetAccessMethod":
            fire("locking_ddl", at: at, "ALTER TABLE \(table) \(subtype.replacingPrefix("AT_")) rewrites the table under ACCESS EXCLUSIVE")
        case "AT_AttachPartition":
            // Even a partition made in the same text: the parent's DEFAULT partition, if it has one, is scanned too.
            let partition = cmd["def"]?["PartitionCmd"]?["name"]
            fire("locking_ddl", at: at, "ALTER TABLE \(table) ATTACH PARTITION \(relationKey(partition) ?? "?") scans the partition (and a DEFAULT partition of \(table)) under a lock that blocks writes, to check the rows fit the bound, unless a CHECK constraint already proves it; add that constraint (NOT VALID, then VALIDATE) first")
        case "AT_DetachPartition" where cmd["def"]?["PartitionCmd"]?["concurrent"]?.boolValue != true:
            fire("locking_ddl", at: at, "ALTER TABLE \(table) DETACH PARTITION without CONCURRENTLY takes ACCESS EXCLUSIVE on \(table), blocking its reads and writes (and waiting behind every query on it); use DETACH PARTITION ... CONCURRENTLY")
        case "AT_AddColumn":
            let definition = cmd["def"]?["ColumnDef"]
            let constraints = (definition?["constraints"]?.elements ?? []).compactMap { $0["Constraint"] }
            let kinds = constraints.compactMap { $0["contype"]?.stringValue }
            let name = definition?["colname"]?.stringValue ?? "?"
            if kinds.contains("CONSTR_NOTNULL"), !kinds.contains("CONSTR_DEFAULT"), !kinds.contains("CONSTR_IDENTITY"), !kinds.contains("CONSTR_GENERATED") {
                fire("breaking_change", at: at, "ALTER TABLE \(table) ADD COLUMN \(name) NOT NULL without a default fails on a table with rows, and every INSERT that does not name it fails; add a default")
            }
            if let expression = constraints.first(where: { $0["contype"]?.stringValue == "CONSTR_DEFAULT" })?["raw_expr"], !Self.isCheapDefault(expression) {
                fire("locking_ddl", at: at, "ALTER TABLE \(table) ADD COLUMN \(name) with a default that is not a constant rewrites the table under ACCESS EXCLUSIVE; add the column, then fill it in batches")
            } else if let type = definition?["typeName"]?["names"]?.lastElement?["String"]?["sval"]?.stringValue, Self.serialTypes.contains(type) {
                fire("locking_ddl", at: at, "ALTER TABLE \(table) ADD COLUMN \(name) \(type) fills it from a sequence (a default of nextval()), rewriting the table under ACCESS EXCLUSIVE; add the column, then fill it in batches")
            }
            if kinds.contains(where: { ["CONSTR_PRIMARY", "CONSTR_UNIQUE", "CONSTR_EXCLUSION", "CONSTR_IDENTITY", "CONSTR_GENERATED"].contains($0) }) {
                fire("locking_ddl", at: at, "ALTER TABLE \(table) ADD COLUMN \(name) with an index, identity or stored generated value builds or rewrites under ACCESS EXCLUSIVE")
            }
            if kinds.contains("CONSTR_FOREIGN") || kinds.contains("CONSTR_CHECK") {
                fire("locking_ddl", at: at, "ALTER TABLE \(table) ADD COLUMN \(name) with a CHECK or REFERENCES constraint validates every row under lock")
            }
        case "AT_AddConstraint":
            guard let constraint = cmd["def"]?["Constraint"] else { return }
            let kind = constraint["contype"]?.stringValue ?? ""
            let what = constraint["conname"]?.stringValue.map { "constraint \($0)" } ?? "a constraint"
            switch kind {
            case "CONSTR_FOREIGN", "CONSTR_CHECK":
                if constraint["skip_validation"]?.boolValue != true {
                    fire("locking_ddl", at: at, "ALTER TABLE \(table) ADD \(what) checks every row while it holds the lock; add it NOT VALID, then VALIDATE CONSTRAINT")
                }
            case "CONSTR_PRIMARY", "CONSTR_UNIQUE":
                if constraint["indexname"]?.stringValue == nil {
                    fire("locking_ddl", at: at, "ALTER TABLE \(table) ADD \(what) builds its index under ACCESS EXCLUSIVE; CREATE UNIQUE INDEX CONCURRENTLY first, then ADD ... USING INDEX")
                }
            case "CONSTR_EXCLUSION":
                fire("locking_ddl", at: at, "ALTER TABLE \(table) ADD \(what) builds its index under ACCESS EXCLUSIVE")
            default:
                break
            }
        default:
            break
        }
    }

    /// A column default that PostgreSQL stores without rewriting the table: a constant (cast or not),
    /// or the current time (stable: one value for the whole statement).
    static func isCheapDefault(_ expression: ParseTree) -> Bool {
        if expression["A_Const"] != nil || expression["SQLValueFunction"] != nil { return true }
        if let cast = expression["TypeCast"]?["arg"] { return isCheapDefault(cast) }
        if let call = expression["FuncCall"], (call["args"]?.elements ?? []).isEmpty,
           let name = call["funcname"]?.lastElement?["String"]?["sval"]?.stringValue {
            return ["now", "transaction_timestamp", "statement_timestamp", "current_date", "current_timestamp", "localtimestamp"].contains(name)
        }
        return false
    }

    /// The name of a renamed function, type or domain (a list of name parts, or one with arguments).
    static func renamedObjectName(_ object: ParseTree?) -> String {
        let parts = object?["ObjectWithArgs"]?["objname"]?.elements ?? object?["List"]?["items"]?.elements ?? object?.elements ?? []
        let names = parts.compactMap { $0["String"]?["sval"]?.stringValue }
        return names.isEmpty ? "?" : names.joined(separator: ".")
    }

    /// Whether an option is on: the last time it is given counts, as PostgreSQL reads a list
    /// (`REINDEX (CONCURRENTLY, CONCURRENTLY off)` is off).
    static func hasOption(_ options: ParseTree?, _ name: String) -> Bool {
        (options?.elements ?? []).last { $0["DefElem"]?["defname"]?.stringValue == name }.map { isOn($0["DefElem"]?["arg"]) } ?? false
    }

    /// Column types that take their values from a sequence of their own.
    static let serialTypes: Set<String> = ["serial", "bigserial", "smallserial", "serial2", "serial4", "serial8"]

    /// A relation as spelled (schema.name or name): how `created` recognises it again.
    private func relationKey(_ relation: ParseTree?) -> String? {
        guard let relation, let name = relation["relname"]?.stringValue else { return nil }
        return (relation["schemaname"]?.stringValue.map { "\($0)." } ?? "") + name
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
            guard let element = argument.taggedFields else { continue }
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
        let tag = PgQuery.dollarTag(avoiding: code)
        judgePlpgsql("DO \(tag)\(code)\(tag)", position: at, label: "DO block", body: code)
    }

    private mutating func judgeFunctionBody(_ fields: ParseTree, location: Int) {
        var language = fields["sql_body"] == nil ? "" : "sql"
        var body: [String] = []
        var at = location
        for option in fields["options"]?.elements ?? [] {
            guard let element = option.taggedFields else { continue }
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
            let outerVariables = variables
            defer { variables = outerVariables }
            variables.formUnion(Self.parameterNames(fields))
            classifyText(body[0], body: context)
        } else {
            // The function's name qualifies its parameters (`f.x`).
            let outerVariables = variables
            defer { variables = outerVariables }
            if let name = fields["funcname"]?.lastElement?["String"]?["sval"]?.stringValue { variables.insert(name) }
            judgePlpgsql(String(statementText), position: at, label: "function body", body: body[0])
        }
    }

    private func nestedBody(at position: Int, label: String) -> BodyContext? {
        let depth = (body?.depth ?? 0) + 1
        guard depth <= SQLClassifier.maximumBodyDepth else { return nil }
        return BodyContext(position: body?.position ?? position, label: body.map { "\($0.label), \(label)" } ?? label, depth: depth)
    }

    /// `body` is the PL/pgSQL code inside `source`, rewritten (`PlpgsqlRewrite`) when the parser
    /// refuses it for want of the database's catalog.
    private mutating func judgePlpgsql(_ source: String, position: Int, label: String, body code: String) {
        guard let context = nestedBody(at: position, label: label) else {
            fire("too_complex", at: position, "bodies nested more than \(SQLClassifier.maximumBodyDepth) deep")
            return
        }
        let outer = body
        body = context
        defer { body = outer }
        let json: [UInt8]
        var parsed = PgQuery.parsePlpgsql(source)
        if case .failure = parsed, let rewritten = PlpgsqlRewrite.source(source, body: code),
           case let .success(json) = PgQuery.parsePlpgsql(rewritten) {
            parsed = .success(json)
        }
        switch parsed {
        case let .failure(error):
            fire("unparseable", at: position, "PostgreSQL's PL/pgSQL parser says: \(error.message)")
            return
        case let .success(bytes):
            json = bytes
        }
        let outerVariables = variables
        defer { variables = outerVariables }
        // A trigger function's implicit variables (NEW, OLD, TG_OP, ...) and the names ALIAS FOR gives are values
        // too, though the tree declares neither (as columns they would only make fewer conditions row-independent).
        variables.formUnion(Self.triggerVariables)
        variables.formUnion(PlpgsqlRewrite.aliasNames(code))
        let walked = ParseTreeReader.read(json, maximumDepth: SQLClassifier.maximumTreeDepth) { tree in
            variables.formUnion(Self.declaredNames(tree))
            walkPlpgsql(tree)
        }
        if case let .failure(error) = walked { fire("too_complex", at: position, "the body is \(error.message)") }
        // libpg_query's dump of a row or record variable carries no default: every declaration's default
        // is also read from the text (those the tree shows are found twice and counted once).
        for expression in PlpgsqlRewrite.declarationDefaults(code) { judgeEmbeddedSQL(expression) }
    }

    /// What a PL/pgSQL trigger function reads its trigger by (row and event triggers).
    static let triggerVariables: Set<String> = ["new", "old", "tg_op", "tg_name", "tg_when", "tg_level", "tg_relid", "tg_relname",
                                                "tg_table_name", "tg_table_schema", "tg_nargs", "tg_argv", "tg_event", "tg_tag"]

    /// The names a LANGUAGE sql function's statements may read its parameters by: each parameter's name, and
    /// the function's own, which qualifies them (`f.x`).
    static func parameterNames(_ fields: ParseTree) -> Set<String> {
        var names = Set((fields["parameters"]?.elements ?? []).compactMap { $0["FunctionParameter"]?["name"]?.stringValue })
        if let name = fields["funcname"]?.lastElement?["String"]?["sval"]?.stringValue { names.insert(name) }
        return names
    }

    /// The names a PL/pgSQL function declares (its variables, parameters, records, FOUND and the like), and
    /// the labels of its blocks and loops, which qualify them (`<<outer>> ... outer.x`).
    static func declaredNames(_ node: ParseTree) -> Set<String> {
        var names: Set<String> = []
        if let (type, inner) = node.tagged {
            if ["PLpgSQL_var", "PLpgSQL_rec", "PLpgSQL_row"].contains(type), let name = inner["refname"]?.stringValue {
                return [name]
            }
            if let label = inner["label"]?.stringValue { names.insert(label) }
        }
        return node.children.reduce(into: names) { $0.formUnion(declaredNames($1)) }
    }

    private mutating func walkPlpgsql(_ node: ParseTree) {
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
            for child in node.children { walkPlpgsql(child) }
        }
    }

    /// A PL/pgSQL expression is a statement (`DELETE FROM t`), an expression (`x > 0`) or an
    /// assignment (`x := f(y)`); read it as whichever PostgreSQL accepts, and fail closed otherwise.
    /// The values a SET lists, as written (strings and names; a number as its digits). Their values are read.
    static func settingValues(_ arguments: ParseTree?, constants: ConstantUse) -> [String] {
        constants.read()
        return (arguments?.elements ?? []).map { argument in
            argument["A_Const"]?["sval"]?["sval"]?.stringValue ?? argument["A_Const"]?["ival"]?["ival"]?.intValue.map(String.init) ?? ""
        }
    }

    /// Whether a list of transaction options (`BEGIN ...`, `SET TRANSACTION ...`) says READ WRITE.
    static func setsReadWrite(_ options: ParseTree?, constants: ConstantUse) -> Bool {
        (options?.elements ?? []).contains { option in
            guard let element = option["DefElem"], element["defname"]?.stringValue == "transaction_read_only" else { return false }
            constants.read()
            // The parse tree leaves out zero values: READ WRITE is an A_Const without a number.
            return (element["arg"]?["A_Const"]?["ival"]?["ival"]?.intValue ?? 0) == 0
        }
    }

    private mutating func judgeEmbeddedSQL(_ query: String) {
        var candidates = [query, "SELECT " + query]
        let assignment = query.range(of: ":=") ?? query.range(of: "=")
        if let assignment {
            // The target's subscripts are expressions too (`a[f()] := 1`).
            let target = "SELECT " + query[..<assignment.lowerBound]
            if target.contains("["), PgQuery.accepts(target) { classifyText(target, body: body) }
            candidates.append("SELECT " + query[assignment.upperBound...])
        }
        for candidate in candidates {
            if PgQuery.accepts(candidate) {
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
        return booleanValue(argument) ?? true
    }

    /// Whether an option's value (`security_barrier = false`, `ANALYZE 0`) is on, as PostgreSQL's parse_bool reads
    /// it (`t`, `tru`, `yes`, `on`, `1`; `f`, `of`, `no`, `0`, any unambiguous beginning): nil when it is none of them.
    static func booleanValue(_ argument: ParseTree) -> Bool? {
        if let value = argument["String"]?["sval"]?.stringValue { return parseBool(value) }
        if let integer = argument["Integer"] { return (integer["ival"]?.intValue ?? 0) != 0 }
        if let boolean = argument["Boolean"] { return boolean["boolval"]?.boolValue ?? false }
        return nil
    }

    /// A text as PostgreSQL's parse_bool reads it; nil when it is not a boolean.
    static func parseBool(_ text: String) -> Bool? {
        let value = text.lowercased()
        func begins(_ word: String, from shortest: Int) -> Bool { value.count >= shortest && word.hasPrefix(value) }
        if begins("true", from: 1) || begins("yes", from: 1) || begins("on", from: 2) || value == "1" { return true }
        if begins("false", from: 1) || begins("no", from: 1) || begins("off", from: 2) || value == "0" { return false }
        return nil
    }

    static func objectNames(_ objects: [ParseTree]) -> String {
        let names = objects.map { object -> String in
            let parts = object["List"]?["items"]?.elements ?? object.elements
            let strings = parts.compactMap { $0["String"]?["sval"]?.stringValue }
            return strings.isEmpty ? (object["String"]?["sval"]?.stringValue ?? "?") : strings.joined(separator: ".")
        }
        return names.joined(separator: ", ")
    }

    /// A node type's name: the tagged node's key (`fields` is its value) when the walk does not know the type.
    static func name(of type: SQLNodeType, _ fields: ParseTree) -> String {
        type.isUnknown ? fields.key ?? "?" : type.name
    }

    /// Node types whose names do not read as the statement: `DropdbStmt` is DROP DATABASE.
    static let statementNames = ["DropdbStmt": "DROP DATABASE", "CreatedbStmt": "CREATE DATABASE", "VariableSetStmt": "SET",
                                 "VariableShowStmt": "SHOW"]

    static func describe(_ type: String) -> String {
        if let name = statementNames[type] { return name }
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

extension SQLClassifier {
    /// The type a cast names when it is PostgreSQL's own (unqualified or in `pg_catalog`), and whether it is written
    /// plain, without a length or array bounds; nil for a type named in another schema.
    static func castType(_ cast: ParseTree) -> (name: String, plain: Bool)? {
        let type = cast["typeName"]?["TypeName"] ?? cast["typeName"]
        let names = (type?["names"]?.elements ?? []).compactMap { $0["String"]?["sval"]?.stringValue }
        guard let name = names.last, names.count == 1 || (names.count == 2 && names[0] == "pg_catalog") else { return nil }
        return (name, type?["typmods"] == nil && type?["arrayBounds"] == nil)
    }

    /// An encoding's name as PostgreSQL compares names: lower case, letters and digits (`UTF-8` and `utf8` alike).
    static func encodingName(_ name: String) -> String {
        String(name.lowercased().filter { $0.isLetter || $0.isNumber })
    }
}
