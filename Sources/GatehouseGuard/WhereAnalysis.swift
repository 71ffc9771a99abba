import Foundation
import GatehouseCore
/// Decides whether a WHERE (or MERGE join) condition selects every row.
///
/// A condition that does not look at the row at all (`true`, `1=1`, `now() > '2000-01-01'`) selects
/// all rows or none, so it is treated as true unless it is certainly false. Conditions that do look at
/// the row are true for every row when they compare an expression with itself (`x = x`), match
/// everything (`x LIKE '%'`, `x ~ ''`, `x SIMILAR TO '%'`), negate a comparison false for every row
/// (`NOT (x <> x)`), test both `IS NULL` and `IS NOT NULL` of one expression, or are an OR
/// with such a branch.
enum WhereAnalysis {
    /// `target`: the names the changed table goes by (its name and alias), when known: only a column
    /// qualified with one of them is the row's own (`orders.id = id`). `variables`: in a PL/pgSQL body,
    /// the names declared there (variables, parameters, records): `flag` or `r.id` is then the same for
    /// every row (PostgreSQL refuses a name that is both, unless `#variable_conflict` says which wins).
    /// `constants` learns when the answer read the value of a constant (`1 = 1`, `x LIKE '%'`).
    /// `table`: the changed table as written (its schema when qualified, and whether a WITH gives its name to a
    /// part of its own).
    static func isTriviallyTrue(_ condition: ParseTree, target: Set<String>? = nil, table: TableName? = nil, variables: Set<String> = [],
                                constants: ConstantUse) -> Bool {
        let isTriviallyTrue = { (node: ParseTree) in
            Self.isTriviallyTrue(node, target: target, table: table, variables: variables, constants: constants)
        }
        if constants.step() { return false }
        let condition = valueOf(condition, constants: constants)
        if !readsRow(condition, variables: variables, budget: constants) { return !isCertainlyFalse(condition, constants: constants) }
        guard let (type, fields) = condition.tagged else { return false }
        switch type {
        case "BoolExpr":
            let arguments = fields["args"]?.elements ?? []
            switch fields["boolop"]?.stringValue {
            case "OR_EXPR":
                return arguments.contains(where: isTriviallyTrue) || coversNull(arguments, constants: constants)
                    || complements(arguments, constants: constants)
            case "AND_EXPR":
                return !arguments.isEmpty && arguments.allSatisfy(isTriviallyTrue)
            case "NOT_EXPR":
                // `NOT EXISTS (SELECT 1 FROM t x WHERE x.id = t.id AND false)`: the negation of what is false for every row.
                if arguments.count == 1, isCertainlyFalse(arguments[0], constants: constants) { return true }
                // `NOT (x <> x)`: the negation of a comparison that is false for every row.
                guard arguments.count == 1, let (inner, comparison) = arguments[0].tagged, inner == "A_Expr",
                      comparison["kind"]?.stringValue == "AEXPR_OP",
                      ["<>", "<", ">"].contains(comparison["name"]?.lastElement?["String"]?["sval"]?.stringValue ?? ""),
                      let left = comparison["lexpr"], let right = comparison["rexpr"] else { return false }
                return same(left, right, constants: constants) || sameColumn(left, right, target: target, table: table)
            default:
                return false
            }
        case "A_Expr":
            let kind = fields["kind"]?.stringValue
            let name = fields["name"]?.lastElement?["String"]?["sval"]?.stringValue ?? ""
            guard let left = fields["lexpr"], let right = fields["rexpr"] else { return false }
            switch kind {
            case "AEXPR_OP" where ["=", ">=", "<="].contains(name):
                // `name = name COLLATE "C"`: a value equals itself in any (deterministic) collation; so does
                // `id = (SELECT id)` and `id = coalesce(NULL, id)`.
                let (left, right) = (valueOf(left, constants: constants), valueOf(right, constants: constants))
                return same(left, right, constants: constants) || sameColumn(left, right, target: target, table: table)
                    || fallsBack(left, to: right, target: target, table: table, constants: constants)
                    || fallsBack(right, to: left, target: target, table: table, constants: constants)
            case "AEXPR_IN" where name == "=":
                // `id IN (id, 3)`: a list that holds the tested expression itself.
                let tested = valueOf(left, constants: constants)
                return (right["List"]?["items"]?.elements ?? []).contains { item in
                    let item = valueOf(item, constants: constants)
                    return same(tested, item, constants: constants) || sameColumn(tested, item, target: target, table: table)
                }
            case "AEXPR_OP_ANY" where name == "~~" || name == "~~*" || name == "~" || name == "~*":
                // `v LIKE ANY (ARRAY['%', 'x'])`: one pattern that matches every text is enough.
                guard let elements = right["A_ArrayExpr"]?["elements"]?.elements else { return false }
                return elements.contains { patternMatchesAnyText($0, regex: name.hasPrefix("~") && !name.hasPrefix("~~"), variables: variables, constants: constants) }
            case "AEXPR_OP_ANY" where name == "=":
                // `id = ANY (ARRAY[id, 3])`: an array that holds the tested expression itself.
                if let elements = right["A_ArrayExpr"]?["elements"]?.elements {
                    let tested = valueOf(left, constants: constants)
                    return elements.contains { item in
                        let item = valueOf(item, constants: constants)
                        return same(tested, item, constants: constants) || sameColumn(tested, item, target: target, table: table)
                    }
                }
                // `id = ANY (ARRAY(SELECT id FROM t))`: as `id IN (SELECT id FROM t)`.
                guard let table, let target, let (type, link) = right.tagged, type == "SubLink",
                      link["subLinkType"]?.stringValue == "ARRAY_SUBLINK",
                      let column = columnName(left, qualifiers: target, variables: variables),
                      let select = link["subselect"]?["SelectStmt"] else { return false }
                return keepsOwnValues(select, columns: [column], table: table, target: target, variables: variables, constants: constants)
            case "AEXPR_NOT_DISTINCT":
                return same(left, right, constants: constants)
            case "AEXPR_BETWEEN", "AEXPR_BETWEEN_SYM":
                // `id BETWEEN id AND id`.
                guard let bounds = right["List"]?["items"]?.elements, bounds.count == 2 else { return false }
                let tested = valueOf(left, constants: constants)
                return bounds.allSatisfy { bound in
                    let bound = valueOf(bound, constants: constants)
                    return same(tested, bound, constants: constants) || sameColumn(tested, bound, target: target, table: table)
                }
            case "AEXPR_LIKE", "AEXPR_ILIKE", "AEXPR_OP" where name == "~~" || name == "~~*":
                // `x LIKE '%'`, the operator it is (`x ~~ '%'`), and `x LIKE '%' ESCAPE '\'` (`like_escape('%', '\')`).
                guard name == "~~" || name == "~~*" else { return false }
                if let (call, function) = right.tagged, call == "FuncCall",
                   function["funcname"]?.lastElement?["String"]?["sval"]?.stringValue == "like_escape",
                   let arguments = function["args"]?.elements, arguments.count == 2 {
                    guard let escape = constantString(arguments[1], constants: constants), escape != "%" else { return false }
                    return patternMatchesAnyText(arguments[0], regex: false, variables: variables, constants: constants)
                }
                return patternMatchesAnyText(right, regex: false, variables: variables, constants: constants)
            case "AEXPR_OP" where name == "~" || name == "~*":
                return patternMatchesAnyText(right, regex: true, variables: variables, constants: constants)
            case "AEXPR_OP" where name == "^@":
                // `v ^@ ''`: every text starts with the empty string.
                return patternString(right, constants: constants) == ""
            case "AEXPR_SIMILAR":
                // `x SIMILAR TO '%'` is `x ~ similar_to_escape('%')`; with an ESCAPE the call has two arguments.
                guard name == "~", let (call, function) = right.tagged, call == "FuncCall",
                      function["funcname"]?.lastElement?["String"]?["sval"]?.stringValue == "similar_to_escape",
                      let arguments = function["args"]?.elements, (1...2).contains(arguments.count) else { return false }
                // With an ESCAPE other than `%` the pattern reads as without one, as far as matching everything goes.
                if arguments.count == 2, constantString(arguments[1], constants: constants) == "%" { return false }
                return patternMatchesAnyText(arguments[0], regex: false, variables: variables, constants: constants)
            default:
                return false
            }
        case "SubLink":
            if let inside = existsCondition(fields, constants: constants) { return isTriviallyTrue(inside) }
            // `EXISTS (SELECT t.id)`: a subquery with no FROM and no filter gives its one row for every row.
            if fields["subLinkType"]?.stringValue == "EXISTS_SUBLINK", let select = fields["subselect"]?["SelectStmt"],
               givesOneRow(select, constants: constants) { return true }
            // `id IN (SELECT t.id)`: the row's value compared with itself.
            if fields["subLinkType"]?.stringValue == "ANY_SUBLINK",
               (fields["operName"]?.lastElement?["String"]?["sval"]?.stringValue ?? "=") == "=",
               let tested = fields["testexpr"], let value = singleValue(fields, constants: constants) {
                let (left, right) = (valueOf(tested, constants: constants), valueOf(value, constants: constants))
                if same(left, right, constants: constants) || sameColumn(left, right, target: target, table: table) { return true }
            }
            // `(SELECT id = id)`: a subquery without FROM gives its one output for every row, whatever it is (an
            // operator returning a set could give no row, NULL: then the answer is only more careful).
            if fields["subLinkType"]?.stringValue == "EXPR_SUBLINK", let select = fields["subselect"]?["SelectStmt"],
               let outputs = select["targetList"]?.elements, outputs.count == 1, let output = outputs[0]["ResTarget"]?["val"],
               select["fromClause"] == nil, select["withClause"] == nil, select["larg"] == nil,
               keepsEveryRow(select, without: wholeTableClauses, constants: constants), isTriviallyTrue(output) { return true }
            guard let table, let target else { return false }
            return isOwnColumnSet(fields, table: table, target: target, variables: variables, constants: constants)
                || findsOwnRow(fields, table: table, target: target, variables: variables, constants: constants)
        case "TypeCast":
            return fields["arg"].map(isTriviallyTrue) ?? false
        case "FuncCall":
            // The functions behind the pattern operators, called by name: like(v, '%'), regexp_like(v, ''), starts_with(v, '').
            let parts = (fields["funcname"]?.elements ?? []).compactMap { $0["String"]?["sval"]?.stringValue }
            guard let function = parts.last, parts.count == 1 || (parts.count == 2 && parts[0] == "pg_catalog"),
                  let arguments = fields["args"]?.elements, arguments.count >= 2 else { return false }
            switch function {
            case "like", "textlike", "ilike", "texticlike", "bpcharlike", "namelike":
                return arguments.count == 2 && patternMatchesAnyText(arguments[1], regex: false, variables: variables, constants: constants)
            case "regexp_like", "textregexeq", "texticregexeq":
                return patternMatchesAnyText(arguments[1], regex: true, variables: variables, constants: constants)
            case "starts_with":
                return arguments.count == 2 && patternString(arguments[1], constants: constants) == ""
            default:
                return false
            }
        case "BooleanTest":
            // `(x = x) IS TRUE`, `(x = x) IS NOT FALSE` (true for a NULL too).
            return ["IS_TRUE", "IS_NOT_FALSE"].contains(fields["booltesttype"]?.stringValue ?? "") && (fields["arg"].map(isTriviallyTrue) ?? false)
        case "NullTest":
            // `NULLIF(id, id) IS NULL`: NULLIF of a value and itself is NULL for every row.
            if fields["nulltesttype"]?.stringValue == "IS_NULL", let nullif = fields["arg"].map({ valueOf($0, constants: constants) })?["A_Expr"],
               nullif["kind"]?.stringValue == "AEXPR_NULLIF", let left = nullif["lexpr"], let right = nullif["rexpr"] {
                let (left, right) = (valueOf(left, constants: constants), valueOf(right, constants: constants))
                return same(left, right, constants: constants) || sameColumn(left, right, target: target, table: table)
            }
            // `ctid IS NOT NULL`: a system column is set on every row.
            guard fields["nulltesttype"]?.stringValue == "IS_NOT_NULL",
                  let parts = fields["arg"]?["ColumnRef"]?["fields"]?.elements.compactMap({ $0["String"]?["sval"]?.stringValue }),
                  let column = parts.last, systemColumns.contains(column) else { return false }
            return parts.count == 1 || (target?.contains(parts[parts.count - 2]) ?? false)
        default:
            return false
        }
    }

    /// Columns every row of a table has, never NULL.
    private static let systemColumns: Set<String> = ["ctid", "tableoid", "xmin", "xmax", "cmin", "cmax"]

    private static func namesOuterColumn(_ node: ParseTree?, local: Set<String>, budget: ConstantUse, joinNamesKnown: Bool = false) -> Bool {
        guard let node else { return false }
        // Spent: taken as naming one (the text is too complex to judge, and said so).
        if budget.step() { return true }
        if let (type, inner) = node.tag {
            if type.is("CurrentOfExpr") { return true }
            if type.is("ColumnRef") {
                let parts = inner["fields"]?.elements ?? []
                if parts.count == 1, parts[0]["A_Star"] != nil { return false }
                if parts.count >= 2, let table = parts[parts.count - 2]["String"]?["sval"]?.stringValue {
                    // `archive.orders.id` is the subquery's only when it reads archive.orders (not public.orders).
                    let schema = parts.count >= 3 ? parts[parts.count - 3]["String"]?["sval"]?.stringValue : nil
                    if local.contains(schema.map { "\($0).\(table)" } ?? table) { return false }
                }
                return true
            }
            if type.is("SelectStmt") {
                let names = local.union(relationNames(inner["fromClause"]))
                if budget.step(names.count) { return true }
                return node.children.contains { namesOuterColumn($0, local: names, budget: budget) }
            }
            if type.is("JoinExpr") {
                // Within a join (its ON condition, a LATERAL item) the names its own alias hides are seen.
                let names = joinNamesKnown ? local : local.union(relationNames(inner["larg"])).union(relationNames(inner["rarg"]))
                if budget.step(names.count) { return true }
                // A join nested in this one without an alias of its own: its names are among these already
                // (finding them again at every join of a long chain took quadratic time).
                return inner.children.contains { child in
                    let nested = (child.hasKey("larg") || child.hasKey("rarg")) && child["JoinExpr"].map { $0["alias"] == nil } == true
                    return namesOuterColumn(child, local: names, budget: budget, joinNamesKnown: nested)
                }
            }
        }
        return node.children.contains { namesOuterColumn($0, local: local, budget: budget) }
    }

    /// The names the tables of a FROM list go by: a table's alias, or its name when it has none (PostgreSQL
    /// hides an aliased table's own name: `users.id` beside `FROM users x` is an outer query's column),
    /// through joins and samples; a join's alias hides the names within it (its USING alias does not); a
    /// subquery's or table function's alias; a function's name when it has none.
    private static func relationNames(_ node: ParseTree?) -> Set<String> {
        var names: Set<String> = []
        collectRelationNames(node, into: &names)
        return names
    }

    /// `relationNames`, added to one set (a new set at every join of a long chain took quadratic time).
    private static func collectRelationNames(_ node: ParseTree?, into names: inout Set<String>) {
        guard let node else { return }
        if let (type, inner) = node.tagged {
            let alias = inner["alias"]?["aliasname"]?.stringValue
            switch type {
            case "RangeVar":
                // Unaliased, it also goes by its schema-qualified name (`public.orders.id` beside `FROM orders`).
                if let alias {
                    names.insert(alias)
                } else if let name = inner["relname"]?.stringValue {
                    names.insert(name)
                    names.insert("\(inner["schemaname"]?.stringValue ?? "public").\(name)")
                }
            case "RangeTableSample":
                collectRelationNames(inner["relation"], into: &names)
            case "RangeSubselect", "RangeTableFunc":
                if let alias { names.insert(alias) }
            case "RangeFunction":
                if let alias {
                    names.insert(alias)
                } else if let name = inner["functions"]?.firstElement?["List"]?["items"]?.firstElement?["FuncCall"]?["funcname"]?.lastElement?["String"]?["sval"]?.stringValue {
                    // `FROM generate_series(1, 3)` goes by the function's name; ROWS FROM (...) by the first's.
                    names.insert(name)
                }
            case "JoinExpr":
                if let alias {
                    names.insert(alias)
                } else {
                    collectRelationNames(inner["larg"], into: &names)
                    collectRelationNames(inner["rarg"], into: &names)
                }
                if let using = inner["join_using_alias"]?["aliasname"]?.stringValue { names.insert(using) }
            default:
                break
            }
            return
        }
        for child in node.children { collectRelationNames(child, into: &names) }
    }

    /// Whether the expression depends on the row: a column, or a subquery that may name one of the
    /// row's columns (it may be correlated). A subquery whose columns are all its own (`*`, or qualified
    /// with a table of its FROM) or that names none (`EXISTS (SELECT 1)`) is the same for every row; an
    /// unqualified name inside it could be the outer row's, and counts as such.
    /// Each node looked at is a step of `budget`; once it is spent the answer is "reads the row".
    static func readsRow(_ node: ParseTree, variables: Set<String> = [], budget: ConstantUse) -> Bool {
        let readsRow = { (node: ParseTree) in Self.readsRow(node, variables: variables, budget: budget) }
        if budget.step() { return true }
        if let (type, inner) = node.tag {
            if type.is("ColumnRef") {
                // `tableoid` is the same for every row of a table (a condition on it alone selects all of a table's
                // rows or none, as one that reads no column).
                if inner["fields"]?.lastElement?["String"]?["sval"]?.stringValue == "tableoid" { return false }
                let first = inner["fields"]?.firstElement?["String"]?["sval"]?.stringValue
                return first.map { !variables.contains($0) } ?? true
            }
            if type.is("CurrentOfExpr") { return true }
            if type.is("SubLink") { return (inner["testexpr"].map(readsRow) ?? false) || namesOuterColumn(inner["subselect"], local: [], budget: budget) }
        }
        return node.children.contains(where: readsRow)
    }

    /// True only when the constant condition is false or NULL for sure.
    static func isCertainlyFalse(_ condition: ParseTree, constants: ConstantUse) -> Bool {
        let isCertainlyFalse = { (node: ParseTree) in Self.isCertainlyFalse(node, constants: constants) }
        guard let (type, fields) = condition.tagged else { return false }
        switch type {
        case "A_Const":
            constants.read()
            if fields["isnull"]?.boolValue == true { return true }
            if let boolean = fields["boolval"] { return boolean["boolval"]?.boolValue != true }
            return false
        case "TypeCast":
            if let text = fields["arg"].flatMap({ constantString($0, constants: constants) })?.lowercased() {
                return ["f", "false", "no", "off", "n", "0"].contains(text)
            }
            return fields["arg"].map(isCertainlyFalse) ?? false
        case "NullTest":
            // `5::int IS NULL`, `NULL IS NOT NULL` (a bound value written in: `($1::int IS NULL OR id = $1)`).
            // Casts upon casts (`('5'::int4)::int IS NULL`, as pgjdbc writes a value in when it sends no parameters).
            guard let argument = fields["arg"], let constant = uncast(argument)["A_Const"] else { return false }
            constants.read()
            let isNull = constant["isnull"]?.boolValue == true
            return fields["nulltesttype"]?.stringValue == "IS_NULL" ? !isNull : isNull
        case "SubLink":
            // `EXISTS (SELECT 1 WHERE false)`, `EXISTS (SELECT 1 FROM t WHERE t.id = u.id AND false)`: no row passes
            // the WHERE (without an aggregate or GROUP BY, which could give a row of none).
            if let inside = existsCondition(fields, constants: constants) { return isCertainlyFalse(inside) }
            guard fields["subLinkType"]?.stringValue == "EXISTS_SUBLINK", let select = fields["subselect"]?["SelectStmt"],
                  select["larg"] == nil, select["rarg"] == nil, select["groupClause"] == nil, select["havingClause"] == nil,
                  outputsOneRowPerRow(select),
                  let condition = select["whereClause"] else { return false }
            return isCertainlyFalse(condition)
        case "BoolExpr":
            let arguments = fields["args"]?.elements ?? []
            switch fields["boolop"]?.stringValue {
            case "AND_EXPR": return arguments.contains(where: isCertainlyFalse)
            case "OR_EXPR": return !arguments.isEmpty && arguments.allSatisfy(isCertainlyFalse)
            case "NOT_EXPR": return arguments.count == 1 && isCertainlyTrueConstant(arguments[0], constants: constants)
            default: return false
            }
        case "A_Expr":
            guard fields["kind"]?.stringValue == "AEXPR_OP", let name = builtinOperator(fields["name"]),
                  let left = fields["lexpr"], let right = fields["rexpr"] else { return false }
            // Integers, also written as text and cast (`'01'::pg_catalog.int4`, a value bound with its declared type): by value.
            func integer(_ node: ParseTree) -> Int? { constantInteger(node, constants: constants) ?? castInteger(node, constants: constants) }
            if let a = integer(left), let b = integer(right) {
                switch name {
                case "=": return a != b
                case "<>", "!=": return a == b
                case "<": return a >= b
                case ">": return a <= b
                case "<=": return a > b
                case ">=": return a < b
                default: return false
                }
            }
            if let a = constantString(left, constants: constants), let b = constantString(right, constants: constants) {
                switch name {
                case "=": return a != b
                case "<>", "!=": return a == b
                default: return false
                }
            }
            return false
        default:
            return false
        }
    }

    /// A table as a statement names it: `public.users` or `users`.
    struct TableName: Equatable {
        var schema: String?
        var name: String
        /// A WITH around the statement (or its own) names a part like the table: its unqualified name there
        /// is that part, not the table.
        var shadowed = false
        /// The WITH parts around the statement that are copies of a table's rows, by name, with the table each
        /// copies (`WITH x AS (SELECT * FROM t)`, `WITH x AS (SELECT id FROM t)`: `rowCopy`): reading one that
        /// copies this table reads every row of it.
        var copies: [String: TableName] = [:]
        /// The schemas in which the statement's other FROM or USING items name a table of this name without an
        /// alias (`USING archive.orders`): `archive.orders.id` is theirs. Any other schema qualifying this name
        /// is this table's, when it is written unqualified (the search path may find it there).
        var namedElsewhere: Set<String> = []

        /// Whether `other`, as a subquery names it, is this table as far as the text tells: the same schema,
        /// or `public.users` and `users` (the default search path finds `users` in `public`); not
        /// `archive.users` and `users`, nor `users` where a WITH gives that name to a part of its own.
        func mayBe(_ other: TableName) -> Bool {
            if other.schema == nil, let copied = copies[other.name], isCopied(copied) { return true }
            return name == other.name && (schema ?? "public") == (other.schema ?? "public") && !(shadowed && other.schema == nil)
        }

        /// Whether `copied`, the table a WITH part copies, is this one (`public.users` and `users` alike).
        func isCopied(_ copied: TableName) -> Bool {
            copied.name == name && (copied.schema ?? "public") == (schema ?? "public")
        }

        init(schema: String?, name: String) {
            self.schema = schema
            self.name = name
        }

        /// The table a RangeVar names.
        init?(relation: ParseTree) {
            guard let name = relation["relname"]?.stringValue else { return nil }
            self.init(schema: relation["schemaname"]?.stringValue, name: name)
        }

        /// The table as a query with its own WITH sees it: a part that copies its rows (`rowCopy`, through the
        /// parts before it, and with RECURSIVE not through a part of that WITH) goes by the table; any other
        /// part hides what its name named before (an outer copy, or the table itself when named like it).
        func seen(through with: ParseTree?, constants: ConstantUse) -> TableName {
            guard let with else { return self }
            let parts = (with["ctes"]?.elements ?? []).compactMap { $0["CommonTableExpr"] }
            let recursive = with["recursive"]?.boolValue == true
            let names = Set(parts.compactMap { $0["ctename"]?.stringValue })
            var seen = self
            for part in parts {
                guard let name = part["ctename"]?.stringValue else { continue }
                let source = part["aliascolnames"] == nil ? part["ctequery"].flatMap { WhereAnalysis.rowCopy($0, constants: constants) } : nil
                let copiesThis = source.map { source in
                    !(recursive && source.schema == nil && names.contains(source.name)) && seen.mayBe(source)
                } ?? false
                seen.copies[name] = copiesThis ? TableName(schema: schema, name: self.name) : nil
                if name == self.name { seen.shadowed = !copiesThis }
            }
            return seen
        }
    }

    /// Clauses after which a subquery may give fewer rows than its FROM and WHERE find (LIMIT and OFFSET: `keepsEveryRow`).
    /// (A WITH drops none, but may give a part the table's name: `TableName.seen(through:)`.)
    private static let rowDroppingClauses: [StaticString] = ["havingClause", "groupClause", "valuesLists", "lockingClause"]
    /// Clauses a query that gives every row of its one table must not have (a filter, a set operation too; a
    /// DISTINCT only when it is plain: `isPlainDistinct`, every value kept once).
    private static let wholeTableClauses: [StaticString] = rowDroppingClauses + ["whereClause", "larg", "rarg"]

    /// No DISTINCT, or a plain one (`[{}]`), which keeps every value; DISTINCT ON keeps one row per key.
    private static func isPlainDistinct(_ select: ParseTree) -> Bool {
        (select["distinctClause"]?.elements ?? []).allSatisfy { $0.tagged == nil && !$0.children.contains { _ in true } }
    }

    /// Whether a query has none of `clauses` and a LIMIT and OFFSET that keep every row: none, or `LIMIT ALL`
    /// (`LIMIT NULL`) and `OFFSET 0` (`OFFSET NULL`), written as constants.
    private static func keepsEveryRow(_ select: ParseTree, without clauses: [StaticString], constants: ConstantUse) -> Bool {
        guard clauses.allSatisfy({ select[$0] == nil }) else { return false }
        if let count = select["limitCount"] {
            guard let (type, fields) = count.tagged, type == "A_Const" else { return false }
            constants.read()
            guard fields["isnull"]?.boolValue == true else { return false }
        }
        if let offset = select["limitOffset"] {
            let isNull = offset["A_Const"]?["isnull"]?.boolValue == true
            guard isNull || constantInteger(offset, constants: constants) == 0 else { return false }
            constants.read()
        }
        return true
    }

    /// `id IN (SELECT id FROM t)`, `(id, name) IN (SELECT id, name FROM t)` or `id = ANY (SELECT id FROM t)`
    /// where the subquery keeps the changed row's own values (`keepsOwnValues`).
    private static func isOwnColumnSet(_ link: ParseTree, table: TableName, target: Set<String>, variables: Set<String>,
                                       constants: ConstantUse) -> Bool {
        guard link["subLinkType"]?.stringValue == "ANY_SUBLINK",
              (link["operName"]?.lastElement?["String"]?["sval"]?.stringValue ?? "=") == "=",
              let tested = link["testexpr"], let (type, select) = link["subselect"]?.tagged, type == "SelectStmt" else { return false }
        let values = tested["RowExpr"]?["args"]?.elements ?? [tested]
        let columns = values.compactMap { columnName(uncast($0), qualifiers: target, variables: variables) }
        return columns.count == values.count
            && keepsOwnValues(select, columns: columns, table: table, target: target, variables: variables, constants: constants)
    }

    /// Whether the rows a subquery gives include the changed row's own values of `columns`, for every row:
    /// it reads the changed table alone (`ownTable`), selects those columns in that order, and keeps
    /// the row itself (no WHERE, or one the row meets with itself: `matchesOwnRow`; no HAVING, GROUP BY,
    /// LIMIT, OFFSET (but `LIMIT ALL` and `OFFSET 0`), DISTINCT ON or row locks that skip rows); or it is a
    /// UNION with such a branch.
    private static func keepsOwnValues(_ select: ParseTree, columns: [String], table: TableName, target: Set<String>,
                                       variables: Set<String>, constants: ConstantUse) -> Bool {
        let table = table.seen(through: select["withClause"], constants: constants)
        guard keepsEveryRow(select, without: rowDroppingClauses, constants: constants), isPlainDistinct(select) else { return false }
        if let branches = unionBranches(select) {
            return branches.contains {
                keepsOwnValues($0, columns: columns, table: table, target: target, variables: variables, constants: constants)
            }
        }
        guard select["larg"] == nil, select["rarg"] == nil,
              let own = ownTableAlone(select, table: table, constants: constants),
              let targets = select["targetList"]?.elements, targets.count == columns.count else { return false }
        let inner = relationNames(own)
        let outer = target.subtracting(inner).subtracting(variables)
        if let condition = select["whereClause"],
           !matchesOwnRow(condition, inner: inner, outer: outer, variables: variables, constants: constants) { return false }
        // The subquery's own column, or the changed row's (`id IN (SELECT users.id FROM users x)`: the row's id, once per row).
        return zip(targets, columns).allSatisfy { target, column in
            guard let value = target["ResTarget"]?["val"].map(uncast) else { return false }
            return columnName(value, qualifiers: inner, variables: []) == column || outerColumn(value, outer: outer) == column
        }
    }

    /// `EXISTS (SELECT 1 WHERE c)`: a subquery with no FROM gives its one row when `c` holds, so the EXISTS is `c`
    /// (it names no table, so `c`'s names mean what they mean outside). Nil for any other subquery.
    private static func existsCondition(_ link: ParseTree, constants: ConstantUse) -> ParseTree? {
        guard link["subLinkType"]?.stringValue == "EXISTS_SUBLINK", let select = link["subselect"]?["SelectStmt"],
              select["fromClause"] == nil, select["larg"] == nil, select["rarg"] == nil, select["distinctClause"] == nil,
              select["withClause"] == nil, let condition = select["whereClause"],
              outputsOneRowPerRow(select),
              keepsEveryRow(select, without: rowDroppingClauses, constants: constants) else { return nil }
        return condition
    }

    /// Whether a query gives one row out per row it reads: its outputs are constants and columns (a
    /// set-returning function could give none or many).
    private static func outputsOneRowPerRow(_ select: ParseTree) -> Bool {
        (select["targetList"]?.elements ?? []).allSatisfy { target in
            guard let value = target["ResTarget"]?["val"], let (type, _) = value.tagged else { return false }
            return type == "A_Const" || type == "ColumnRef"
        }
    }

    /// The two branches of a UNION (ALL or not): its rows are all of theirs.
    private static func unionBranches(_ select: ParseTree) -> [ParseTree]? {
        guard select["op"]?.stringValue == "SETOP_UNION", let left = select["larg"], let right = select["rarg"] else { return nil }
        return [left, right]
    }

    /// The subquery's one FROM item when it is the changed table itself, nothing else.
    private static func ownTableAlone(_ select: ParseTree, table: TableName, constants: ConstantUse) -> ParseTree? {
        guard let from = select["fromClause"]?.elements, from.count == 1 else { return nil }
        return ownTable(from[0], table: table, constants: constants)
    }

    /// The table whose every row a query copies, with columns under their own names: `SELECT * FROM t`,
    /// `SELECT id, email FROM t` (also `ONLY t`, whose rows are the table's own, and a `TABLESAMPLE` of it,
    /// whichever rows it draws; no alias renaming columns, no clause that drops rows, no WITH of its own); nil
    /// for anything else. A column the statement reads from the copy by name is the table's.
    static func rowCopy(_ query: ParseTree, constants: ConstantUse) -> TableName? {
        guard let select = query["SelectStmt"], select["withClause"] == nil,
              keepsEveryRow(select, without: wholeTableClauses, constants: constants), isPlainDistinct(select),
              let from = select["fromClause"]?.elements, from.count == 1,
              let relation = from[0]["RangeVar"] ?? from[0]["RangeTableSample"]?["relation"]?["RangeVar"],
              relation["alias"]?["colnames"] == nil,
              keepsColumnNames(select, of: relationNames(from[0]))
        else { return nil }
        return TableName(relation: relation)
    }

    /// `SELECT * FROM ...`: a query whose one output is every column.
    static func selectsEveryColumn(_ query: ParseTree) -> Bool {
        guard let targets = query["SelectStmt"]?["targetList"]?.elements, targets.count == 1,
              let star = targets[0]["ResTarget"]?["val"]?["ColumnRef"]?["fields"]?.elements else { return false }
        return star.last?["A_Star"] != nil
    }

    /// Whether a query's outputs are columns of its FROM item (which goes by `names`) under their own names:
    /// `*`, `x.*`, `id`, `x.id`; no `AS`, no expression.
    private static func keepsColumnNames(_ select: ParseTree, of names: Set<String>) -> Bool {
        guard let targets = select["targetList"]?.elements, !targets.isEmpty else { return false }
        return targets.allSatisfy { target in
            guard let result = target["ResTarget"], result["name"] == nil, let value = result["val"] else { return false }
            if let star = value["ColumnRef"]?["fields"]?.elements, star.last?["A_Star"] != nil {
                return star.count == 1 || (star.count == 2 && star[0]["String"]?["sval"]?.stringValue.map(names.contains) == true)
            }
            return columnName(value, qualifiers: names, variables: []) != nil
        }
    }

    /// A FROM item that reads the changed table itself, with its columns' own names: the table (also `ONLY`,
    /// whose rows are the changed table's own, and a `TABLESAMPLE` of it, whichever rows it draws),
    /// `(SELECT * FROM t) x` or `(SELECT id FROM t) x`, or the side of an outer join that keeps every row of
    /// one of those (returned).
    private static func ownTable(_ item: ParseTree, table: TableName, constants: ConstantUse) -> ParseTree? {
        guard let (type, fields) = item.tagged, fields["alias"]?["colnames"] == nil else { return nil }
        switch type {
        case "RangeVar":
            return TableName(relation: fields).map(table.mayBe) == true ? item : nil
        case "RangeTableSample":
            return fields["relation"].flatMap { ownTable($0, table: table, constants: constants) }.map { _ in item }
        case "JoinExpr":
            // `t x LEFT JOIN orders o ON ...` keeps every row of x (a join's own alias hides x's name: not followed).
            guard fields["alias"] == nil else { return nil }
            let left = fields["larg"], right = fields["rarg"]
            switch fields["jointype"]?.stringValue {
            case "JOIN_LEFT": return left.flatMap { ownTable($0, table: table, constants: constants) }
            case "JOIN_RIGHT": return right.flatMap { ownTable($0, table: table, constants: constants) }
            case "JOIN_FULL":
                return left.flatMap { ownTable($0, table: table, constants: constants) } ?? right.flatMap { ownTable($0, table: table, constants: constants) }
            default: return nil
            }
        case "RangeSubselect":
            guard fields["lateral"]?.boolValue != true, let (inner, select) = fields["subquery"]?.tagged, inner == "SelectStmt",
                  keepsEveryRow(select, without: wholeTableClauses, constants: constants), isPlainDistinct(select),
                  let own = ownTableAlone(select, table: table.seen(through: select["withClause"], constants: constants), constants: constants)
            else { return nil }
            // `*`, or the table's own columns under their own names (`(SELECT id, email FROM t) x`): a column the
            // statement reads from the copy is the row's own.
            return keepsColumnNames(select, of: relationNames(own)) ? item : nil
        default:
            return nil
        }
    }

    /// The column a reference names when it is qualified with one of `outer` (the changed row's names).
    private static func outerColumn(_ node: ParseTree, outer: Set<String>) -> String? {
        guard let (type, reference) = node.tagged, type == "ColumnRef" else { return nil }
        let names = (reference["fields"]?.elements ?? []).compactMap { $0["String"]?["sval"]?.stringValue }
        return names.count >= 2 && outer.contains(names[names.count - 2]) ? names.last : nil
    }

    /// `EXISTS (SELECT 1 FROM t x WHERE x.id = t.id)` where t is the changed table itself, the subquery reads
    /// it alone (`ownTable`) and its condition is one the changed row meets with itself
    /// (`matchesOwnRow`), with nothing that could drop the row found (HAVING, GROUP BY, LIMIT, OFFSET but
    /// `LIMIT ALL` and `OFFSET 0`, row locks), or a UNION with such a branch: every row finds itself.
    private static func findsOwnRow(_ link: ParseTree, table: TableName, target: Set<String>, variables: Set<String>,
                                    constants: ConstantUse) -> Bool {
        guard link["subLinkType"]?.stringValue == "EXISTS_SUBLINK",
              let (type, select) = link["subselect"]?.tagged, type == "SelectStmt" else { return false }
        return findsOwnRow(select: select, table: table, target: target, variables: variables, constants: constants)
    }

    private static func findsOwnRow(select: ParseTree, table: TableName, target: Set<String>, variables: Set<String>,
                                    constants: ConstantUse) -> Bool {
        let table = table.seen(through: select["withClause"], constants: constants)
        guard keepsEveryRow(select, without: rowDroppingClauses, constants: constants) else { return false }
        if let branches = unionBranches(select) {
            return branches.contains { findsOwnRow(select: $0, table: table, target: target, variables: variables, constants: constants) }
        }
        guard select["larg"] == nil, select["rarg"] == nil,
              let own = ownTableAlone(select, table: table, constants: constants),
              outputsOneRowPerRow(select) else { return false }
        // No condition: the changed row itself is there (a subquery naming no outer column is one answer for
        // every row, judged before; this is a branch of a UNION that does).
        guard let condition = select["whereClause"] else { return true }
        let inner = relationNames(own)
        // A name the subquery's table goes by, or a declared variable, is not the changed row.
        let outer = target.subtracting(inner).subtracting(variables)
        return matchesOwnRow(condition, inner: inner, outer: outer, variables: variables, constants: constants)
    }

    /// `DELETE FROM t USING t x WHERE x.id = t.id`, `UPDATE t SET ... FROM t x WHERE ...`, `MERGE INTO t USING
    /// t x ON x.id = t.id`: the changed table joined with a copy of itself (one of `items`) on a condition
    /// each row meets with itself (`matchesOwnRow`): every row finds itself. Other items of the list are
    /// taken as having rows, as a condition that does not read the row is taken as true.
    static func joinsItself(_ condition: ParseTree, items: [ParseTree], table: TableName, target: Set<String>,
                            variables: Set<String> = [], constants: ConstantUse) -> Bool {
        // Copies that go by the same names are judged once (`USING t, t, t, ...`).
        var judged: Set<Set<String>> = []
        return items.contains { item in
            guard let own = ownTable(item, table: table, constants: constants) else { return false }
            let inner = relationNames(own)
            guard inner.isDisjoint(with: target), judged.insert(inner).inserted else { return false }
            return matchesOwnRow(condition, inner: inner, outer: target.subtracting(variables), variables: variables, constants: constants)
        }
    }

    /// A condition the changed row meets with itself as the subquery's row: `x.id = t.id AND x.tenant_id =
    /// t.tenant_id`, each comparison a column of the subquery's row (qualified with `inner`, or not at all)
    /// against the same column qualified with a name of the changed row by `=`, `<=`, `>=` or `IS NOT DISTINCT
    /// FROM` (true when both are the row's own); a condition true for every row; an AND of such conditions,
    /// an OR with one.
    private static func matchesOwnRow(_ condition: ParseTree, inner: Set<String>, outer: Set<String>, variables: Set<String>,
                                      constants: ConstantUse) -> Bool {
        let matches = { (node: ParseTree) in
            Self.matchesOwnRow(node, inner: inner, outer: outer, variables: variables, constants: constants)
        }
        if constants.step() { return false }
        guard let (type, fields) = condition.tagged else { return false }
        // Unqualified names are the subquery's own (`x.id = id`), never another table's (`tenant_id = o.tenant_id`).
        // An AND or OR is judged through its arguments below, each of which this tests: testing the whole
        // again at every level took cubic time in the nesting.
        let boolOp = type == "BoolExpr" ? fields["boolop"]?.stringValue : nil
        if boolOp == "AND_EXPR" || boolOp == "OR_EXPR" {
            if !readsRow(condition, variables: variables, budget: constants) { return !isCertainlyFalse(condition, constants: constants) }
            if boolOp == "OR_EXPR", coversNull(fields["args"]?.elements ?? [], constants: constants) { return true }
        } else if isTriviallyTrue(condition, target: inner, variables: variables, constants: constants) {
            return true
        }
        let paired = { (left: ParseTree, right: ParseTree) in
            pairsOwnRow(left, right, inner: inner, outer: outer, variables: variables, constants: constants)
        }
        switch type {
        case "BoolExpr":
            let arguments = fields["args"]?.elements ?? []
            switch fields["boolop"]?.stringValue {
            case "AND_EXPR":
                // Each argument judged once: judged again for each use, nested ANDs and ORs took exponential time.
                let matched = arguments.map(matches)
                // `x.id IS NOT NULL` beside `x.id = t.id`: the row with a key finds itself all the same.
                return matched.contains(true) && zip(arguments, matched).allSatisfy { argument, matched in
                    matched || nullTested(argument).map { tested in
                        !constants.step(arguments.count) && arguments.contains { other in
                            isMatch(other, on: tested, inner: inner, outer: outer, variables: variables, constants: constants)
                        }
                    } ?? false
                }
            case "OR_EXPR":
                return arguments.contains(where: matches)
            case "NOT_EXPR":
                // `NOT (x.id <> t.id)`.
                guard arguments.count == 1, let comparison = arguments[0]["A_Expr"], comparison["kind"]?.stringValue == "AEXPR_OP",
                      ["<>", "!="].contains(comparison["name"]?.lastElement?["String"]?["sval"]?.stringValue ?? ""),
                      let left = comparison["lexpr"], let right = comparison["rexpr"] else { return false }
                return paired(left, right)
            default:
                return false
            }
        case "BooleanTest":
            return fields["booltesttype"]?.stringValue == "IS_TRUE" && (fields["arg"].map(matches) ?? false)
        case "SubLink":
            // `EXISTS (SELECT 1 WHERE x.id = t.id)`.
            return existsCondition(fields, constants: constants).map(matches) ?? false
        case "TypeCast":
            // `(x.id = t.id OR x.a)::boolean`: the condition itself.
            return fields["arg"].map(matches) ?? false
        case "A_Expr":
            let kind = fields["kind"]?.stringValue
            let name = fields["name"]?.lastElement?["String"]?["sval"]?.stringValue ?? ""
            guard let left = fields["lexpr"], let right = fields["rexpr"] else { return false }
            switch kind {
            case "AEXPR_NOT_DISTINCT":
                return paired(left, right)
            case "AEXPR_OP" where ["=", "<=", ">="].contains(name):
                // `x.id = t.id`; `(x.id, x.a) = (t.id, t.a)` pair by pair; `= true` of a match.
                if let pairs = rowPairs(left, right) { return pairs.allSatisfy(paired) }
                if name == "=", let truth = right["A_Const"]?["boolval"]?["boolval"]?.boolValue, truth { return matches(left) }
                return paired(left, right)
            case "AEXPR_IN" where name == "=":
                // `x.id IN (t.id, ...)`.
                return (right["List"]?["items"]?.elements ?? []).contains { paired(left, $0) }
            case "AEXPR_BETWEEN", "AEXPR_BETWEEN_SYM":
                // `x.id BETWEEN t.id AND t.id`.
                let bounds = right["List"]?["items"]?.elements ?? []
                return bounds.count == 2 && bounds.allSatisfy { paired(left, $0) }
            default:
                return false
            }
        default:
            return false
        }
    }

    /// Two sides the changed row makes equal when it is the subquery's row too: a column of the subquery's
    /// row (qualified with `inner`, or not at all) and the same column of the changed row, either way round;
    /// the changed row's column twice; or the two rows whole (`x = t`, `x.* = t.*`). A cast on either side is
    /// read through (`x.id::int = t.id`: a value cast to its own type, or back, is itself).
    private static func pairsOwnRow(_ left: ParseTree, _ right: ParseTree, inner: Set<String>, outer: Set<String>,
                                    variables: Set<String>, constants: ConstantUse) -> Bool {
        let left = uncast(left), right = uncast(right)
        // The changed row's column compared with itself (`users.id = users.id` beside `FROM users x`).
        if let column = outerColumn(left, outer: outer), outerColumn(right, outer: outer) == column { return true }
        let columns = [(left, right), (right, left)].contains { own, other in
            if let row = wholeRow(own), inner.contains(row), let otherRow = wholeRow(other), outer.contains(otherRow) { return true }
            guard let column = columnName(own, qualifiers: inner, variables: variables) else { return false }
            return outerColumn(other, outer: outer) == column
        }
        return columns || sameOverOwnRow(left, right, inner: inner, outer: outer, variables: variables, constants: constants)
    }

    /// Functions whose every call may answer differently: `random() = random()` is not true.
    private static let volatileFunctions: Set<String> = ["random", "random_normal", "nextval", "setval", "clock_timestamp", "timeofday",
                                                         "gen_random_uuid", "uuid_generate_v1", "uuid_generate_v1mc", "uuid_generate_v4"]

    /// The same expression of the same columns on both sides, each column the subquery's row's (`inner`, or
    /// unqualified) or the changed row's (`outer`): `lower(x.email) = lower(t.email)`, `COALESCE(x.k, 0) =
    /// COALESCE(t.k, 0)`, `x.id::int = t.id::int`. Equal when the two rows are one; not with a subquery or a
    /// volatile function inside.
    private static func sameOverOwnRow(_ left: ParseTree, _ right: ParseTree, inner: Set<String>, outer: Set<String>,
                                       variables: Set<String>, constants: ConstantUse) -> Bool {
        guard !left.isTagged("ColumnRef") || !right.isTagged("ColumnRef") else { return false }
        var readsRow = false
        let equal = left.equals(right) { a, b in
            let column = { (node: ParseTree) in columnName(node, qualifiers: inner, variables: variables) ?? outerColumn(node, outer: outer) }
            if a.isTagged("ColumnRef") || b.isTagged("ColumnRef") {
                guard let name = column(a), column(b) == name else { return false }
                readsRow = true
                return true
            }
            if a.isTagged("SubLink") || b.isTagged("SubLink") { return false }
            if let call = a["FuncCall"], volatileFunctions.contains(call["funcname"]?.lastElement?["String"]?["sval"]?.stringValue ?? "") {
                return false
            }
            return nil
        }
        // Constants on either side (`COALESCE(x.k, 0)`): the answer, equal or not, is theirs.
        if left.containsConstant || right.containsConstant { constants.read() }
        return equal && readsRow
    }

    /// The expression a cast or a COLLATE converts (`x.id::int`, `CAST(x.id AS text)::int`, `x.name COLLATE "C"`: the column).
    private static func uncast(_ node: ParseTree) -> ParseTree {
        var node = node
        while let argument = node["TypeCast"]?["arg"] ?? node["CollateClause"]?["arg"] { node = argument }
        return node
    }

    /// The expression a COLLATE clause applies to (`name COLLATE "C"`: `name`).
    /// An expression as the value it gives: `x COLLATE "C"`, `(SELECT x)` (a subquery with no FROM gives the
    /// one value it names) and `coalesce(NULL, x)` are `x`; `coalesce(true, x)` is `true`.
    private static func valueOf(_ node: ParseTree, constants: ConstantUse) -> ParseTree {
        var node = node
        for _ in 0..<16 {
            if let argument = node["CollateClause"]?["arg"] {
                node = argument
            } else if let link = node["SubLink"], link["subLinkType"]?.stringValue == "EXPR_SUBLINK", let value = singleValue(link, constants: constants) {
                node = value
            } else if let arguments = node["CoalesceExpr"]?["args"]?.elements {
                let rest = arguments.drop { $0["A_Const"]?["isnull"]?.boolValue == true }
                if rest.count < arguments.count { constants.read() }
                guard let first = rest.first else { break }
                if first["A_Const"] != nil { constants.read() } else if rest.count > 1 { break }
                node = first
            } else if let identity = identityOperand(node, constants: constants) {
                node = identity
            } else if let arguments = node["MinMaxExpr"]?["args"]?.elements, let first = arguments.first,
                      arguments.dropFirst().allSatisfy({ same($0, first, constants: constants) }) {
                // greatest(x, x), least(x, x)
                node = first
            } else {
                break
            }
        }
        return node
    }

    /// The operand an operator with an identity leaves as it is: `+x`, `x + 0`, `0 + x`, `x - 0`, `x * 1`, `1 * x`,
    /// `x / 1`, `x || ''`, `'' || x` (PostgreSQL's own operators); nil for anything else.
    private static func identityOperand(_ node: ParseTree, constants: ConstantUse) -> ParseTree? {
        guard let expression = node["A_Expr"], expression["kind"]?.stringValue == "AEXPR_OP",
              let name = builtinOperator(expression["name"]), let right = expression["rexpr"] else { return nil }
        guard let left = expression["lexpr"] else { return name == "+" ? right : nil }
        func integer(_ node: ParseTree) -> Int? { constantInteger(uncast(node), constants: constants) }
        func empty(_ node: ParseTree) -> Bool { constantString(uncast(node), constants: constants) == "" }
        switch name {
        case "+": return integer(right) == 0 ? left : integer(left) == 0 ? right : nil
        case "-": return integer(right) == 0 ? left : nil
        case "*": return integer(right) == 1 ? left : integer(left) == 1 ? right : nil
        case "/": return integer(right) == 1 ? left : nil
        case "||": return empty(right) ? left : empty(left) ? right : nil
        default: return nil
        }
    }

    /// `coalesce($1, id)` compared with `id`: the optional filter, which a NULL parameter makes the row's own
    /// value (every row, as `id = id`); the value bound is not known when the statement is judged.
    private static func fallsBack(_ node: ParseTree, to other: ParseTree, target: Set<String>?, table: TableName?, constants: ConstantUse) -> Bool {
        guard let arguments = node["CoalesceExpr"]?["args"]?.elements, let last = arguments.last, arguments.count >= 2,
              arguments.dropLast().allSatisfy({ $0["ParamRef"] != nil || $0["TypeCast"]?["arg"]?["ParamRef"] != nil }) else { return false }
        let value = valueOf(last, constants: constants)
        return same(value, other, constants: constants) || sameColumn(value, other, target: target, table: table)
    }

    /// Whether a query without FROM gives exactly one row: no filter, grouping, set operation or LIMIT, and
    /// outputs that are constants and names (`SELECT t.id`, `SELECT 1`).
    private static func givesOneRow(_ select: ParseTree, constants: ConstantUse) -> Bool {
        select["fromClause"] == nil && select["withClause"] == nil && outputsOneRowPerRow(select)
            && keepsEveryRow(select, without: wholeTableClauses, constants: constants)
    }

    /// The one value a subquery without FROM gives (`(SELECT t.id)`, `IN (SELECT t.id)`); nil for any other.
    private static func singleValue(_ link: ParseTree, constants: ConstantUse) -> ParseTree? {
        guard let select = link["subselect"]?["SelectStmt"], let targets = select["targetList"]?.elements, targets.count == 1,
              givesOneRow(select, constants: constants) else { return nil }
        return targets[0]["ResTarget"]?["val"]
    }

    private static func uncollated(_ node: ParseTree) -> ParseTree {
        var node = node
        while let argument = node["CollateClause"]?["arg"] { node = argument }
        return node
    }

    /// The name a whole-row reference goes by: `x` or `x.*`.
    private static func wholeRow(_ node: ParseTree) -> String? {
        guard let parts = node["ColumnRef"]?["fields"]?.elements, let name = parts.first?["String"]?["sval"]?.stringValue else { return nil }
        if parts.count == 1 { return name }
        return parts.count == 2 && parts[1]["A_Star"] != nil ? name : nil
    }

    /// `(a, b) = (c, d)` as its pairs; nil unless both sides are rows of the same length.
    private static func rowPairs(_ left: ParseTree, _ right: ParseTree) -> [(ParseTree, ParseTree)]? {
        guard let a = left["RowExpr"]?["args"]?.elements, let b = right["RowExpr"]?["args"]?.elements, a.count == b.count, !a.isEmpty else { return nil }
        return Array(zip(a, b))
    }

    /// The expression `e IS NOT NULL` tests.
    private static func nullTested(_ node: ParseTree) -> ParseTree? {
        guard let test = node["NullTest"], test["nulltesttype"]?.stringValue == "IS_NOT_NULL" else { return nil }
        return test["arg"]
    }

    /// Whether `condition` is a comparison of the own-row match with `tested` (a column) on one side.
    private static func isMatch(_ condition: ParseTree, on tested: ParseTree, inner: Set<String>, outer: Set<String>,
                                variables: Set<String>, constants: ConstantUse) -> Bool {
        guard let comparison = condition["A_Expr"], let left = comparison["lexpr"], let right = comparison["rexpr"],
              ["AEXPR_OP", "AEXPR_NOT_DISTINCT"].contains(comparison["kind"]?.stringValue ?? ""),
              pairsOwnRow(left, right, inner: inner, outer: outer, variables: variables, constants: constants) else { return false }
        return [left, right].contains { $0.equals(tested, ignoringLocations: true) }
    }

    /// Whether a condition may read the changed row: a column qualified with one of its names (`target`),
    /// or unqualified (it may be the changed table's) and not a declared variable; the current row of a
    /// cursor. Columns qualified with another name (another table of USING or FROM, a subquery's own) do not.
    static func mayReadChangedRow(_ node: ParseTree, target: Set<String>, variables: Set<String>) -> Bool {
        if let (type, fields) = node.tag {
            if type.is("CurrentOfExpr") { return true }
            if type.is("SelectStmt") {
                // A subquery's own FROM names hide the changed table's (`EXISTS (SELECT 1 FROM orders o ...)`).
                let hidden = target.subtracting(relationNames(fields["fromClause"]))
                return node.children.contains { mayReadChangedRow($0, target: hidden, variables: variables) }
            }
            if type.is("ColumnRef") {
                let parts = fields["fields"]?.elements ?? []
                let names = parts.map { $0["String"]?["sval"]?.stringValue }
                guard names.count >= 2, let qualifier = names[names.count - 2] else {
                    return names.first.flatMap { $0 }.map { !variables.contains($0) } ?? true
                }
                return target.contains(qualifier) || names.first.flatMap({ $0 }).map({ target.contains($0) }) == true
            }
        }
        return node.children.contains { mayReadChangedRow($0, target: target, variables: variables) }
    }

    /// `mayReadChangedRow` of what an AND keeps of the row: parts true for every row (`t.id = t.id`) select none.
    static func mayReadChangedRow(beyondTruths condition: ParseTree, target: Set<String>, table: TableName?, variables: Set<String>,
                                  constants: ConstantUse) -> Bool {
        guard let (type, fields) = condition.tagged, type == "BoolExpr", fields["boolop"]?.stringValue == "AND_EXPR" else {
            return mayReadChangedRow(condition, target: target, variables: variables)
        }
        return (fields["args"]?.elements ?? []).contains { part in
            mayReadChangedRow(part, target: target, variables: variables)
                && !isTriviallyTrue(part, target: target, table: table, variables: variables, constants: constants)
        }
    }

    /// The column a reference names, unqualified (and not a declared variable) or qualified with one of
    /// `qualifiers`.
    private static func columnName(_ node: ParseTree?, qualifiers: Set<String>, variables: Set<String>) -> String? {
        guard let (type, inner) = node?.tagged, type == "ColumnRef" else { return nil }
        let parts = inner["fields"]?.elements ?? []
        let names = parts.compactMap { $0["String"]?["sval"]?.stringValue }
        guard names.count == parts.count, let name = names.last else { return nil }
        if names.count == 1 { return variables.contains(name) ? nil : name }
        return qualifiers.contains(names[names.count - 2]) ? name : nil
    }

    /// `users.id = id`, `t.id = public.t.id`: the same column of the changed row, spelled two ways.
    private static func sameColumn(_ left: ParseTree, _ right: ParseTree, target: Set<String>?, table: TableName?) -> Bool {
        func fields(_ node: ParseTree) -> [String]? {
            guard let (type, inner) = node.tagged, type == "ColumnRef" else { return nil }
            let names = inner["fields"]?.elements.compactMap { $0["String"]?["sval"]?.stringValue } ?? []
            return names.isEmpty ? nil : names
        }
        guard let a = fields(left), let b = fields(right), a.last == b.last, a != b else { return false }
        // `archive.orders.id = public.orders.id` beside `DELETE FROM public.orders USING archive.orders`: two tables.
        let schemas = [a, b].compactMap { $0.count >= 3 ? $0[$0.count - 3] : nil }
        if let table {
            guard Set(schemas).count <= 1,
                  schemas.allSatisfy({ schema in table.schema.map { $0 == schema } ?? !table.namedElsewhere.contains(schema) }) else { return false }
        } else if Set(schemas).count > 1 {
            return false
        }
        guard let target else { return a.count != b.count && min(a.count, b.count) == 1 }
        // Each side unqualified or qualified with the changed table's name or alias (`t.id = public.t.id`).
        return [a, b].allSatisfy { $0.count == 1 || target.contains($0[$0.count - 2]) }
    }

    /// A LIKE or SIMILAR TO pattern that every text matches: `%`, `%%`, ...
    static func matchesAnyText(likePattern pattern: String) -> Bool {
        !pattern.isEmpty && pattern.allSatisfy { $0 == "%" }
    }

    /// A regular expression that every text matches: one that matches the empty string without anchoring it to the
    /// whole text (``, `^`, `$`, `.*`, `x*`, `a|`) matches somewhere in every text, so one that matches each of a few
    /// unlike texts is taken to (`^$` matches the empty one only). One Foundation cannot read (PostgreSQL's own syntax)
    /// is taken to match every text.
    static func matchesAnyText(regex pattern: String) -> Bool {
        guard let expression = try? NSRegularExpression(pattern: pattern, options: [.dotMatchesLineSeparators]) else { return true }
        return ["", "a", "Z9 x", "\n", "é"].allSatisfy { text in
            expression.firstMatch(in: text, options: [], range: NSRange(text.startIndex..., in: text)) != nil
        }
    }

    /// An operator's name when it is PostgreSQL's own: written without a schema, or in `pg_catalog`.
    /// `OPERATOR(public.=)` may be anything its author made it, so no value is judged by it. (An
    /// unqualified `=` is pg_catalog's unless the search path puts pg_catalog after a schema that
    /// defines another: not followed here.)
    static func builtinOperator(_ name: ParseTree?) -> String? {
        let parts = (name?.elements ?? []).compactMap { $0["String"]?["sval"]?.stringValue }
        guard let last = parts.last, parts.count == (name?.elements.count ?? 0),
              parts.count == 1 || (parts.count == 2 && parts[0] == "pg_catalog") else { return nil }
        return last
    }

    private static func isCertainlyTrueConstant(_ node: ParseTree, constants: ConstantUse) -> Bool {
        guard let (type, fields) = node.tagged, type == "A_Const" else { return false }
        constants.read()
        return fields["boolval"]?["boolval"]?.boolValue == true
    }

    /// An OR of a condition and its negation: `id = 1 OR id <> 1` (every row where id is not NULL), `p IS NOT TRUE OR
    /// p`, `NOT p OR p`.
    private static let negations: [String: Set<String>] = ["=": ["<>", "!="], "<>": ["="], "!=": ["="], "<": [">="], ">=": ["<"], ">": ["<="], "<=": [">"]]

    private static func complements(_ arguments: [ParseTree], constants: ConstantUse) -> Bool {
        if constants.step(arguments.count * arguments.count) { return false }
        for first in arguments {
            // `NOT p`, `p IS NOT TRUE`, `p IS FALSE` beside `p`.
            if let negated = first["BoolExpr"].flatMap({ $0["boolop"]?.stringValue == "NOT_EXPR" ? $0["args"]?.elements.first : nil })
                ?? first["BooleanTest"].flatMap({ ["IS_NOT_TRUE", "IS_FALSE"].contains($0["booltesttype"]?.stringValue ?? "") ? $0["arg"] : nil }),
               arguments.contains(where: { same($0, negated, constants: constants) }) { return true }
            guard let a = first["A_Expr"], a["kind"]?.stringValue == "AEXPR_OP", let name = builtinOperator(a["name"]),
                  let opposite = negations[name], let left = a["lexpr"], let right = a["rexpr"] else { continue }
            for second in arguments {
                guard let b = second["A_Expr"], b["kind"]?.stringValue == "AEXPR_OP", let other = builtinOperator(b["name"]),
                      opposite.contains(other), let otherLeft = b["lexpr"], let otherRight = b["rexpr"] else { continue }
                if same(left, otherLeft, constants: constants) && same(right, otherRight, constants: constants) { return true }
            }
        }
        return false
    }

    /// `x IS NULL OR x IS NOT NULL` is true for every row.
    private static func coversNull(_ arguments: [ParseTree], constants: ConstantUse) -> Bool {
        var null: [ParseTree] = []
        var notNull: [ParseTree] = []
        for argument in arguments {
            guard let (type, fields) = argument.tagged, type == "NullTest", let subject = fields["arg"] else { continue }
            if fields["nulltesttype"]?.stringValue == "IS_NOT_NULL" {
                notNull.append(subject)
            } else {
                null.append(subject)
            }
        }
        if null.isEmpty || notNull.isEmpty || constants.step(null.count * notNull.count) { return false }
        return null.contains { subject in notNull.contains { same(subject, $0, constants: constants) } }
    }

    /// Whether two expressions are the same, locations aside. When they differ only in the values of
    /// their constants the answer depends on those values, and `constants` learns it.
    static func same(_ left: ParseTree, _ right: ParseTree, constants: ConstantUse) -> Bool {
        if !constants.happened, left.containsConstant, left.equals(right, ignoringLocations: true, ignoringConstantValues: true) { constants.read() }
        return left.equals(right, ignoringLocations: true)
    }

    /// An integer literal's value. libpg_query's JSON leaves the number out when it is zero or negative
    /// (`{"ival":{}}`): the literal is then read from the text at its location, and is unknown unless
    /// it is written plainly there (`0`, `-12`; not `- 12` or `-(12)`).
    private static func constantInteger(_ node: ParseTree, constants: ConstantUse) -> Int? {
        guard let (type, fields) = node.tagged, type == "A_Const", let integer = fields["ival"] else { return nil }
        constants.read()
        if let value = integer["ival"]?.intValue { return value }
        return fields["location"]?.intValue.flatMap(constants.nonPositiveInteger(at:))
    }

    /// A pattern's text when it is written with constants only: a string, cast or collated (`'%'::text`,
    /// `text '%'`, `'%' COLLATE "C"`), or such strings joined with `||` (`'' || '%'`); nil for anything else.
    private static func patternString(_ node: ParseTree, constants: ConstantUse) -> String? {
        if constants.step() { return nil }
        if let argument = node["CollateClause"]?["arg"] { return patternString(argument, constants: constants) }
        // A cast that keeps the text as it is; `'%  '::bpchar` is `%` to LIKE (bpchar drops trailing spaces), and
        // a length cuts: neither is read here.
        if let cast = node["TypeCast"], let argument = cast["arg"] {
            guard let type = SQLClassifier.castType(cast), type.plain, ["text", "varchar"].contains(type.name) else { return nil }
            return patternString(argument, constants: constants)
        }
        if let expression = node["A_Expr"], expression["kind"]?.stringValue == "AEXPR_OP", builtinOperator(expression["name"]) == "||",
           let left = expression["lexpr"], let right = expression["rexpr"] {
            guard let a = patternString(left, constants: constants), let b = patternString(right, constants: constants) else { return nil }
            return a + b
        }
        return constantString(node, constants: constants)
    }

    /// Whether a pattern matches every text (`%`, a regular expression that matches the empty string), as far as
    /// can be told: a pattern written with constants is read; one that names parameters is noted, for the values
    /// bound to decide; one that depends on neither the row nor a parameter but cannot be read here
    /// (`repeat('%', 3)`) may match every text, and is taken to.
    private static func patternMatchesAnyText(_ pattern: ParseTree, regex: Bool, variables: Set<String>, constants: ConstantUse) -> Bool {
        if let text = patternString(pattern, constants: constants) {
            return regex ? matchesAnyText(regex: text) : matchesAnyText(likePattern: text)
        }
        if containsParameter(pattern) {
            constants.noteParameters(in: pattern, text: true)
            return false
        }
        constants.read()
        return !readsRow(pattern, variables: variables, budget: constants)
    }

    private static func containsParameter(_ node: ParseTree) -> Bool {
        node["ParamRef"] != nil || node.children.contains(where: containsParameter)
    }

    /// An integer constant cast to an integer type (`'01'::int4`, `5::int8`), by its value; nil for anything else.
    private static func castInteger(_ node: ParseTree, constants: ConstantUse) -> Int? {
        guard let cast = node["TypeCast"], let argument = cast["arg"], let type = SQLClassifier.castType(cast),
              ["int2", "int4", "int8", "smallint", "integer", "bigint", "int"].contains(type.name) else { return nil }
        if let integer = constantInteger(argument, constants: constants) { return integer }
        return constantString(argument, constants: constants).flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }

    private static func constantString(_ node: ParseTree, constants: ConstantUse) -> String? {
        guard let (type, fields) = node.tagged, type == "A_Const" else { return nil }
        constants.read()
        return fields["sval"]?["sval"]?.stringValue
    }
}

/// Whether a classification read the value of a constant of the text (`1 = 1`, a table named in a
/// string): an answer that did not is the same for the text with other constants (`ActionGuard`'s
/// memory by shape relies on it). Every place that reads a constant's value says so here.
final class ConstantUse {
    private(set) var happened = false
    /// The steps the judgement of one text's conditions has taken (`step`): a hostile statement of a few
    /// hundred bytes can nest conditions so that judging them takes far longer than parsing them. Past
    /// `stepLimit` every judgement answers at once and the text is `too_complex` (dangerous).
    private(set) var steps = 0
    static let stepLimit = 200_000
    var exhausted: Bool { steps > Self.stepLimit }

    /// Counts `count` steps; true when the budget is spent. The answer then no longer depends on the
    /// constants' values alone, so it is marked as having read them (the shape memory does not reuse it).
    func step(_ count: Int = 1) -> Bool {
        steps += count
        guard steps > Self.stepLimit else { return false }
        happened = true
        return true
    }

    func read() { happened = true }

    /// Parameters used as a pattern whose value decides whether a condition matches every row (`x LIKE $1`).
    private(set) var patternParameters: [PatternParameter] = []

    /// A pattern that is not a constant: when it is a parameter (cast or not), remembered, and the answer marked
    /// as depending on the text (the shape memory does not reuse it for a text whose parameters stand elsewhere).
    /// `text`: it stands where PostgreSQL reads a text (a pattern, a setting's name).
    func notePattern(_ node: ParseTree, text: Bool = true) {
        let parameter = node["ParamRef"] ?? node["TypeCast"]?["arg"]?["ParamRef"]
        guard let parameter, let number = parameter["number"]?.intValue, let location = parameter["location"]?.intValue else { return }
        happened = true
        patternParameters.append(PatternParameter(number: number, location: location, text: text))
    }

    /// Every parameter in `node` (a WHERE found true for every row): with the values bound the statement is judged
    /// again (`($1::int IS NULL OR id = $1)` with 5 bound touches one row; with NULL, every row).
    func noteParameters(in node: ParseTree, text: Bool = false) {
        if step() { return }
        if node["ParamRef"] != nil { notePattern(node, text: text); return }
        for child in node.children { noteParameters(in: child, text: text) }
    }

    /// The text whose parse tree is being judged (constants' locations are offsets into it).
    var source: String?

    /// The integer literal written at this byte offset of `source` as an optional `-` and digits, when
    /// it is zero or negative (what libpg_query leaves out); nil when anything else is written there.
    func nonPositiveInteger(at location: Int) -> Int? {
        guard var source, location >= 0 else { return nil }
        return source.withUTF8 { bytes -> Int? in
            guard location < bytes.count else { return nil }
            var index = location
            let negative = bytes[index] == UInt8(ascii: "-")
            if negative { index += 1 }
            var value = 0, digits = 0
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
                value = value * 10 + Int(bytes[index] - UInt8(ascii: "0"))
                guard value <= 1 << 31 else { return nil }
                index += 1
                digits += 1
            }
            // The literal ends there (not `0.5`, `0e1` or `0x`: those are other tokens).
            if index < bytes.count {
                let next = bytes[index]
                if next == UInt8(ascii: ".") || next == UInt8(ascii: "_") || next >= 0x80
                    || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(next | 0x20) { return nil }
            }
            guard digits > 0 else { return nil }
            let number = negative ? -value : value
            return number <= 0 ? number : nil
        }
    }

    /// `read()` inside a condition: always true.
    func reading() -> Bool {
        happened = true
        return true
    }
}
