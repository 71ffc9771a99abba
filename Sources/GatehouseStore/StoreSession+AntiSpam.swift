import Foundation
import GatehouseCore
import SQLKit

/// A principal the anti-spam policy has blocked or throttled.
public struct PrincipalFlags: Sendable, Equatable {
    public var principal: String
    public var blockedAt: Date?
    public var blockedBy: String?
    public var blockReason: String?
    public var throttledUntil: Date?
    public var throttleReason: String?
    /// When an admin last lifted a block: what the principal did before it no longer counts in the spam score.
    public var unblockedAt: Date?

    public init(principal: String, blockedAt: Date? = nil, blockedBy: String? = nil, blockReason: String? = nil,
                throttledUntil: Date? = nil, throttleReason: String? = nil, unblockedAt: Date? = nil) {
        self.principal = principal
        self.blockedAt = blockedAt
        self.blockedBy = blockedBy
        self.blockReason = blockReason
        self.throttledUntil = throttledUntil
        self.throttleReason = throttleReason
        self.unblockedAt = unblockedAt
    }

    public var isBlocked: Bool { blockedAt != nil }
    public func isThrottled(at now: Date) -> Bool { throttledUntil.map { $0 > now } ?? false }
}

extension StoreSession {
    // MARK: rate limits (GCRA state: one theoretical arrival time per key)

    public func rateLimitTAT(key: String) async throws -> Int64? {
        try await rateLimitTATs(keys: [key])[key]
    }

    public func setRateLimitTAT(key: String, tat: Int64) async throws {
        try await setRateLimitTATs([key: tat])
    }

    /// The TATs of several keys in one statement; a key never seen is absent.
    public func rateLimitTATs(keys: [String]) async throws -> [String: Int64] {
        guard !keys.isEmpty else { return [:] }
        let list = Set(keys).sorted().map { key -> SQLQueryString in "\(bind: key)" }.joined(separator: ", ")
        var tats: [String: Int64] = [:]
        for row in try await db.raw("SELECT key, tat FROM rate_limits WHERE key IN (\(list))").all() {
            tats[try row.decode(column: "key", as: String.self)] = try row.decode(column: "tat", as: Int64.self)
        }
        return tats
    }

    /// Sets several keys' TATs in one statement (rows in key order: the same statement text for the same keys).
    public func setRateLimitTATs(_ tats: [String: Int64]) async throws {
        guard !tats.isEmpty else { return }
        let rows = tats.sorted { $0.key < $1.key }.map { key, tat -> SQLQueryString in "(\(bind: key), \(bind: tat))" }.joined(separator: ", ")
        try await db.raw("""
            INSERT INTO rate_limits (key, tat) VALUES \(rows)
            ON CONFLICT (key) DO UPDATE SET tat = excluded.tat
            """).run()
    }

    // MARK: refused attempts

    public func insertRefusal(principal: String, resource: String, kind: RecordedRefusal.Kind, policy: String, at: Date) async throws {
        try await db.raw("""
            INSERT INTO refusals (id, principal, resource, kind, policy, at)
            VALUES (\(bind: Identifier.make("ref")), \(bind: principal), \(bind: resource), \(bind: kind.rawValue), \(bind: policy), \(bind: at.unixMilliseconds))
            """).run()
    }

    public func refusals(principal: String, since: Date) async throws -> [RecordedRefusal] {
        try await db.raw("""
            SELECT kind, resource, at FROM refusals WHERE principal = \(bind: principal) AND at >= \(bind: since.unixMilliseconds)
            ORDER BY at DESC LIMIT 1000
            """).all().map { row in
            RecordedRefusal(kind: try row.decodeValue(column: "kind", as: RecordedRefusal.Kind.self),
                            resource: try row.decode(column: "resource", as: String.self),
                            at: Date(unixMilliseconds: try row.decode(column: "at", as: Int64.self)))
        }
    }

    /// Refusals of one principal by one limit since a time (to audit a burst of refusals once).
    public func refusalCount(principal: String, policy: String, since: Date) async throws -> Int {
        try await db.raw("""
            SELECT COUNT(*) AS n FROM refusals WHERE principal = \(bind: principal) AND policy = \(bind: policy) AND at >= \(bind: since.unixMilliseconds)
            """).first()?.decode(column: "n", as: Int.self) ?? 0
    }

    // MARK: blocked and throttled principals

    public func principalFlags(_ principal: String) async throws -> PrincipalFlags? {
        try await db.raw("SELECT * FROM principal_flags WHERE principal = \(bind: principal)").first().map(Self.flags)
    }

    public func block(_ principal: String, by: String, reason: String, at: Date) async throws {
        try await db.raw("""
            INSERT INTO principal_flags (principal, blocked_at, blocked_by, block_reason)
            VALUES (\(bind: principal), \(bind: at.unixMilliseconds), \(bind: by), \(bind: reason))
            ON CONFLICT (principal) DO UPDATE SET blocked_at = excluded.blocked_at, blocked_by = excluded.blocked_by,
                                                  block_reason = excluded.block_reason
            """).run()
    }

    /// Lifts a block and any throttle, and notes when (the spam score starts afresh from then); returns false
    /// when the principal was not blocked.
    public func unblock(_ principal: String, at: Date) async throws -> Bool {
        let rows = try await db.raw("""
            UPDATE principal_flags SET blocked_at = NULL, blocked_by = NULL, block_reason = NULL, throttled_until = NULL, throttle_reason = NULL,
                                       unblocked_at = \(bind: at.unixMilliseconds)
            WHERE principal = \(bind: principal) AND blocked_at IS NOT NULL RETURNING principal
            """).all()
        return !rows.isEmpty
    }

    public func throttle(_ principal: String, until: Date, reason: String) async throws {
        try await db.raw("""
            INSERT INTO principal_flags (principal, throttled_until, throttle_reason)
            VALUES (\(bind: principal), \(bind: until.unixMilliseconds), \(bind: reason))
            ON CONFLICT (principal) DO UPDATE SET throttled_until = excluded.throttled_until, throttle_reason = excluded.throttle_reason
            """).run()
    }

    /// Blocked principals, and principals throttled at `now`.
    public func flaggedPrincipals(blocked: Bool, throttledAt now: Date?) async throws -> [PrincipalFlags] {
        var conditions: [SQLQueryString] = []
        if blocked { conditions.append("blocked_at IS NOT NULL") }
        if let now { conditions.append("throttled_until > \(bind: now.unixMilliseconds)") }
        let whereClause: SQLQueryString = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " OR ")
        return try await db.raw("SELECT * FROM principal_flags \(whereClause) ORDER BY principal LIMIT 10000").all().map(Self.flags)
    }

    static func flags(_ row: any SQLRow) throws -> PrincipalFlags {
        PrincipalFlags(
            principal: try row.decode(column: "principal", as: String.self),
            blockedAt: try row.decodeOptional(column: "blocked_at", as: Int64.self).map(Date.init(unixMilliseconds:)),
            blockedBy: try row.decodeOptional(column: "blocked_by", as: String.self),
            blockReason: try row.decodeOptional(column: "block_reason", as: String.self),
            throttledUntil: try row.decodeOptional(column: "throttled_until", as: Int64.self).map(Date.init(unixMilliseconds:)),
            throttleReason: try row.decodeOptional(column: "throttle_reason", as: String.self),
            unblockedAt: try row.decodeOptional(column: "unblocked_at", as: Int64.self).map(Date.init(unixMilliseconds:)))
    }

    // MARK: history for the spam score

    /// A principal's newest requests filed since a time, newest first (ties by id, as the memory of recent
    /// requests orders them).
    public func pastRequests(requester: String, since: Date, limit: Int = 100) async throws -> [PastRequest] {
        try await db.raw("""
            SELECT id, requester, resource, role, reason, state, created_at, decided_at, decided_by FROM requests
            WHERE requester = \(bind: requester) AND created_at >= \(bind: since.unixMilliseconds)
            ORDER BY created_at DESC, id DESC LIMIT \(bind: limit)
            """).all().map(Self.pastRequest)
    }

    /// Other principals' requests filed since a time, newest first (everyone's when `requester` is nil).
    public func othersRequests(excluding requester: String?, since: Date, limit: Int = 200) async throws -> [PastRequest] {
        try await db.raw("""
            SELECT id, requester, resource, role, reason, state, created_at, decided_at, decided_by FROM requests
            WHERE created_at >= \(bind: since.unixMilliseconds) \(Self.notBy(requester))
            ORDER BY created_at DESC LIMIT \(bind: limit)
            """).all().map(Self.pastRequest)
    }

    static func notBy(_ requester: String?) -> SQLQueryString {
        requester.map { "AND requester <> \(bind: $0)" } ?? ""
    }

    /// Other principals' requests filed since a time whose creation was audited after `auditSeq`: what a
    /// reader that looked at the audit head (`seq`) before reading `othersRequests` could not have seen.
    /// Each filing's audit event commits with its request, and seqs are handed out by the one writer.
    public func othersRequests(excluding requester: String?, since: Date, auditedAfter auditSeq: Int64) async throws -> [PastRequest] {
        try await db.raw("""
            SELECT id, requester, resource, role, reason, state, created_at, decided_at, decided_by FROM requests
            WHERE id IN (SELECT subject FROM audit_events WHERE seq > \(bind: auditSeq) AND action = \(bind: AuditAction.requestCreated.rawValue))
              AND created_at >= \(bind: since.unixMilliseconds) \(Self.notBy(requester))
            """).all().map(Self.pastRequest)
    }

    /// Requests filed or changed since a time whose events were audited after `auditSeq` (every change of a
    /// request is audited in its transaction, as a `request.*` event with the request as subject), each once
    /// as it is now, and which of them were filed after `auditSeq`.
    public func requestChanges(auditedAfter auditSeq: Int64, createdSince since: Date) async throws -> (requests: [PastRequest], filed: Set<String>) {
        let rows = try await db.raw("""
            SELECT r.id, r.requester, r.resource, r.role, r.reason, r.state, r.created_at, r.decided_at, r.decided_by, e.action
            FROM audit_events e JOIN requests r ON r.id = e.subject
            WHERE e.seq > \(bind: auditSeq) AND e.action IN (\(binds: AuditAction.changingRequests.map(\.rawValue)))
              AND r.created_at >= \(bind: since.unixMilliseconds)
            """).all()
        var requests: [PastRequest] = [], seen: Set<String> = [], filed: Set<String> = []
        for row in rows {
            let id = try row.decode(column: "id", as: String.self)
            if try row.decode(column: "action", as: String.self) == AuditAction.requestCreated.rawValue { filed.insert(id) }
            if seen.insert(id).inserted { requests.append(try Self.pastRequest(row)) }
        }
        return (requests, filed)
    }

    /// How many requests the principal has filed, counted up to `cap` (enough to judge a track record).
    public func requestCount(requester: String, cap: Int) async throws -> Int {
        try await db.raw("""
            SELECT COUNT(*) AS n FROM (SELECT id FROM requests WHERE requester = \(bind: requester) LIMIT \(bind: cap)) AS capped
            """).first()?.decode(column: "n", as: Int.self) ?? 0
    }

    static func pastRequest(_ row: any SQLRow) throws -> PastRequest {
        PastRequest(
            id: try row.decode(column: "id", as: String.self),
            requester: try row.decode(column: "requester", as: String.self),
            resource: try row.decode(column: "resource", as: String.self),
            role: try row.decode(column: "role", as: String.self),
            reason: try row.decode(column: "reason", as: String.self),
            state: try row.decodeValue(column: "state", as: RequestState.self),
            createdAt: Date(unixMilliseconds: try row.decode(column: "created_at", as: Int64.self)),
            decidedAt: try row.decodeOptional(column: "decided_at", as: Int64.self).map(Date.init(unixMilliseconds:)),
            decidedBy: try row.decodeOptional(column: "decided_by", as: String.self))
    }

    // MARK: housekeeping

    /// Drops refusals older than `before` and rate-limit keys whose TAT has passed (a fresh key
    /// behaves the same as a passed one).
    public func pruneAntiSpam(refusalsBefore before: Date, now: Date) async throws {
        try await db.raw("DELETE FROM refusals WHERE at < \(bind: before.unixMilliseconds)").run()
        try await db.raw("DELETE FROM rate_limits WHERE tat < \(bind: now.unixMilliseconds)").run()
    }

    /// Whether `pruneAntiSpam` would find anything older than `before` (checked on a reader first).
    public func antiSpamPruneDue(before: Date) async throws -> Bool {
        let refusal = try await db.raw(Self.oldRefusalQuery(before: before)).first()
        let limit = try await db.raw("SELECT key FROM rate_limits WHERE tat < \(bind: before.unixMilliseconds) LIMIT 1").first()
        return refusal != nil || limit != nil
    }

    static func oldRefusalQuery(before: Date) -> SQLQueryString {
        "SELECT id FROM refusals WHERE at < \(bind: before.unixMilliseconds) LIMIT 1"
    }
}
