/// Every category the action classifiers can report, with its built-in level and what it means.
/// The policy file's `guard.sql` and `guard.shell` move categories between levels by these names.
public enum GuardCatalog {
    public struct Category: Sendable, Equatable {
        public var name: String
        public var level: RiskLevel
        public var summary: String
        /// Fail-closed categories cannot be moved below `dangerous`.
        public var failClosed: Bool

        init(_ name: String, _ level: RiskLevel, _ summary: String, failClosed: Bool = false) {
            self.name = name
            self.level = level
            self.summary = summary
            self.failClosed = failClosed
        }
    }

    public static let sql: [Category] = [
        Category("write_data", .write, "changes rows (INSERT, UPDATE or DELETE with a WHERE, MERGE, COPY FROM, NOTIFY), large objects (lo_create, lo_from_bytea) or statistics (pg_stat_reset)"),
        Category("select_into", .write, "SELECT ... INTO creates a table"),
        Category("row_lock", .write, "SELECT ... FOR UPDATE/SHARE locks rows"),
        Category("schema_change", .write, "creates or alters schema objects"),
        Category("maintenance", .write, "VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, LOCK, REFRESH"),
        Category("read_write", .write, "makes a transaction or the session read-write (BEGIN READ WRITE, SET TRANSACTION READ WRITE, default_transaction_read_only or transaction_read_only off): refused in sessions that hold read grants only"),
        Category("call_procedure", .write, "CALL runs a procedure whose body is not visible here"),
        Category("delete_without_where", .dangerous, "DELETE with no WHERE, or one that is true for every row (a join of the table with itself included)"),
        Category("update_without_where", .dangerous, "UPDATE with no WHERE, or one that is true for every row (a join of the table with itself included)"),
        Category("merge_all_rows", .dangerous, "MERGE that updates or deletes on a join condition always true, or joining the table with itself row to row"),
        Category("truncate", .dangerous, "TRUNCATE empties tables"),
        Category("drop_table", .dangerous, "DROP TABLE"),
        Category("drop_schema", .dangerous, "DROP SCHEMA"),
        Category("drop_database", .dangerous, "DROP DATABASE"),
        Category("drop_object", .dangerous, "drops another object (view, index, function, role's objects, ...)"),
        Category("drop_column", .dangerous, "ALTER TABLE ... DROP COLUMN"),
        Category("locking_ddl", .dangerous, "holds a lock that blocks a table's writes (or reads) for a table-sized time: CREATE INDEX without CONCURRENTLY, a column type change, SET NOT NULL, a constraint added without NOT VALID, VACUUM FULL, CLUSTER, REINDEX, LOCK ... EXCLUSIVE"),
        Category("breaking_change", .dangerous, "renames or retypes what running clients use (a table, column, view, function, schema), adds a NOT NULL column without a default, or makes their statements fail or do something else: a DO INSTEAD rule on a table's writes, row-level security switched on, a publication of every table"),
        Category("disable_safety", .dangerous, "disables triggers, event triggers or row-level security (also a policy that lets every row through)"),
        Category("alter_system", .dangerous, "ALTER SYSTEM rewrites the server configuration"),
        Category("alter_database", .dangerous, "ALTER DATABASE changes a whole database"),
        Category("role_change", .dangerous, "creates, alters or drops roles, or changes the session's role"),
        Category("privilege_change", .dangerous, "GRANT, REVOKE or default privileges"),
        Category("read_credentials", .dangerous, "reads a catalog holding password hashes or credentials"),
        Category("catalog_write", .dangerous, "changes a system catalog's rows directly (UPDATE pg_catalog.pg_trigger, pg_proc, ..., or a view that writes through to one): triggers, function bodies and security switched without their statements"),
        Category("copy_program", .dangerous, "COPY ... TO/FROM PROGRAM runs a command on the database server"),
        Category("copy_file", .dangerous, "COPY ... TO/FROM a file on the database server"),
        Category("prepared_transaction", .dangerous, "PREPARE TRANSACTION, COMMIT PREPARED or ROLLBACK PREPARED: transactions that outlive the session, other sessions' included"),
        Category("unsafe_setting", .dangerous, "SET of a setting that changes how statements parse, bypasses safety or hides the session from the server's log"),
        Category("terminate_session", .dangerous, "ends or cancels other sessions (pg_terminate_backend, pg_cancel_backend)"),
        Category("server_files", .dangerous, "reads or writes files on the database server (pg_read_file, lo_import, ...)"),
        Category("large_object_delete", .dangerous, "deletes or overwrites large objects (lo_unlink, lo_put)"),
        Category("reload_config", .dangerous, "reloads or rotates server configuration or logs"),
        Category("set_config", .dangerous, "set_config() changes settings from inside a query"),
        Category("remote_exec", .dangerous, "runs statements on another server (dblink_exec, dblink)"),
        Category("replication_control", .dangerous, "creates, drops or advances replication slots, or promotes"),
        Category("dynamic_sql", .dangerous, "runs SQL built at run time (PL/pgSQL EXECUTE, query_to_xml)"),
        Category("load_library", .dangerous, "LOAD of a shared library"),
        Category("create_extension", .dangerous, "creates or alters an extension"),
        Category("foreign_data", .dangerous, "foreign servers, user mappings and subscriptions (remote credentials)"),
        Category("untrusted_language", .dangerous, "code in a language Gatehouse cannot read (C, plpython, plperl, ...)", failClosed: true),
        Category("execute_prepared", .dangerous, "EXECUTE of a prepared statement whose text is not in this input", failClosed: true),
        Category("unparseable", .dangerous, "PostgreSQL's parser refused the text", failClosed: true),
        Category("too_complex", .dangerous, "longer or more deeply nested than the guard parses", failClosed: true),
        Category("unrecognized_statement", .dangerous, "a statement type the guard has no rule for", failClosed: true),
    ]

    public static let shell: [Category] = [
        Category("command", .write, "runs a command the guard has no read-only rule for"),
        Category("rm_recursive", .write, "rm -r or -f outside protected paths"),
        Category("rm_protected", .dangerous, "rm -r or -f on a protected path (/, /etc, /usr, ~, *, ...)"),
        Category("format_filesystem", .dangerous, "mkfs, wipefs, fdisk, parted"),
        Category("write_device", .dangerous, "writes to a block device (dd of=/dev/..., > /dev/sd...)"),
        Category("overwrite_system_file", .dangerous, "redirects output over a protected system file"),
        Category("chmod_world_writable", .dangerous, "chmod -R 777 / a+rwx, or chmod/chown -R on a protected path"),
        Category("shutdown", .dangerous, "shutdown, reboot, halt, poweroff"),
        Category("pipe_to_shell", .dangerous, "downloads code and runs it (curl ... | sh)"),
        Category("kubectl_delete_all", .dangerous, "kubectl delete of a namespace or with --all"),
        Category("kubectl_drain", .dangerous, "kubectl drain"),
        Category("terraform_destroy", .dangerous, "terraform destroy or apply -destroy"),
        Category("terraform_auto_approve", .dangerous, "terraform apply -auto-approve"),
        Category("git_force_push", .dangerous, "git push --force, -f or a +refspec"),
        Category("git_history_loss", .dangerous, "git reset --hard, git clean -f"),
        Category("cloud_delete", .dangerous, "aws, gcloud or az commands that delete or terminate"),
        Category("firewall_flush", .dangerous, "iptables/nft flush"),
        Category("hide_tracks", .dangerous, "clears shell history or disables it"),
        Category("sql_via_client", .dangerous, "psql -c with a dangerous statement (its SQL findings are listed too)"),
        Category("unresolved_command", .dangerous, "the command name comes from a variable or substitution", failClosed: true),
        Category("unparseable", .dangerous, "unbalanced quotes or parentheses", failClosed: true),
    ]

    public static func categories(for kind: Action.Kind) -> [Category] {
        kind == .sql ? sql : shell
    }

    public static func category(_ name: String, for kind: Action.Kind) -> Category? {
        categories(for: kind).first { $0.name == name }
    }
}

/// The policy file's `guard:` section: categories moved between levels, and shell rules added.
public struct GuardSettings: Sendable, Equatable {
    /// A rule from the policy file: the first word is the command, every other word must appear among
    /// its arguments (in any order; `*` and `?` match as in file names).
    public struct ShellRule: Sendable, Equatable {
        public var pattern: String
        public var level: RiskLevel
        public var words: [String]

        public init(pattern: String, level: RiskLevel) {
            self.pattern = pattern
            self.level = level
            self.words = pattern.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        }
    }

    public var sqlLevels: [String: RiskLevel]
    public var shellLevels: [String: RiskLevel]
    public var shellRules: [ShellRule]

    public init(sqlLevels: [String: RiskLevel] = [:], shellLevels: [String: RiskLevel] = [:], shellRules: [ShellRule] = []) {
        self.sqlLevels = sqlLevels
        self.shellLevels = shellLevels
        self.shellRules = shellRules
    }

    public func level(of category: String, kind: Action.Kind) -> RiskLevel {
        let moved = kind == .sql ? sqlLevels[category] : shellLevels[category]
        return moved ?? GuardCatalog.category(category, for: kind)?.level ?? .dangerous
    }
}
