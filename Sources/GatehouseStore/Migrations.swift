/// Versioned schema changes, applied in order at start. The SQL is written once for SQLite and PostgreSQL.
enum Migrations {
    static let all: [(version: Int, statements: [String])] = [
        (1, [
            """
            CREATE TABLE tokens (
              id TEXT PRIMARY KEY, principal TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, description TEXT,
              is_bootstrap_admin BIGINT NOT NULL DEFAULT 0, created_at BIGINT NOT NULL, created_by TEXT NOT NULL,
              revoked_at BIGINT, revoked_by TEXT)
            """,
            """
            CREATE TABLE requests (
              id TEXT PRIMARY KEY, requester TEXT NOT NULL, resource TEXT NOT NULL, role TEXT NOT NULL,
              duration_s BIGINT NOT NULL, reason TEXT NOT NULL, ticket TEXT, state TEXT NOT NULL,
              approvals_required BIGINT NOT NULL, created_at BIGINT NOT NULL, pending_expires_at BIGINT NOT NULL,
              decided_at BIGINT, decided_by TEXT, state_reason TEXT, grant_id TEXT)
            """,
            "CREATE INDEX requests_by_state ON requests (state, pending_expires_at)",
            "CREATE INDEX requests_by_requester ON requests (requester, created_at)",
            """
            CREATE TABLE approvals (
              request_id TEXT NOT NULL REFERENCES requests (id), approver TEXT NOT NULL, decision TEXT NOT NULL,
              comment TEXT, at BIGINT NOT NULL, PRIMARY KEY (request_id, approver))
            """,
            """
            CREATE TABLE grants (
              id TEXT PRIMARY KEY, request_id TEXT NOT NULL UNIQUE REFERENCES requests (id), principal TEXT NOT NULL,
              resource TEXT NOT NULL, role TEXT NOT NULL, allows TEXT NOT NULL, starts_at BIGINT NOT NULL,
              expires_at BIGINT NOT NULL, ended_at BIGINT, end_reason TEXT, ended_by TEXT, end_comment TEXT)
            """,
            "CREATE INDEX grants_by_holder ON grants (principal, resource, ended_at)",
            "CREATE INDEX grants_open ON grants (ended_at, expires_at)",
            """
            CREATE TABLE audit_events (
              seq BIGINT PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
              subject TEXT NOT NULL, resource TEXT, details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)
            """,
            "CREATE INDEX audit_by_time ON audit_events (at)",
            "CREATE TABLE audit_head (id BIGINT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)",
        ]),
        // One-shot action requests: the exact action on the request, its digest on the grant.
        (2, [
            "ALTER TABLE requests ADD COLUMN action_kind TEXT",
            "ALTER TABLE requests ADD COLUMN action_text TEXT",
            "ALTER TABLE requests ADD COLUMN action_digest TEXT",
            "ALTER TABLE requests ADD COLUMN action_risk TEXT",
            "ALTER TABLE requests ADD COLUMN action_categories TEXT",
            "ALTER TABLE requests ADD COLUMN action_normalized TEXT",
            "ALTER TABLE grants ADD COLUMN action_digest TEXT",
        ]),
        // Anti-spam: rate-limit state (GCRA), refused attempts, blocked and throttled principals,
        // the notification outbox, and each request's spam score.
        (3, [
            "CREATE TABLE rate_limits (key TEXT PRIMARY KEY, tat BIGINT NOT NULL)",
            """
            CREATE TABLE refusals (
              id TEXT PRIMARY KEY, principal TEXT NOT NULL, resource TEXT NOT NULL, kind TEXT NOT NULL,
              policy TEXT NOT NULL, at BIGINT NOT NULL)
            """,
            "CREATE INDEX refusals_by_principal ON refusals (principal, at)",
            """
            CREATE TABLE principal_flags (
              principal TEXT PRIMARY KEY, blocked_at BIGINT, blocked_by TEXT, block_reason TEXT,
              throttled_until BIGINT, throttle_reason TEXT)
            """,
            """
            CREATE TABLE notifications (
              id TEXT PRIMARY KEY, recipient TEXT NOT NULL, kind TEXT NOT NULL, request_id TEXT,
              request_ids TEXT, request_count BIGINT NOT NULL, summary TEXT NOT NULL,
              created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, sent_at BIGINT)
            """,
            "CREATE INDEX notifications_by_recipient ON notifications (recipient, kind, sent_at)",
            "CREATE INDEX requests_by_time ON requests (created_at)",
            "ALTER TABLE requests ADD COLUMN spam_score BIGINT",
            "ALTER TABLE requests ADD COLUMN spam_action TEXT",
            "ALTER TABLE requests ADD COLUMN spam_signals TEXT",
        ]),
        // Leases: which instance runs the sweeper when several share the database.
        (4, [
            "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL)",
        ]),
        // Break-glass grants and their reviews, the webhook outbox with the audit position it has
        // reached, and web inbox sessions.
        (5, [
            "ALTER TABLE grants ADD COLUMN break_glass BIGINT NOT NULL DEFAULT 0",
            """
            CREATE TABLE break_glass (
              grant_id TEXT PRIMARY KEY REFERENCES grants (id), request_id TEXT NOT NULL, principal TEXT NOT NULL,
              resource TEXT NOT NULL, role TEXT NOT NULL, reason TEXT NOT NULL, at BIGINT NOT NULL, expires_at BIGINT NOT NULL,
              review_required BIGINT NOT NULL, reviewed_at BIGINT, reviewed_by TEXT, review_comment TEXT)
            """,
            "CREATE INDEX break_glass_by_review ON break_glass (reviewed_at, at)",
            """
            CREATE TABLE webhook_deliveries (
              id TEXT NOT NULL, endpoint TEXT NOT NULL, event TEXT NOT NULL, body TEXT NOT NULL, created_at BIGINT NOT NULL,
              attempts BIGINT NOT NULL DEFAULT 0, next_attempt_at BIGINT NOT NULL, claimed_until BIGINT,
              last_status TEXT, delivered_at BIGINT, failed_at BIGINT, PRIMARY KEY (id, endpoint))
            """,
            "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (delivered_at, failed_at, next_attempt_at)",
            "CREATE TABLE cursors (name TEXT PRIMARY KEY, seq BIGINT NOT NULL)",
            """
            CREATE TABLE web_sessions (
              id_hash TEXT PRIMARY KEY, token_id TEXT NOT NULL, principal TEXT NOT NULL, csrf TEXT NOT NULL,
              created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)
            """,
        ]),
        // Sign-in through an OpenID Connect provider: session tokens (kind, expiry, the groups the
        // provider gave), the binding of a provider's issuer+subject to one principal name, and the
        // sign-ins under way (state, nonce and PKCE verifier, each used once).
        (6, [
            "ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'api'",
            "ALTER TABLE tokens ADD COLUMN expires_at BIGINT",
            "ALTER TABLE tokens ADD COLUMN groups TEXT",
            "ALTER TABLE tokens ADD COLUMN issuer TEXT",
            "ALTER TABLE tokens ADD COLUMN subject TEXT",
            "CREATE INDEX tokens_by_principal ON tokens (principal, revoked_at)",
            "ALTER TABLE approvals ADD COLUMN token_id TEXT",
            """
            CREATE TABLE identities (
              issuer TEXT NOT NULL, subject TEXT NOT NULL, principal TEXT NOT NULL UNIQUE, email TEXT, groups TEXT NOT NULL,
              first_seen BIGINT NOT NULL, last_seen BIGINT NOT NULL, PRIMARY KEY (issuer, subject))
            """,
            """
            CREATE TABLE sign_ins (
              state_hash TEXT PRIMARY KEY, nonce TEXT NOT NULL, verifier TEXT NOT NULL, purpose TEXT NOT NULL,
              redirect_uri TEXT NOT NULL, client_hash TEXT, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)
            """,
        ]),
        // Slack: every copy of a request's message (to update it when the request is decided), the
        // one-time codes a person makes in the web inbox to link their Slack account, and lookups of
        // a Slack link and of a person by the e-mail the provider confirmed.
        (7, [
            """
            CREATE TABLE slack_messages (
              request_id TEXT NOT NULL, channel TEXT NOT NULL, ts TEXT NOT NULL, created_at BIGINT NOT NULL,
              PRIMARY KEY (request_id, channel, ts))
            """,
            """
            CREATE TABLE slack_link_codes (
              code_hash TEXT PRIMARY KEY, principal TEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)
            """,
            // Addresses stored before only verified ones were kept: each comes back at its person's next sign-in.
            "UPDATE identities SET email = NULL",
            "CREATE INDEX tokens_by_subject ON tokens (kind, issuer, subject)",
            "CREATE INDEX identities_by_email ON identities (email)",
        ]),
        // A counter that every change to tokens, grants or principal_flags moves on PostgreSQL (triggers made
        // at start): each instance watches it and drops its cached answers when it moved.
        (8, [
            "CREATE TABLE store_changes (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)",
            "INSERT INTO store_changes (id, n) VALUES (1, 0)",
        ]),
        // Grant listings page newest first, everyone's (admins) or one principal's, however many have ended;
        // a principal's open requests (read by every filing) are found without walking their whole history.
        (9, [
            "CREATE INDEX grants_by_start ON grants (starts_at, id)",
            "CREATE INDEX grants_by_principal_start ON grants (principal, starts_at, id)",
            "CREATE INDEX requests_by_time_id ON requests (created_at, id)",
            "CREATE INDEX requests_by_requester_state ON requests (requester, state, created_at)",
            // Last: on PostgreSQL a dropped index holds its table exclusively until the migration commits.
            "DROP INDEX requests_by_time",
        ]),
        // Grants in force, newest first (GET /v1/grants?active=true): open grants in the order of the listing,
        // so a page reads its hundred rows whether ten or a hundred thousand grants are in force.
        (10, [
            "CREATE INDEX grants_open_by_start ON grants (ended_at, starts_at, id)",
        ]),
        // Queries that read a whole table that only grows, each found through an index instead: who was told
        // about a request (every webhook and Slack message about a new or reported request), the digests due
        // (every outbox round when digests are sent), refusals old enough to prune (every sweep), one
        // principal's grants in force (their grants page), and a token's or an expired web session (sign-in,
        // sign-out, revocation).
        (11, [
            "CREATE INDEX notifications_by_request ON notifications (request_id, kind)",
            "CREATE INDEX notifications_digests_open ON notifications (created_at, id) WHERE kind = 'digest' AND sent_at IS NULL",
            "CREATE INDEX refusals_by_time ON refusals (at)",
            "CREATE INDEX grants_open_by_principal_start ON grants (principal, ended_at, starts_at, id)",
            "CREATE INDEX web_sessions_by_token ON web_sessions (token_id)",
            "CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at)",
        ]),
        // Retention: notifications and Slack message references of requests no longer open, and expired
        // tokens, are pruned oldest first (`StoreSession+Retention`).
        (12, [
            "CREATE INDEX notifications_by_time ON notifications (created_at)",
            "CREATE INDEX slack_messages_by_time ON slack_messages (created_at)",
            "CREATE INDEX tokens_by_expiry ON tokens (expires_at)",
        ]),
        // The audit log filtered by resource or by one action (`GET /v1/audit?resource=...`, `?action=grant.revoked`):
        // newest first through these, not a walk of the whole log back to its start when the resource is rare.
        (13, [
            "CREATE INDEX audit_by_resource ON audit_events (resource, seq)",
            "CREATE INDEX audit_by_action ON audit_events (action, seq)",
        ]),
        // When an admin last lifted a principal's block: the spam score counts nothing they did before it.
        (14, [
            "ALTER TABLE principal_flags ADD COLUMN unblocked_at BIGINT",
        ]),
    ]

    static var latestVersion: Int { all.map(\.version).max() ?? 0 }
}
