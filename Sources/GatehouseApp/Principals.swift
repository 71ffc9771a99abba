import Foundation
import GatehouseCore
import GatehouseStore

/// Who the anti-spam policy holds back (blocked, throttled), lifting a block, and a principal's
/// notifications in the outbox.
public struct Principals: Sendable {
    let context: AppContext

    init(_ context: AppContext) { self.context = context }

    public func unblock(caller: Caller, principal: String) async throws -> PrincipalFlags {
        try context.requireAdmin(caller, "unblock principals")
        guard PolicyLoader.isValidName(principal) else {
            throw GatehouseError.invalid("name", "invalid_name", "that is not a principal name: \(PolicyLoader.nameRule)")
        }
        return try await context.write(as: caller) { session, policy, now in
            guard let flags = try await session.principalFlags(principal), flags.isBlocked else {
                // One the policy does not have is unknown, unless it was blocked before it left the policy.
                if policy.principals[principal] == nil {
                    throw GatehouseError(.notFound, "unknown_principal", "\(principal) is not a principal in the policy", field: "name")
                }
                throw GatehouseError(.conflict, "not_blocked", "\(principal) is not blocked; list blocked principals with `gatehouse principals --blocked`")
            }
            _ = try await session.unblock(principal, at: now)
            try await session.appendAudit([AuditEntry(actor: caller.principal, action: .principalUnblocked, subject: principal,
                                                      details: AuditEntry.compact(["principal": principal, "was_blocked_by": flags.blockedBy, "block_reason": flags.blockReason]))], at: now)
            return PrincipalFlags(principal: principal)
        }
    }

    public func flagged(caller: Caller, blocked: Bool, throttled: Bool) async throws -> [PrincipalFlags] {
        try context.requireAdmin(caller, "list blocked and throttled principals")
        let now = context.clock.now()
        return try await context.read { try await $0.flaggedPrincipals(blocked: blocked || !throttled, throttledAt: throttled || !blocked ? now : nil) }
    }

    /// Anti-spam flags of a principal (blocked, throttled), for the request page.
    public func flags(of principal: String) async throws -> PrincipalFlags? {
        try await context.read { try await $0.principalFlags(principal) }
    }

    public func notifications(caller: Caller, recipient: String?, limit: Int) async throws -> [OutboxNotification] {
        let recipient = recipient ?? caller.principal
        if recipient != caller.principal {
            try context.requireAdmin(caller, "read other principals' notifications")
            guard PolicyLoader.isValidName(recipient) else {
                throw GatehouseError.invalid("recipient", "invalid_name", "that is not a principal name: \(PolicyLoader.nameRule)")
            }
            guard context.policies.policy.principals[recipient] != nil else {
                throw GatehouseError(.notFound, "unknown_principal", "\(recipient) is not a principal in the policy", field: "recipient")
            }
        }
        return try await context.read { try await $0.notifications(recipient: recipient, limit: limit) }
    }
}
