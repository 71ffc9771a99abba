import Foundation
import GatehouseCore
import SQLKit

/// What an operator watches at a glance: how much waits, how much access is open, how far behind
/// the outbox is. Read per scrape of `/metrics`.
public struct OperationalCounts: Sendable, Equatable {
    public var pendingRequests = 0
    public var quarantinedRequests = 0
    public var activeGrants = 0
    /// Webhook and Slack deliveries neither delivered nor given up.
    public var queuedDeliveries = 0
    public var oldestQueuedDelivery: Date?

    public init() {}
}

extension StoreSession {
    public func operationalCounts(now: Date) async throws -> OperationalCounts {
        var counts = OperationalCounts()
        for row in try await db.raw("SELECT state, COUNT(*) AS n FROM requests WHERE state IN ('pending', 'quarantined') GROUP BY state").all() {
            let n = try row.decode(column: "n", as: Int.self)
            if try row.decode(column: "state", as: String.self) == "pending" { counts.pendingRequests = n } else { counts.quarantinedRequests = n }
        }
        if let row = try await db.raw("SELECT COUNT(*) AS n FROM grants WHERE ended_at IS NULL AND expires_at > \(bind: now.unixMilliseconds)").first() {
            counts.activeGrants = try row.decode(column: "n", as: Int.self)
        }
        if let row = try await db.raw("""
            SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM webhook_deliveries WHERE delivered_at IS NULL AND failed_at IS NULL
            """).first() {
            counts.queuedDeliveries = try row.decode(column: "n", as: Int.self)
            counts.oldestQueuedDelivery = try row.decodeOptional(column: "oldest", as: Int64.self).map { Date(unixMilliseconds: $0) }
        }
        return counts
    }
}
