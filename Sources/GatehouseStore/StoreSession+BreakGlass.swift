import Foundation
import GatehouseCore
import SQLKit

extension StoreSession {
    // MARK: break-glass

    public func insertBreakGlass(_ use: BreakGlassUse) async throws {
        try await db.raw("""
            INSERT INTO break_glass (grant_id, request_id, principal, resource, role, reason, at, expires_at, review_required)
            VALUES (\(bind: use.grantId), \(bind: use.requestId), \(bind: use.principal), \(bind: use.resource), \(bind: use.role),
                    \(bind: use.reason), \(bind: use.at.unixMilliseconds), \(bind: use.expiresAt.unixMilliseconds), \(bind: use.reviewRequired ? 1 : 0))
            """).run()
    }

    public func breakGlassUse(grantId: String) async throws -> BreakGlassUse? {
        try await db.raw("SELECT * FROM break_glass WHERE grant_id = \(bind: grantId)").first().map(Self.breakGlassUse)
    }

    /// Uses, newest first; `awaitingReview` keeps those whose required review is not done.
    public func breakGlassUses(awaitingReview: Bool, limit: Int) async throws -> [BreakGlassUse] {
        let filter: SQLQueryString = awaitingReview ? "WHERE review_required = 1 AND reviewed_at IS NULL" : ""
        return try await db.raw("SELECT * FROM break_glass \(filter) ORDER BY at DESC, grant_id LIMIT \(bind: limit)").all().map(Self.breakGlassUse)
    }

    /// Records a review; false when someone reviewed it first.
    public func reviewBreakGlass(_ use: BreakGlassUse) async throws -> Bool {
        let rows = try await db.raw("""
            UPDATE break_glass SET reviewed_at = \(bind: use.reviewedAt?.unixMilliseconds), reviewed_by = \(bind: use.reviewedBy),
                   review_comment = \(bind: use.reviewComment)
            WHERE grant_id = \(bind: use.grantId) AND reviewed_at IS NULL RETURNING grant_id
            """).all()
        return !rows.isEmpty
    }

    static func breakGlassUse(_ row: any SQLRow) throws -> BreakGlassUse {
        BreakGlassUse(
            grantId: try row.decode(column: "grant_id", as: String.self),
            requestId: try row.decode(column: "request_id", as: String.self),
            principal: try row.decode(column: "principal", as: String.self),
            resource: try row.decode(column: "resource", as: String.self),
            role: try row.decode(column: "role", as: String.self),
            reason: try row.decode(column: "reason", as: String.self),
            at: Date(unixMilliseconds: try row.decode(column: "at", as: Int64.self)),
            expiresAt: Date(unixMilliseconds: try row.decode(column: "expires_at", as: Int64.self)),
            reviewRequired: try row.decode(column: "review_required", as: Int64.self) != 0,
            reviewedAt: try row.decodeOptional(column: "reviewed_at", as: Int64.self).map(Date.init(unixMilliseconds:)),
            reviewedBy: try row.decodeOptional(column: "reviewed_by", as: String.self),
            reviewComment: try row.decodeOptional(column: "review_comment", as: String.self))
    }
}
