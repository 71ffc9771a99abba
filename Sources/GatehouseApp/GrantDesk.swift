import Foundation
import GatehouseCore
import GatehouseStore

/// Grants: list and read them, release one's own, revoke anyone's (admins).
public struct GrantDesk: Sendable {
    let context: AppContext

    init(_ context: AppContext) { self.context = context }

    /// A page of grants, newest first, from `cursor` on.
    public func list(caller: Caller, all: Bool, activeOnly: Bool, limit: Int, cursor: PageCursor? = nil) async throws -> Page<Grant> {
        if all { try context.requireAdmin(caller, "list everyone's grants") }
        let filter = StoreSession.GrantFilter(principal: all ? nil : caller.principal, activeAt: activeOnly ? context.clock.now() : nil,
                                              before: cursor, limit: limit)
        let grants = try await context.read { try await $0.grants(filter) }
        return Page(fetched: grants, limit: limit) { PageCursor(at: $0.startsAt, id: $0.id) }
    }

    /// A grant that is not there, or not the caller's (the same answer: another's grant is not shown to exist).
    static func notFound(_ id: String, _ caller: Caller) -> GatehouseError {
        GatehouseError(.notFound, ErrorCode.grantNotFound, caller.isAdmin ? "no grant \(id); list them with `gatehouse grants --all`"
                                                                          : "no grant \(id) of yours; list them with `gatehouse grants`")
    }

    public func get(caller: Caller, id: String) async throws -> Grant {
        let grant = try await context.read { try await $0.grant(id: id) }
        guard let grant, caller.isAdmin || grant.principal == caller.principal else {
            throw Self.notFound(id, caller)
        }
        return grant
    }

    public func release(caller: Caller, id: String) async throws -> Grant {
        try await end(caller: caller, id: id, action: .grantReleased) { grant, now throws(GatehouseError) in
            try GrantLifecycle.release(grant, by: caller.principal, now: now)
        }
    }

    public func revoke(caller: Caller, id: String, reason: String) async throws -> Grant {
        try context.requireAdmin(caller, "revoke grants")
        return try await end(caller: caller, id: id, action: .grantRevoked) { grant, now throws(GatehouseError) in
            try GrantLifecycle.revoke(grant, by: caller.principal, isAdmin: caller.isAdmin, reason: reason, now: now)
        }
    }

    private func end(caller: Caller, id: String, action: AuditAction,
                     _ transition: @escaping @Sendable (Grant, Date) throws(GatehouseError) -> Grant) async throws -> Grant {
        try await context.write(as: caller) { session, _, now in
            guard let grant = try await session.grant(id: id), caller.isAdmin || grant.principal == caller.principal else {
                throw Self.notFound(id, caller)
            }
            if grant.endedAt == nil, !grant.isActive(at: now) {
                // Past expiry but not yet swept: record the expiry, then say so.
                let expired = GrantLifecycle.expire(grant)
                if try await session.endGrant(expired) { try await session.appendAudit([AuditEntry.grantExpired(expired)], at: now) }
            }
            let ended = try transition(grant, now)
            guard try await session.endGrant(ended) else { throw AppErrors.raced(id) }
            try await session.appendAudit([AuditEntry(actor: caller.principal, action: action, subject: id, resource: grant.resource,
                                                      details: AuditEntry.compact(["principal": grant.principal, "role": grant.role, "reason": ended.endComment]))], at: now)
            return ended
        }
    }
}

extension GrantDesk {
    /// Ends every grant of `principal` in force at `now` that `revokes` accepts (all of them by default), however
    /// many, each audited `grant.revoked` by `actor`: the audit entries to append, and the ids of those left in force.
    static func revokeInForce(of principal: String, by actor: String, reason: String, session: StoreSession, now: Date,
                              revokes: (Grant) -> Bool = { _ in true }) async throws -> (entries: [AuditEntry], kept: [String]) {
        var entries: [AuditEntry] = [], kept: [String] = []
        var before: PageCursor?
        let pageSize = 1000
        while true {
            let page = try await session.grants(.init(principal: principal, activeAt: now, before: before, limit: pageSize))
            for grant in page {
                guard revokes(grant) else {
                    kept.append(grant.id)
                    continue
                }
                let revoked = try GrantLifecycle.revoke(grant, by: actor, isAdmin: true, reason: reason, now: now)
                guard try await session.endGrant(revoked) else { continue }
                entries.append(AuditEntry(actor: actor, action: .grantRevoked, subject: grant.id, resource: grant.resource,
                                          details: ["principal": principal, "role": grant.role, "reason": reason]))
            }
            guard page.count == pageSize, let last = page.last else { return (entries, kept) }
            before = PageCursor(at: last.startsAt, id: last.id)
        }
    }
}
