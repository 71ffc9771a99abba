// Over 400 lines on purpose: the core tables (tokens, requests, approvals, grants, audit) and their
// row decoding. Anti-spam, outbox, break-glass and web-session queries have files of their own.
import Foundation
import GatehouseCore
import SQLKit

public struct TokenRecord: Sendable, Equatable {
    /// `api`: a bearer token an admin created (service accounts; people without a provider).
    /// `session`: issued by Gatehouse when a person signed in through the identity provider.
    /// `slack`: a Slack account linked to its principal (issuer `slack:<team>`, subject the Slack user);
    /// it carries no secret anyone holds and only ever stands behind clicks Slack signed.
    public enum Kind: String, Sendable { case api, session, slack }
    public var id: String
    public var principal: String
    public var description: String?
    public var isBootstrapAdmin: Bool
    public var createdAt: Date
    public var createdBy: String
    public var revokedAt: Date?
    /// Who revoked it: the principal itself (a sign-out), an admin, or `policy`.
    public var revokedBy: String?
    public var kind: Kind
    /// Sessions end by themselves; API tokens have no expiry.
    public var expiresAt: Date?
    /// For sessions: the policy groups the provider gave at sign-in.
    public var groups: [String]?
    public var issuer: String?
    public var subject: String?

    public init(id: String, principal: String, description: String?, isBootstrapAdmin: Bool, createdAt: Date,
                createdBy: String, revokedAt: Date?, revokedBy: String? = nil, kind: Kind = .api, expiresAt: Date? = nil, groups: [String]? = nil,
                issuer: String? = nil, subject: String? = nil) {
        self.id = id
        self.principal = principal
        self.description = description
        self.isBootstrapAdmin = isBootstrapAdmin
        self.createdAt = createdAt
        self.createdBy = createdBy
        self.revokedAt = revokedAt
        self.revokedBy = revokedBy
        self.kind = kind
        self.expiresAt = expiresAt
        self.groups = groups
        self.issuer = issuer
        self.subject = subject
    }
}

/// The queries Gatehouse runs, on one connection (inside a transaction when it came from `write`).
/// SQL here is plain enough to run unchanged on SQLite and PostgreSQL.
public struct StoreSession: Sendable {
    let db: any SQLDatabase

    // MARK: tokens

    public func insertToken(_ token: TokenRecord, hash: String) async throws {
        try await db.raw("""
            INSERT INTO tokens (id, principal, hash, description, is_bootstrap_admin, created_at, created_by, kind, expires_at,
                                groups, issuer, subject)
            VALUES (\(bind: token.id), \(bind: token.principal), \(bind: hash), \(bind: token.description),
                    \(bind: token.isBootstrapAdmin ? 1 : 0), \(bind: token.createdAt.unixMilliseconds), \(bind: token.createdBy),
                    \(bind: token.kind.rawValue), \(bind: token.expiresAt?.unixMilliseconds), \(bind: token.groups.map(Self.encodeList)),
                    \(bind: token.issuer), \(bind: token.subject))
            """).run()
    }

    /// The live (not revoked) token with this hash.
    public func token(hash: String) async throws -> TokenRecord? {
        try await db.raw("SELECT * FROM tokens WHERE hash = \(bind: hash) AND revoked_at IS NULL").first().map(Self.token)
    }

    public func token(id: String) async throws -> TokenRecord? {
        try await db.raw("SELECT * FROM tokens WHERE id = \(bind: id)").first().map(Self.token)
    }

    public func tokens(includeRevoked: Bool) async throws -> [TokenRecord] {
        let filter: SQLQueryString = includeRevoked ? "" : "WHERE revoked_at IS NULL"
        return try await db.raw("SELECT * FROM tokens \(filter) ORDER BY created_at, id").all().map(Self.token)
    }

    public func hasBootstrapAdmin() async throws -> Bool {
        try await bootstrapAdminToken() != nil
    }

    /// The bootstrap admin's token (revoked or not) and its hash.
    public func bootstrapAdminToken() async throws -> (TokenRecord, String)? {
        guard let row = try await db.raw("SELECT * FROM tokens WHERE is_bootstrap_admin = 1 ORDER BY created_at LIMIT 1").first() else { return nil }
        return (try Self.token(row), try row.decode(column: "hash", as: String.self))
    }

    public func revokeToken(id: String, by: String, at: Date) async throws {
        try await db.raw("UPDATE tokens SET revoked_at = \(bind: at.unixMilliseconds), revoked_by = \(bind: by) WHERE id = \(bind: id)").run()
    }

    static func token(_ row: any SQLRow) throws -> TokenRecord {
        TokenRecord(
            id: try row.decode(column: "id", as: String.self),
            principal: try row.decode(column: "principal", as: String.self),
            description: try row.decodeOptional(column: "description", as: String.self),
            isBootstrapAdmin: try row.decode(column: "is_bootstrap_admin", as: Int.self) != 0,
            createdAt: Date(unixMilliseconds: try row.decode(column: "created_at", as: Int64.self)),
            createdBy: try row.decode(column: "created_by", as: String.self),
            revokedAt: try row.decodeOptional(column: "revoked_at", as: Int64.self).map(Date.init(unixMilliseconds:)),
            revokedBy: try row.decodeOptional(column: "revoked_by", as: String.self),
            kind: try row.decodeValue(column: "kind", as: TokenRecord.Kind.self),
            expiresAt: try row.decodeOptional(column: "expires_at", as: Int64.self).map(Date.init(unixMilliseconds:)),
            groups: try row.decodeOptional(column: "groups", as: String.self).map(decodeList),
            issuer: try row.decodeOptional(column: "issuer", as: String.self),
            subject: try row.decodeOptional(column: "subject", as: String.self))
    }

    /// Group lists are stored as JSON arrays of names.
    static func encodeList(_ list: [String]) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: list)) ?? Data("[]".utf8), as: UTF8.self)
    }

    static func decodeList(_ text: String) throws -> [String] {
        guard let list = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String] else {
            throw GatehouseError(.unavailable, "store_broken_row", "the store holds '\(text.prefix(60))' as a group list, which is not a JSON list of names; nothing was changed")
        }
        return list
    }

    // MARK: requests

    public func insertRequest(_ r: AccessRequest) async throws {
        try await db.raw("""
            INSERT INTO requests (id, requester, resource, role, duration_s, reason, ticket, state, approvals_required,
                                  created_at, pending_expires_at, decided_at, decided_by, state_reason, grant_id,
                                  action_kind, action_text, action_digest, action_risk, action_categories, action_normalized,
                                  spam_score, spam_action, spam_signals)
            VALUES (\(bind: r.id), \(bind: r.requester), \(bind: r.resource), \(bind: r.role), \(bind: r.duration.seconds),
                    \(bind: r.reason), \(bind: r.ticket), \(bind: r.state.rawValue), \(bind: r.approvalsRequired),
                    \(bind: r.createdAt.unixMilliseconds), \(bind: r.pendingExpiresAt.unixMilliseconds),
                    \(bind: r.decidedAt?.unixMilliseconds), \(bind: r.decidedBy), \(bind: r.stateReason), \(bind: r.grantId),
                    \(bind: r.action?.kind.rawValue), \(bind: r.action?.text), \(bind: r.action?.digest),
                    \(bind: r.action?.risk.rawValue), \(bind: r.action?.categories.joined(separator: ",")),
                    \(bind: r.action?.normalized), \(bind: r.spam?.score), \(bind: r.spam?.action.rawValue),
                    \(bind: r.spam.map { Self.encodeJSON($0.signals) }))
            """).run()
    }

    /// Moves a request out of `from`; returns false when its state had already changed (someone else won).
    public func updateRequest(_ r: AccessRequest, from: RequestState) async throws -> Bool {
        let rows = try await db.raw("""
            UPDATE requests SET state = \(bind: r.state.rawValue), decided_at = \(bind: r.decidedAt?.unixMilliseconds),
                   decided_by = \(bind: r.decidedBy), state_reason = \(bind: r.stateReason), grant_id = \(bind: r.grantId),
                   pending_expires_at = \(bind: r.pendingExpiresAt.unixMilliseconds)
            WHERE id = \(bind: r.id) AND state = \(bind: from.rawValue)
            RETURNING id
            """).all()
        return !rows.isEmpty
    }

    public func request(id: String) async throws -> AccessRequest? {
        try await db.raw("SELECT * FROM requests WHERE id = \(bind: id)").first().map(Self.request)
    }

    public struct RequestFilter: Sendable {
        public var requester: String?
        public var states: [RequestState]?
        /// Only requests for these roles (by resource; `action` for one-shot action requests).
        public var roles: [String: [String]]?
        /// Only requests older than this one (the next page of a listing).
        public var before: PageCursor?
        public var limit: Int
        public init(requester: String? = nil, states: [RequestState]? = nil, roles: [String: [String]]? = nil, before: PageCursor? = nil, limit: Int = 100) {
            self.requester = requester
            self.states = states
            self.roles = roles
            self.before = before
            self.limit = limit
        }
    }

    public func requests(_ filter: RequestFilter) async throws -> [AccessRequest] {
        var conditions: [SQLQueryString] = []
        if let requester = filter.requester { conditions.append("requester = \(bind: requester)") }
        if let states = filter.states { conditions.append("state IN (\(binds: states.map(\.rawValue)))") }
        if let roles = filter.roles?.filter({ !$0.value.isEmpty }) {
            let pairs: [SQLQueryString] = roles.keys.sorted().map { "(resource = \(bind: $0) AND role IN (\(binds: roles[$0]!)))" }
            conditions.append(pairs.isEmpty ? "1 = 0" : "(" + pairs.joined(separator: " OR ") + ")")
        }
        if let before = filter.before { conditions.append(Self.older(than: before, column: "created_at")) }
        let whereClause: SQLQueryString = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        return try await db.raw("SELECT * FROM requests \(whereClause) ORDER BY created_at DESC, id DESC LIMIT \(bind: filter.limit)")
            .all().map(Self.request)
    }

    /// A principal's requests in some states (their open ones, read by every filing), newest first, at most
    /// 10,000. Without an ORDER BY in SQL, so that the planner takes the (requester, state) index instead of
    /// walking the principal's whole history in time order; they are few, and sorted here.
    public func requests(requester: String, states: [RequestState]) async throws -> [AccessRequest] {
        try await db.raw("""
            SELECT * FROM requests WHERE requester = \(bind: requester) AND state IN (\(binds: states.map(\.rawValue))) LIMIT 10000
            """).all().map(Self.request).sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
    }

    /// Rows after `cursor` in `ORDER BY column DESC, id DESC`. The first term alone can use an index on `column`.
    static func older(than cursor: PageCursor, column: String) -> SQLQueryString {
        let at = cursor.at.unixMilliseconds
        return "\(unsafeRaw: column) <= \(bind: at) AND (\(unsafeRaw: column) < \(bind: at) OR id < \(bind: cursor.id))"
    }

    public func expiredPendingRequests(now: Date, limit: Int) async throws -> [AccessRequest] {
        try await db.raw("""
            SELECT * FROM requests WHERE state IN ('pending', 'quarantined') AND pending_expires_at <= \(bind: now.unixMilliseconds)
            ORDER BY pending_expires_at LIMIT \(bind: limit)
            """).all().map(Self.request)
    }

    static func request(_ row: any SQLRow) throws -> AccessRequest {
        AccessRequest(
            id: try row.decode(column: "id", as: String.self),
            requester: try row.decode(column: "requester", as: String.self),
            resource: try row.decode(column: "resource", as: String.self),
            role: try row.decode(column: "role", as: String.self),
            duration: TimeSpan(seconds: try row.decode(column: "duration_s", as: Int64.self)),
            reason: try row.decode(column: "reason", as: String.self),
            ticket: try row.decodeOptional(column: "ticket", as: String.self),
            state: try row.decodeValue(column: "state", as: RequestState.self),
            approvalsRequired: try row.decode(column: "approvals_required", as: Int.self),
            createdAt: Date(unixMilliseconds: try row.decode(column: "created_at", as: Int64.self)),
            pendingExpiresAt: Date(unixMilliseconds: try row.decode(column: "pending_expires_at", as: Int64.self)),
            decidedAt: try row.decodeOptional(column: "decided_at", as: Int64.self).map(Date.init(unixMilliseconds:)),
            decidedBy: try row.decodeOptional(column: "decided_by", as: String.self),
            stateReason: try row.decodeOptional(column: "state_reason", as: String.self),
            grantId: try row.decodeOptional(column: "grant_id", as: String.self),
            action: try requestedAction(row),
            spam: try spamVerdict(row))
    }

    static func spamVerdict(_ row: any SQLRow) throws -> SpamVerdict? {
        guard let score = try row.decodeOptional(column: "spam_score", as: Int.self),
              let action = try row.decodeOptional(column: "spam_action", as: String.self).flatMap(SpamAction.init(rawValue:)) else { return nil }
        let signals = try row.decodeOptional(column: "spam_signals", as: String.self)
            .flatMap { try? JSONDecoder().decode([FiredSignal].self, from: Data($0.utf8)) } ?? []
        return SpamVerdict(score: score, signals: signals, action: action)
    }

    static func requestedAction(_ row: any SQLRow) throws -> RequestedAction? {
        guard let kind = try row.decodeOptional(column: "action_kind", as: String.self).flatMap(Action.Kind.init(rawValue:)),
              let text = try row.decodeOptional(column: "action_text", as: String.self),
              let digest = try row.decodeOptional(column: "action_digest", as: String.self) else { return nil }
        let categories = try row.decodeOptional(column: "action_categories", as: String.self) ?? ""
        return RequestedAction(
            kind: kind, text: text, digest: digest,
            risk: try row.decodeValue(column: "action_risk", as: RiskLevel.self),
            categories: categories.split(separator: ",").map(String.init),
            normalized: try row.decodeOptional(column: "action_normalized", as: String.self))
    }

    // MARK: approvals

    /// Inserts an approval; the primary key (request, approver) makes one person count once even under races.
    public func insertApproval(_ a: Approval) async throws {
        try await db.raw("""
            INSERT INTO approvals (request_id, approver, decision, comment, at, token_id)
            VALUES (\(bind: a.requestId), \(bind: a.approver), \(bind: a.decision.rawValue), \(bind: a.comment), \(bind: a.at.unixMilliseconds),
                    \(bind: a.tokenId))
            """).run()
    }

    /// Removes one approver's approval of a request (replaced by their new decision in the same transaction).
    public func deleteApproval(requestId: String, approver: String) async throws {
        try await db.raw("DELETE FROM approvals WHERE request_id = \(bind: requestId) AND approver = \(bind: approver)").run()
    }

    public func approvals(requestId: String) async throws -> [Approval] {
        try await db.raw("SELECT * FROM approvals WHERE request_id = \(bind: requestId) ORDER BY at, approver").all().map(Self.approval)
    }

    /// The approvals of several requests in one query, by request id (a request without any is absent).
    public func approvals(requestIds: [String]) async throws -> [String: [Approval]] {
        guard !requestIds.isEmpty else { return [:] }
        let rows = try await db.raw("SELECT * FROM approvals WHERE request_id IN (\(binds: requestIds)) ORDER BY at, approver").all()
        return Dictionary(grouping: try rows.map(Self.approval), by: \.requestId)
    }

    static func approval(_ row: any SQLRow) throws -> Approval {
        Approval(requestId: try row.decode(column: "request_id", as: String.self),
                 approver: try row.decode(column: "approver", as: String.self),
                 decision: try row.decodeValue(column: "decision", as: ApprovalDecision.self),
                 comment: try row.decodeOptional(column: "comment", as: String.self),
                 at: Date(unixMilliseconds: try row.decode(column: "at", as: Int64.self)),
                 tokenId: try row.decodeOptional(column: "token_id", as: String.self))
    }

    // MARK: grants

    public func insertGrant(_ g: Grant) async throws {
        try await db.raw("""
            INSERT INTO grants (id, request_id, principal, resource, role, allows, starts_at, expires_at, action_digest, break_glass)
            VALUES (\(bind: g.id), \(bind: g.requestId), \(bind: g.principal), \(bind: g.resource), \(bind: g.role),
                    \(bind: g.allows.rawValue), \(bind: g.startsAt.unixMilliseconds), \(bind: g.expiresAt.unixMilliseconds),
                    \(bind: g.actionDigest), \(bind: g.breakGlass ? 1 : 0))
            """).run()
    }

    /// Ends a grant that is still open; returns false when it had already ended.
    public func endGrant(_ g: Grant) async throws -> Bool {
        let rows = try await db.raw("""
            UPDATE grants SET ended_at = \(bind: g.endedAt?.unixMilliseconds), end_reason = \(bind: g.endReason?.rawValue),
                   ended_by = \(bind: g.endedBy), end_comment = \(bind: g.endComment)
            WHERE id = \(bind: g.id) AND ended_at IS NULL
            RETURNING id
            """).all()
        return !rows.isEmpty
    }

    public func grant(id: String) async throws -> Grant? {
        try await db.raw("SELECT * FROM grants WHERE id = \(bind: id)").first().map(Self.grant)
    }

    public func openGrants(principal: String, resource: String) async throws -> [Grant] {
        try await db.raw("SELECT * FROM grants WHERE principal = \(bind: principal) AND resource = \(bind: resource) AND ended_at IS NULL")
            .all().map(Self.grant)
    }

    public struct GrantFilter: Sendable {
        public var principal: String?
        public var activeAt: Date?
        public var resource: String?
        /// Only grants that started before this one (the next page of a listing).
        public var before: PageCursor?
        public var limit: Int
        public init(principal: String? = nil, activeAt: Date? = nil, resource: String? = nil, before: PageCursor? = nil, limit: Int = 100) {
            self.principal = principal
            self.activeAt = activeAt
            self.resource = resource
            self.before = before
            self.limit = limit
        }
    }

    public func grants(_ filter: GrantFilter) async throws -> [Grant] {
        try await db.raw(Self.grantsQuery(filter)).all().map(Self.grant)
    }

    /// The listing's query, newest first (apart so that tests can read its plan).
    static func grantsQuery(_ filter: GrantFilter) -> SQLQueryString {
        var conditions: [SQLQueryString] = []
        if let principal = filter.principal { conditions.append("principal = \(bind: principal)") }
        if let resource = filter.resource { conditions.append("resource = \(bind: resource)") }
        if let now = filter.activeAt {
            // `+ 0`: expiry is checked on the rows the page walks (grants_open_by_start, in the listing's order),
            // not used to choose them; SQLite would otherwise read every grant in force from grants_open and sort.
            conditions.append("ended_at IS NULL AND expires_at + 0 > \(bind: now.unixMilliseconds)")
        }
        if let before = filter.before { conditions.append(Self.older(than: before, column: "starts_at")) }
        let whereClause: SQLQueryString = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        return "SELECT * FROM grants \(whereClause) ORDER BY starts_at DESC, id DESC LIMIT \(bind: filter.limit)"
    }

    /// Everyone who holds a grant in force at `now`.
    public func principalsHoldingGrants(now: Date) async throws -> Set<String> {
        Set(try await db.raw("""
            SELECT DISTINCT principal FROM grants WHERE ended_at IS NULL AND expires_at > \(bind: now.unixMilliseconds)
            """).all().map { try $0.decode(column: "principal", as: String.self) })
    }

    public func expiredOpenGrants(now: Date, limit: Int) async throws -> [Grant] {
        try await db.raw("""
            SELECT * FROM grants WHERE ended_at IS NULL AND expires_at <= \(bind: now.unixMilliseconds)
            ORDER BY expires_at LIMIT \(bind: limit)
            """).all().map(Self.grant)
    }

    static func grant(_ row: any SQLRow) throws -> Grant {
        Grant(
            id: try row.decode(column: "id", as: String.self),
            requestId: try row.decode(column: "request_id", as: String.self),
            principal: try row.decode(column: "principal", as: String.self),
            resource: try row.decode(column: "resource", as: String.self),
            role: try row.decode(column: "role", as: String.self),
            allows: try row.decodeValue(column: "allows", as: RiskLevel.self),
            startsAt: Date(unixMilliseconds: try row.decode(column: "starts_at", as: Int64.self)),
            expiresAt: Date(unixMilliseconds: try row.decode(column: "expires_at", as: Int64.self)),
            endedAt: try row.decodeOptional(column: "ended_at", as: Int64.self).map(Date.init(unixMilliseconds:)),
            endReason: try row.decodeOptional(column: "end_reason", as: String.self).flatMap(GrantEnd.init(rawValue:)),
            endedBy: try row.decodeOptional(column: "ended_by", as: String.self),
            endComment: try row.decodeOptional(column: "end_comment", as: String.self),
            actionDigest: try row.decodeOptional(column: "action_digest", as: String.self),
            breakGlass: (try row.decodeOptional(column: "break_glass", as: Int64.self) ?? 0) != 0)
    }

    // MARK: audit

    /// Appends events after the current chain head and moves the head, inside the caller's transaction.
    @discardableResult
    public func appendAudit(_ entries: [AuditEntry], at now: Date) async throws -> [AuditEvent] {
        guard !entries.isEmpty else { return [] }
        var head = try await auditHead()
        var written: [AuditEvent] = []
        for entry in entries {
            let event = AuditChain.link(entry, after: head, at: now)
            try await db.raw("""
                INSERT INTO audit_events (seq, at, actor, action, subject, resource, details, prev_hash, hash)
                VALUES (\(bind: event.seq), \(bind: event.at.unixMilliseconds), \(bind: event.actor), \(bind: event.action),
                        \(bind: event.subject), \(bind: event.resource), \(bind: Self.encodeDetails(event.details)),
                        \(bind: event.prevHash), \(bind: event.hash))
                """).run()
            head = (event.seq, event.hash)
            written.append(event)
        }
        try await db.raw("""
            INSERT INTO audit_head (id, seq, hash) VALUES (1, \(bind: head!.seq), \(bind: head!.hash))
            ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash
            """).run()
        return written
    }

    public func auditHead() async throws -> (seq: Int64, hash: String)? {
        guard let row = try await db.raw("SELECT seq, hash FROM audit_head WHERE id = 1").first() else { return nil }
        return (try row.decode(column: "seq", as: Int64.self), try row.decode(column: "hash", as: String.self))
    }

    /// The audit head and the hash of the event at `seq` (nil when the log holds none there), in one
    /// statement; nil when the log is empty.
    public func auditHead(withHashAt seq: Int64) async throws -> (head: (seq: Int64, hash: String), hashAt: String?)? {
        guard let row = try await db.raw("""
            SELECT seq, hash, (SELECT e.hash FROM audit_events e WHERE e.seq = \(bind: seq)) AS hash_at FROM audit_head WHERE id = 1
            """).first() else { return nil }
        return ((try row.decode(column: "seq", as: Int64.self), try row.decode(column: "hash", as: String.self)),
                try row.decodeOptional(column: "hash_at", as: String.self))
    }

    public struct AuditFilter: Sendable {
        public var since: Date?
        public var actorOrSubject: String?
        public var resource: String?
        public var afterSeq: Int64?
        public var upToSeq: Int64?
        public var action: String?
        /// Newest first (the web inbox); the API pages oldest first.
        public var newestFirst: Bool
        public var limit: Int
        public init(since: Date? = nil, actorOrSubject: String? = nil, resource: String? = nil, afterSeq: Int64? = nil,
                    upToSeq: Int64? = nil, action: String? = nil, newestFirst: Bool = false, limit: Int = 100) {
            self.action = action
            self.newestFirst = newestFirst
            self.upToSeq = upToSeq
            self.since = since
            self.actorOrSubject = actorOrSubject
            self.resource = resource
            self.afterSeq = afterSeq
            self.limit = limit
        }
    }

    public func auditEvents(_ filter: AuditFilter) async throws -> [AuditEvent] {
        try await db.raw(Self.auditEventsQuery(filter)).all().map(Self.auditEvent)
    }

    /// The events a filter selects, in seq order: by resource and by one action through their indexes
    /// (migration 13), by a family of actions (`request`) and by principal through the log in seq order.
    static func auditEventsQuery(_ filter: AuditFilter) -> SQLQueryString {
        var conditions: [SQLQueryString] = []
        if let since = filter.since { conditions.append("at >= \(bind: since.unixMilliseconds)") }
        if let who = filter.actorOrSubject {
            // Events about a principal carry it in their details; escape LIKE's wildcards in the name.
            let escaped = who.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_")
            conditions.append("(actor = \(bind: who) OR subject = \(bind: who) OR details LIKE \(bind: "%\"principal\":\"" + escaped + "\"%") ESCAPE '\\')")
        }
        if let resource = filter.resource { conditions.append("resource = \(bind: resource)") }
        if let after = filter.afterSeq { conditions.append("seq > \(bind: after)") }
        if let upTo = filter.upToSeq { conditions.append("seq <= \(bind: upTo)") }
        if let action = filter.action {
            // `request` matches `request.created`, `request.approved`, ... (a prefix compare, the
            // same on both stores: no LIKE wildcards, case-sensitive).
            let prefix = action + "."
            conditions.append(action.contains(".") ? "action = \(bind: action)"
                              : "substr(action, 1, CAST(\(bind: prefix.count) AS INTEGER)) = \(bind: prefix)")
        }
        let whereClause: SQLQueryString = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let order: SQLQueryString = filter.newestFirst ? "seq DESC" : "seq"
        return "SELECT * FROM audit_events \(whereClause) ORDER BY \(order) LIMIT \(bind: filter.limit)"
    }

    static func auditEvent(_ row: any SQLRow) throws -> AuditEvent {
        let details = try row.decode(column: "details", as: String.self)
        return AuditEvent(
            seq: try row.decode(column: "seq", as: Int64.self),
            at: Date(unixMilliseconds: try row.decode(column: "at", as: Int64.self)),
            actor: try row.decode(column: "actor", as: String.self),
            action: try row.decode(column: "action", as: String.self),
            subject: try row.decode(column: "subject", as: String.self),
            resource: try row.decodeOptional(column: "resource", as: String.self),
            details: (try? JSONDecoder().decode([String: String].self, from: Data(details.utf8))) ?? ["unreadable_details": details],
            prevHash: try row.decode(column: "prev_hash", as: String.self),
            hash: try row.decode(column: "hash", as: String.self))
    }

    static func encodeDetails(_ details: [String: String]) -> String {
        encodeJSON(details)
    }

    static func encodeJSON(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "{}"
    }

    // MARK: leases

    /// Takes or renews the lease `name` for `holder` until `until`, unless another holder's lease
    /// is still running; returns whether `holder` has it now. Atomic: one upsert.
    public func claimLease(_ name: String, holder: String, now: Date, until: Date) async throws -> Bool {
        try await db.raw("""
            INSERT INTO leases (name, holder, expires_at) VALUES (\(bind: name), \(bind: holder), \(bind: until.unixMilliseconds))
            ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
            WHERE leases.holder = excluded.holder OR leases.expires_at <= \(bind: now.unixMilliseconds)
            """).run()
        let current = try await db.raw("SELECT holder FROM leases WHERE name = \(bind: name)").first()?.decode(column: "holder", as: String.self)
        return current == holder
    }
}

extension SQLRow {
    /// A column that may be NULL. SQLiteKit decodes `Optional<T>` through a nested `Decoder` (a protocol
    /// conformance lookup and several allocations per value); asking for NULL first and then for `T` itself
    /// takes its direct conversion. On every row the hot paths read (grants, tokens, requests).
    /// A column the query did not select is an error, as with `decode(column:as: T?.self)`, never a NULL:
    /// a revocation or a block read as absent would fail open.
    func decodeOptional<T: Decodable>(column: String, as type: T.Type) throws -> T? {
        guard try decodeNil(column: column) else { return try decode(column: column, as: T.self) }
        guard contains(column: column) else {
            throw GatehouseError(.unavailable, "store_broken_row", "the store's answer has no column \(column); was the database changed by hand? Nothing was changed")
        }
        return nil
    }

    /// A column that holds one of an enum's values. Anything else means the row was written outside
    /// Gatehouse (or by a newer version): an error, never a guessed default such as "denied".
    func decodeValue<Value: RawRepresentable>(column: String, as type: Value.Type) throws -> Value where Value.RawValue == String {
        let raw = try decode(column: column, as: String.self)
        guard let value = Value(rawValue: raw) else {
            throw GatehouseError(.unavailable, "store_broken_row",
                                 "the store holds '\(raw)' in column \(column), which is not a \(Value.self) this version knows; was the database changed by hand or by a newer Gatehouse? Nothing was changed")
        }
        return value
    }
}
