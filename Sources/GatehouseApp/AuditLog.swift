import Foundation
import GatehouseCore
import GatehouseStore

/// Reading and verifying the audit log (admins).
public struct AuditLog: Sendable {
    let context: AppContext

    init(_ context: AppContext) { self.context = context }

    public func events(caller: Caller, filter: StoreSession.AuditFilter) async throws -> [AuditEvent] {
        try context.requireAdmin(caller, "read the audit log")
        // A principal is a name (lower case, at most 63 characters): anything else matches no event, and a long
        // text would only make the store's pattern match refuse it (the API refuses it: `invalidPrincipalFilter`).
        if let principal = filter.actorOrSubject, !PolicyLoader.isValidName(principal) { return [] }
        return try await context.read { try await $0.auditEvents(filter) }
    }

    public func verify(caller: Caller, anchors: [AuditChain.Anchor] = []) async throws -> AuditChain.Verification {
        try context.requireAdmin(caller, "verify the audit log")
        return try await verifyChain(anchors: anchors)
    }

    /// Walks the whole chain in pages, up to the head read first: events written while the walk
    /// runs come after that head and are left for the next verification. Each anchor must be in it.
    public func verifyChain(anchors: [AuditChain.Anchor] = []) async throws -> AuditChain.Verification {
        try await context.read { try await $0.verifyAuditChain(anchors: anchors) }
    }
}
