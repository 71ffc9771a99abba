#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the SQL classifier does when it meets a node of a given type in the parse tree.
enum SQLNodeRule: Sendable {
    /// A statement that only reads (or only changes the session harmlessly); nothing fires.
    case readStatement
    /// Fire this category wherever the node appears.
    case fire(String)
    case select, insert, update, delete, merge, copy, explain, drop, alterTable, setting
    case createFunction, doBlock, prepare, execute, transaction
    case functionCall, relation

    /// Every node type the classifier knows, by libpg_query's JSON name.
    static let byNodeType: [String: SQLNodeRule] = {
        var rules: [String: SQLNodeRule] = [
            "SelectStmt": .select, "InsertStmt": .insert, "UpdateStmt": .update, "DeleteStmt": .delete,
            "MergeStmt": .merge, "CopyStmt": .copy, "ExplainStmt": .explain, "DropStmt": .drop,
            "AlterTableStmt": .alterTable, "VariableSetStmt": .setting,
            "CreateFunctionStmt": .createFunction, "DoStmt": .doBlock,
            "PrepareStmt": .prepare, "ExecuteStmt": .execute,
            "FuncCall": .functionCall, "RangeVar": .relation,
        ]
        rules["TransactionStmt"] = .transaction
        for type in ["VariableShowStmt", "DeclareCursorStmt", "FetchStmt", "ClosePortalStmt",
                     "DeallocateStmt", "ListenStmt", "UnlistenStmt", "DiscardStmt", "ConstraintsSetStmt"] {
            rules[type] = .readStatement
        }
        let fired: [String: [String]] = [
            "write_data": ["NotifyStmt"],
            "maintenance": ["VacuumStmt", "ClusterStmt", "ReindexStmt", "CheckPointStmt", "LockStmt", "RefreshMatViewStmt"],
            "call_procedure": ["CallStmt"],
            "truncate": ["TruncateStmt"],
            "drop_database": ["DropdbStmt"],
            "drop_object": ["DropTableSpaceStmt", "DropOwnedStmt"],
            "alter_system": ["AlterSystemStmt"],
            "alter_database": ["AlterDatabaseStmt", "AlterDatabaseSetStmt", "AlterDatabaseRefreshCollStmt"],
            "role_change": ["CreateRoleStmt", "AlterRoleStmt", "AlterRoleSetStmt", "DropRoleStmt", "GrantRoleStmt",
                            "ReassignOwnedStmt"],
            "privilege_change": ["GrantStmt", "AlterDefaultPrivilegesStmt", "AlterOwnerStmt"],
            "load_library": ["LoadStmt"],
            "create_extension": ["CreateExtensionStmt", "AlterExtensionStmt", "AlterExtensionContentsStmt"],
            "foreign_data": ["CreateForeignServerStmt", "AlterForeignServerStmt", "CreateUserMappingStmt",
                             "AlterUserMappingStmt", "DropUserMappingStmt", "ImportForeignSchemaStmt", "CreateFdwStmt",
                             "AlterFdwStmt", "CreateSubscriptionStmt", "AlterSubscriptionStmt", "DropSubscriptionStmt"],
            "untrusted_language": ["CreatePLangStmt"],
            "schema_change": ["CreateStmt", "IndexStmt", "ViewStmt", "CreateSeqStmt", "AlterSeqStmt", "CreateSchemaStmt",
                              "CreateTableAsStmt", "CreateEnumStmt", "CompositeTypeStmt", "DefineStmt", "CreateDomainStmt",
                              "AlterDomainStmt", "AlterEnumStmt", "CreatePolicyStmt", "AlterPolicyStmt", "CreateCastStmt",
                              "CreateOpClassStmt", "CreateOpFamilyStmt", "AlterOpFamilyStmt", "CreateConversionStmt",
                              "CreateTransformStmt", "CreatePublicationStmt", "AlterPublicationStmt", "AlterObjectSchemaStmt",
                              "AlterFunctionStmt", "AlterTableSpaceOptionsStmt", "CreateTableSpaceStmt", "CreateStatsStmt",
                              "AlterStatsStmt", "AlterTypeStmt", "SecLabelStmt", "AlterCollationStmt", "CreateAmStmt",
                              "AlterOperatorStmt", "AlterTSConfigurationStmt", "AlterTSDictionaryStmt", "CreateRangeStmt",
                              "CreateTrigStmt", "CreateEventTrigStmt", "AlterEventTrigStmt", "RuleStmt", "CommentStmt",
                              "RenameStmt", "AlterObjectDependsStmt", "CreatedbStmt",
                              "CreateForeignTableStmt", "AlterTableMoveAllStmt", "ReplicaIdentityStmt"],
        ]
        for (category, types) in fired {
            for type in types { rules[type] = .fire(category) }
        }
        return rules
    }()

    /// Functions by name (the last part of a qualified name, lower-cased) and the category each fires.
    static let functions: [String: String] = {
        let groups: [String: [String]] = [
            "terminate_session": ["pg_terminate_backend", "pg_cancel_backend"],
            "server_files": ["pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_ls_logdir",
                             "pg_ls_waldir", "pg_ls_tmpdir", "pg_ls_archive_statusdir", "pg_ls_replslotdir",
                             "pg_ls_logicalsnapdir", "pg_ls_logicalmapdir", "lo_import", "lo_export",
                             "pg_file_write", "pg_file_rename", "pg_file_unlink", "pg_logdir_ls", "pg_file_sync",
                             // the built-in alias of pg_read_file kept for adminpack 1.0
                             "pg_read_file_old",
                             // pageinspect: a relation's pages as stored, past every privilege and policy
                             "get_raw_page"],
            "large_object_delete": ["lo_unlink", "lo_truncate", "lo_truncate64", "lo_put", "lowrite"],
            "reload_config": ["pg_reload_conf", "pg_rotate_logfile", "pg_rotate_logfile_old"],
            "set_config": ["set_config"],
            "remote_exec": ["dblink_exec", "dblink", "dblink_connect", "dblink_connect_u", "dblink_send_query",
                            "dblink_open"],
            "replication_control": ["pg_drop_replication_slot", "pg_create_physical_replication_slot",
                                    "pg_create_logical_replication_slot", "pg_replication_slot_advance",
                                    "pg_copy_physical_replication_slot", "pg_copy_logical_replication_slot",
                                    "pg_promote", "pg_switch_wal", "pg_backup_start", "pg_backup_stop",
                                    "pg_start_backup", "pg_stop_backup", "pg_wal_replay_pause",
                                    "pg_wal_replay_resume", "pg_replication_origin_create",
                                    "pg_replication_origin_drop", "pg_replication_origin_advance",
                                    "pg_logical_slot_get_changes", "pg_logical_slot_get_binary_changes",
                                    // every row change of the database, and changes left out of logical replication
                                    "pg_logical_slot_peek_changes", "pg_logical_slot_peek_binary_changes",
                                    "pg_replication_origin_session_setup", "pg_replication_origin_xact_setup"],
            "dynamic_sql": ["query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema",
                            // these read a table named by a string, which no parse tree shows (a table named by
                            // a plain constant is judged as a read of that table: `tableToXML`)
                            "table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema", "schema_to_xml",
                            "database_to_xml", "schema_to_xml_and_xmlschema", "database_to_xml_and_xmlschema",
                            // these run a query given as text: ts_stat's first argument, ts_rewrite's second,
                            // tablefunc's crosstab and connectby
                            "ts_stat", "ts_rewrite", "crosstab", "crosstab2", "crosstab3", "crosstab4", "connectby",
                            // pg_cron: a statement given as text, run later (and again) as the job's owner
                            "schedule", "schedule_in_database", "alter_job",
                            // pg_background: a statement given as text, run in a worker of its own
                            "pg_background_launch"],
            "write_data": ["setval", "nextval", "pg_notify",
                           // writes no read-only transaction stops: large objects made, catalog rows added, statistics wiped
                           "lo_create", "lo_creat", "lo_from_bytea", "pg_import_system_collations",
                           "pg_stat_reset", "pg_stat_reset_shared", "pg_stat_reset_single_table_counters",
                           "pg_stat_reset_single_function_counters", "pg_stat_reset_slru", "pg_stat_reset_replication_slot",
                           "pg_stat_reset_subscription_stats", "pg_stat_statements_reset",
                           // a message written into the write-ahead log, which logical decoding passes on
                           "pg_logical_emit_message", "pg_create_restore_point",
                           // index metadata changed by a reader: BRIN ranges summarized or dropped, GIN's pending list moved
                           "brin_summarize_new_values", "brin_summarize_range", "brin_desummarize_range", "gin_clean_pending_list"],
        ]
        var table: [String: String] = [:]
        for (category, names) in groups {
            for name in names { table[name] = category }
        }
        return table
    }()

    /// `CREATE OPERATOR` and `CREATE AGGREGATE` options that name a function the object will call.
    static let boundFunctionOptions: Set<String> = [
        "function", "procedure", "sfunc", "finalfunc", "combinefunc", "serialfunc", "deserialfunc", "msfunc", "minvfunc", "mfinalfunc",
    ]

    /// Catalogs that hold password hashes, connection strings or authentication rules. (Not
    /// `pg_ident_file_mappings`: it maps system user names to database user names and holds no secret.)
    /// `pg_statistic` holds sampled values of every column, `pg_authid.rolpassword` included once it is
    /// analyzed; information_schema's user mapping views show the options of `pg_user_mappings`.
    static let credentialRelations: Set<String> = [
        "pg_authid", "pg_shadow", "pg_user_mappings", "pg_user_mapping", "pg_subscription", "pg_hba_file_rules",
        "pg_statistic", "user_mapping_options", "_pg_user_mappings",
        // views of pg_statistic's sampled values (pg_authid's rolpassword among them once analyzed)
        "pg_stats", "pg_stats_ext", "pg_stats_ext_exprs",
        // every setting, primary_conninfo's replication password included, and the configuration files' lines
        "pg_settings", "pg_file_settings",
    ]

    /// Settings that hold a password (`SHOW`, `current_setting()`), and the functions behind `pg_settings`.
    static let credentialSettings: Set<String> = ["primary_conninfo", "all"]
    static let credentialSettingFunctions: Set<String> = ["pg_show_all_settings", "pg_show_all_file_settings"]

    /// A system catalog: a table of `pg_catalog`, or an unqualified `pg_` name, which PostgreSQL looks up in
    /// `pg_catalog` first (a `search_path` listing it later is refused on its own); or a view of
    /// `information_schema`, some of which PostgreSQL writes through to the catalog (`enabled_roles` is
    /// `pg_authid`; a `search_path` naming information_schema is refused on its own).
    static func isSystemCatalog(_ name: String, schema: String?) -> Bool {
        guard let schema else { return name.hasPrefix("pg_") }
        return schema == "pg_catalog" || schema == "information_schema"
    }

    /// The system catalog a view's query reads when PostgreSQL can write through the view (its one FROM item a
    /// catalog table; no DISTINCT, GROUP BY, HAVING, LIMIT, OFFSET, WITH or set operation): nil otherwise.
    static func updatableCatalogView(_ query: ParseTree?) -> String? {
        guard let (type, select) = query?.tagged, type == "SelectStmt", let from = select["fromClause"]?.elements, from.count == 1,
              let (itemType, item) = from[0].tagged, itemType == "RangeVar", let name = item["relname"]?.stringValue,
              isSystemCatalog(name, schema: item["schemaname"]?.stringValue) else { return nil }
        let blocking: [StaticString] = ["distinctClause", "groupClause", "havingClause", "limitCount", "limitOffset", "withClause", "larg"]
        for clause in blocking where select[clause] != nil { return nil }
        return name
    }

    /// Statements that change the rows of their target table (`relation`): INSERT, UPDATE, DELETE, MERGE, COPY FROM.
    static func changesRows(_ type: String, _ fields: ParseTree) -> Bool {
        switch type {
        case "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt": true
        case "CopyStmt": fields["is_from"]?.boolValue == true
        default: false
        }
    }

    /// Functions that dump one table named by their first argument: a read of that table when the name
    /// is a plain constant the guard can resolve as PostgreSQL's regclass input does.
    static let tableToXML: Set<String> = ["table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema"]

    /// The relation a regclass text names, as PostgreSQL reads it, when it is plain: one or two
    /// unquoted identifiers (folded to lower case), nothing else. Nil for anything else (quoted names,
    /// spaces, three parts), which the guard does not try to resolve.
    static func plainRelationName(_ text: String) -> String? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count) else { return nil }
        for part in parts {
            guard let first = part.unicodeScalars.first, part.count <= 63,
                  first.isASCII, (first.properties.isAlphabetic || first == "_"),
                  part.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == "$") })
            else { return nil }
        }
        return parts.last.map { $0.lowercased() }
    }

    /// Settings whose change alters how later statements are parsed, or bypasses safety checks.
    /// A setting whose change the guard calls unsafe: one of `unsafeSettings`, or one of the extensions that record
    /// what a session does (pgaudit, pg_stat_statements, auto_explain), turned down to hide it. `SET` and
    /// `set_config()` of a custom setting are judged alike by this.
    static func isUnsafeSetting(_ name: String) -> Bool {
        unsafeSettings.contains(name) || ["pgaudit.", "pg_stat_statements.", "auto_explain."].contains { name.hasPrefix($0) }
    }

    static let unsafeSettings: Set<String> = [
        "session_replication_role", "standard_conforming_strings", "client_encoding", "backslash_quote",
        "allow_system_table_mods", "zero_damaged_pages", "ignore_system_indexes", "ignore_checksum_failure",
        "row_security", "lo_compat_privileges", "session_preload_libraries", "local_preload_libraries",
        "dynamic_library_path", "check_function_bodies",
        // `x = NULL` parsed as `x IS NULL`: a WHERE matching nothing matches every row with a NULL.
        "transform_null_equals",
        // What the server logs of the session (and `pgaudit.*`, by prefix): turned down, it hides what was done.
        "log_statement", "log_min_messages", "log_min_error_statement", "log_min_duration_statement",
        "log_min_duration_sample", "log_statement_sample_rate", "log_transaction_sample_rate", "log_duration",
        "log_parameter_max_length", "log_parameter_max_length_on_error", "log_error_verbosity", "log_lock_waits", "log_temp_files",
        // Off, pg_stat_statements (and the log's %Q) no longer sees the session's statements.
        "compute_query_id",
        // What the server shows of the session to monitoring (pg_stat_activity): turned off, the session's statements are hidden.
        "track_activities",
        // Sessions that hold only read grants run read-only on the database (the guard proxy).
        "default_transaction_read_only", "transaction_read_only",
        // The guard proxy's sessions have the database end a statement whose session the proxy closed.
        "client_connection_check_interval",
    ]

    /// Settings that make sessions or transactions read-only: switching them off is `read_write` (a write, refused
    /// where only reads are granted); they stay unsafe as a client's startup parameters.
    static let readOnlySettings: Set<String> = ["default_transaction_read_only", "transaction_read_only"]

    /// The names of PostgreSQL 15's own operators (pg_catalog's): another operator of one of these names is picked for
    /// the argument types pg_catalog's lacks, and the guard reads every use of the name as PostgreSQL's.
    static let builtinOperators: Set<String> = [
        "!!", "!~", "!~*", "!~~", "!~~*", "##", "#", "#-", "#>", "#>>", "%", "&&", "&", "&<", "&<|", "&>", "*", "*<", "*<=", "*<>",
        "*=", "*>", "*>=", "+", "-", "->", "->>", "-|-", "/", "<", "<->", "<<", "<<=", "<<|", "<=", "<>", "<@", "<^", "=", ">",
        ">=", ">>", ">>=", ">^", "?#", "?&", "?", "?-", "?-|", "?|", "?||", "@", "@-@", "@>", "@?", "@@", "@@@", "^", "^@", "|&>",
        "|", "|/", "|>>", "||", "||/", "~", "~*", "~<=~", "~<~", "~=", "~>=~", "~>~", "~~", "~~*", "!=",
    ]

    /// Functions of extensions that live in a schema of their own (pg_cron's in `cron`), with names common enough
    /// that an application's function may share them: a call qualified with another schema is not theirs.
    static let extensionSchemas: [String: String] = ["schedule": "cron", "schedule_in_database": "cron", "alter_job": "cron"]

    /// Whether a call of `name` qualified with `schema` may be the extension's function of that name.
    static func mayBeExtensionFunction(_ name: String, schema: String?) -> Bool {
        guard let schema, let own = extensionSchemas[name] else { return true }
        return schema == own
    }

    /// Settings that change who the session acts as.
    static let roleSettings: Set<String> = ["role", "session_authorization"]

    /// ALTER TABLE subcommands that drop data or switch off a safety mechanism.
    static let alterTableCategories: [String: String] = [
        "AT_DropColumn": "drop_column",
        "AT_DisableTrig": "disable_safety", "AT_DisableTrigAll": "disable_safety", "AT_DisableTrigUser": "disable_safety",
        "AT_DisableRowSecurity": "disable_safety", "AT_NoForceRowSecurity": "disable_safety",
        "AT_DisableRule": "disable_safety", "AT_DropConstraint": "schema_change",
        // Row-level security switched on: other roles (with FORCE, the owner too) see and change only what a policy
        // lets through, nothing while there is none.
        "AT_EnableRowSecurity": "breaking_change", "AT_ForceRowSecurity": "breaking_change",
        // A trigger or rule enabled only "in replica mode" stops firing in normal sessions.
        "AT_EnableReplicaTrig": "disable_safety", "AT_EnableReplicaRule": "disable_safety",
        // The new owner holds every privilege on it, and bypasses its row-level security unless it is forced.
        "AT_ChangeOwner": "privilege_change",
    ]

    /// A view's options whose switching off (or reset) lets its readers past its base tables' row-level
    /// security or through its filter: `security_invoker`, `security_barrier`.
    static let viewSafetyOptions: Set<String> = ["security_invoker", "security_barrier"]

    /// Languages whose bodies the classifier reads.
    static let readableLanguages: Set<String> = ["sql", "plpgsql"]
}

/// What the walk needs to know of a node type: its rule, and whether it is one of the types the walk
/// looks at besides its rule. Found from the type's name as the parse tree spells it, without making a
/// `String` of it or hashing one: every tagged node of every statement is looked up here. A plain value
/// (a position in `SQLNodeTypes` and a role): handing one to the walk copies two small integers.
struct SQLNodeType: Sendable, Equatable {
    enum Special: UInt8, Sendable {
        case none, callStmt, trigger, createCast, define, columnRef, indirection, renameStmt, selectStmt
        case createStmt, createTableAs, indexStmt, alterTableStmt, vacuum, cluster, reindex, refreshMatView, lock, alterObjectSchema, commonTableExpr
        case alterTableMoveAll, createForeignTable, createPolicy, alterPolicy, alterEventTrigger, viewStmt, alterDomain
    }

    /// Position in `SQLNodeTypes.shared`; -1 for a type the walk does not know.
    let index: Int32
    let special: Special

    /// Every type the walk does not know: no rule, nothing special. Its name is the tagged node's key
    /// (`SQLWalk.name(of:_:)`), made only when a message needs it.
    static let unknown = SQLNodeType(index: -1, special: .none)

    var isUnknown: Bool { index < 0 }
    var rule: SQLNodeRule? { index < 0 ? nil : SQLNodeTypes.shared.rules[Int(index)] }
    var name: String { index < 0 ? "" : SQLNodeTypes.shared.names[Int(index)] }

    static let specials: [String: Special] = [
        "CallStmt": .callStmt, "CreateTrigStmt": .trigger, "CreateEventTrigStmt": .trigger, "CreateCastStmt": .createCast,
        "DefineStmt": .define, "ColumnRef": .columnRef, "A_Indirection": .indirection, "RenameStmt": .renameStmt,
        "SelectStmt": .selectStmt, "CreateStmt": .createStmt, "CreateTableAsStmt": .createTableAs, "IndexStmt": .indexStmt,
        "AlterTableStmt": .alterTableStmt, "VacuumStmt": .vacuum, "ClusterStmt": .cluster, "ReindexStmt": .reindex,
        "RefreshMatViewStmt": .refreshMatView, "LockStmt": .lock, "AlterObjectSchemaStmt": .alterObjectSchema,
        "CommonTableExpr": .commonTableExpr, "AlterTableMoveAllStmt": .alterTableMoveAll,
        "CreateForeignTableStmt": .createForeignTable, "CreatePolicyStmt": .createPolicy, "AlterPolicyStmt": .alterPolicy,
        "AlterEventTrigStmt": .alterEventTrigger, "ViewStmt": .viewStmt, "AlterDomainStmt": .alterDomain,
    ]
}

/// The known node types by name: an open-addressing table over the names' bytes (FNV-1a), in buffers of
/// its own so a lookup retains nothing. Made once, kept for the life of the process.
final class SQLNodeTypes: @unchecked Sendable {
    static let shared = SQLNodeTypes()

    let names: [String]
    let rules: [SQLNodeRule?]
    private let types: UnsafeMutablePointer<SQLNodeType>
    /// All names' bytes one after another; each name's start and length.
    private let nameBytes: UnsafeMutablePointer<UInt8>
    private let nameStarts: UnsafeMutablePointer<Int32>
    private let nameLengths: UnsafeMutablePointer<Int32>
    /// Index into the names plus one; 0 for an empty slot.
    private let slots: UnsafeMutablePointer<Int32>
    private let mask: Int

    private init() {
        let all = Set(SQLNodeRule.byNodeType.keys).union(SQLNodeType.specials.keys).sorted()
        names = all
        rules = all.map { SQLNodeRule.byNodeType[$0] }
        types = .allocate(capacity: all.count)
        nameStarts = .allocate(capacity: all.count)
        nameLengths = .allocate(capacity: all.count)
        let bytes = all.flatMap(\.utf8)
        nameBytes = .allocate(capacity: bytes.count)
        nameBytes.initialize(from: bytes, count: bytes.count)
        var capacity = 16
        while capacity < all.count * 4 { capacity *= 2 }
        mask = capacity - 1
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: 0, count: capacity)
        var offset = 0
        for (index, name) in all.enumerated() {
            (types + index).initialize(to: SQLNodeType(index: Int32(index), special: SQLNodeType.specials[name] ?? .none))
            let length = name.utf8.count
            (nameStarts + index).initialize(to: Int32(offset))
            (nameLengths + index).initialize(to: Int32(length))
            var slot = Self.hash(UnsafeBufferPointer(start: nameBytes + offset, count: length)) & mask
            while slots[slot] != 0 { slot = (slot + 1) & mask }
            slots[slot] = Int32(index + 1)
            offset += length
        }
    }

    deinit {
        types.deallocate()
        nameBytes.deallocate()
        nameStarts.deallocate()
        nameLengths.deallocate()
        slots.deallocate()
    }

    private static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return Int(truncatingIfNeeded: hash ^ (hash >> 29))
    }

    /// The type of a node named `name`; `SQLNodeType.unknown` for a type the walk does not know.
    func type(named name: UnsafeBufferPointer<UInt8>) -> SQLNodeType {
        var slot = Self.hash(name) & mask
        while true {
            let entry = Int(slots[slot]) - 1
            if entry < 0 { return .unknown }
            if Int(nameLengths[entry]) == name.count, name.count == 0 || memcmp(nameBytes + Int(nameStarts[entry]), name.baseAddress!, name.count) == 0 {
                return types[entry]
            }
            slot = (slot + 1) & mask
        }
    }

    /// The type and fields of a tagged node (`{"DeleteStmt": {...}}`).
    func tagged(_ node: ParseTree) -> (type: SQLNodeType, fields: ParseTree)? {
        guard let (name, fields) = node.tag else { return nil }
        return (type(named: name), fields)
    }
}

/// The schemas a `search_path` names, as the guard needs them.
public enum SearchPath {
    /// Whether the path puts `pg_catalog` after another schema (or names it inside another entry): PostgreSQL
    /// then resolves an unqualified operator or function (`=`, `lower()`) to another schema's of the same name
    /// first, and the guard, which reads them as PostgreSQL's own, would read the statement wrongly.
    /// A path naming `information_schema` is refused too: its views, some writable through to the catalog,
    /// would be named without their schema, as the guard reads a table of the user's.
    public static func shadowsCatalog(_ entries: [String]) -> Bool {
        entries.enumerated().contains { index, entry in
            let name = entry.lowercased().filter { $0 != " " && $0 != "\t" && $0 != "\n" && $0 != "\r" }
            return (name.contains("pg_catalog") && (index > 0 || (name != "pg_catalog" && name != "\"pg_catalog\"")))
                || name.contains("information_schema")
        }
    }

    /// The entries of a search_path written as one text (`"$user", public`), split at commas.
    public static func entries(_ text: String) -> [String] {
        text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    }

    static let shadowingDetail = "puts pg_catalog after another schema, where PostgreSQL's own operators and functions can be replaced by others of the same name, or names information_schema, whose views (some writable through to the catalog) would then look like your tables"
}

extension String {
    /// The text itself when it passes `test`, else nil.
    func nilIfNot(_ test: (String) -> Bool) -> String? { test(self) ? self : nil }
}
