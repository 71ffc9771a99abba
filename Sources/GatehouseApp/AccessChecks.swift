import Foundation
import GatehouseCore
import GatehouseGuard
import GatehouseStore

/// "May X do Y on Z now?": a role, or one exact action. Reads answer from the (cached) read path;
/// a decision that uses up a one-shot grant, and every decision on a dangerous action, is taken
/// inside the writer with its audit event.
public struct AccessChecks: Sendable {
    let context: AppContext

    init(_ context: AppContext) { self.context = context }

    public func check(caller: Caller, resource: String, role: String, principal: String?) async throws -> (principal: String, decision: CheckDecision) {
        try Self.requireNames(["resource": resource, "role": role, "principal": principal])
        let subject = principal ?? caller.principal
        if subject != caller.principal, !caller.isAdmin { throw AppErrors.onBehalfRefused() }
        let store = context.store
        let grants = try await context.unavailableOnFailure { try await store.openGrants(principal: subject, resource: resource) }
        if try await context.unavailableOnFailure({ try await store.isBlocked(principal: subject) }) {
            return (subject, .deny(reason: AppErrors.blocked(subject).message))
        }
        let now = context.clock.now() // after the lookup: expiry is judged at the latest possible moment
        return (subject, AccessCheck.decide(principal: subject, resource: resource, role: role, policy: context.policies.policy, grants: grants, now: now))
    }

    /// The names a check is about are the policy's kind of names: anything else could not name anything
    /// in the policy, and is refused before it is looked up or written into the audit log.
    static func requireNames(_ names: [String: String?]) throws {
        for field in ["resource", "role", "principal"] {
            guard case let value?? = names[field], !PolicyLoader.isValidName(value) else { continue }
            throw GatehouseError.invalid(field, "invalid_name", "`\(field)` is not a name: \(PolicyLoader.nameRule)")
        }
    }

    /// Classifies an action with the policy's `guard:` settings, on the parser threads in the principal's turn.
    public func classify(_ action: Action, normalize: Bool = false, for principal: String) async -> ActionClassification {
        await context.actionGuard.classify(action, settings: context.policies.policy.guardSettings, normalize: normalize, for: principal)
    }

    /// May the principal run this exact action now? Read and write actions allowed by a role grant
    /// are answered from the read path; a decision that uses up a one-shot grant, and every decision
    /// on a dangerous or forbidden action, is taken inside the writer with its audit event.
    public func checkAction(caller: Caller, resource: String, action: Action, principal: String?,
                            audit scope: ActionAuditScope = .dangerous, context details: [String: String] = [:],
                            classification known: ActionClassification? = nil) async throws
        -> (principal: String, decision: ActionDecision, classification: ActionClassification) {
        try Self.requireNames(["resource": resource, "principal": principal])
        let subject = principal ?? caller.principal
        if subject != caller.principal, !caller.isAdmin { throw AppErrors.onBehalfRefused() }
        if let problem = action.problem { throw GatehouseError.invalid("action", "invalid_action", problem) }
        let classification = if let known { known } else { await classify(action, for: caller.principal) }
        let store = context.store
        if try await context.unavailableOnFailure({ try await store.isBlocked(principal: subject) }) {
            return (subject, .deny(reason: AppErrors.blocked(subject).message), classification)
        }
        let grants = try await context.unavailableOnFailure { try await store.openGrants(principal: subject, resource: resource) }
        let decision = ActionCheck.decide(principal: subject, resource: resource, action: action, classification: classification,
                                          policy: context.policies.policy, grants: grants, now: context.clock.now())
        let usesOneShotGrant = if case .allowOnce = decision { true } else { false }
        if classification.risk < .dangerous, !usesOneShotGrant, !scope.audits(decision) { return (subject, decision, classification) }
        let final = try await context.write(as: caller) { session, policy, now in
            let grants = try await session.principalFlags(subject)?.isBlocked == true ? [] : try await session.openGrants(principal: subject, resource: resource)
            let decision = ActionCheck.decide(principal: subject, resource: resource, action: action, classification: classification,
                                              policy: policy, grants: grants, now: now)
            var entries: [AuditEntry] = []
            // An admin's check for someone else is a check like theirs (an enforcement point asking for them): it
            // uses the one-shot approval up, and the audit log names the admin as who asked.
            if case .allowOnce(let grant) = decision {
                let used = try GrantLifecycle.use(grant, now: now)
                guard try await session.endGrant(used) else { throw AppErrors.raced(grant.id) }
                entries.append(AuditEntry(actor: caller.principal, action: .grantUsed, subject: grant.id, resource: resource,
                                          details: AuditEntry.compact(["principal": subject, "request_id": grant.requestId, "sha256": action.digest,
                                                                       "approved_sha256": grant.actionDigest])))
            }
            var checked = Self.actionChecked(actor: caller.principal, subject: subject, resource: resource, action: action,
                                             classification: classification, decision: decision)
            checked.details.merge(details) { mine, _ in mine }
            entries.append(checked)
            try await session.appendAudit(entries, at: now)
            return decision
        }
        return (subject, final, classification)
    }

    /// `actor` asked, about `subject` (the same but for an admin's check for someone else).
    static func actionChecked(actor: String, subject: String, resource: String, action: Action, classification: ActionClassification,
                              decision: ActionDecision) -> AuditEntry {
        let outcome = switch decision {
        case .allowByRole, .allowOnce: "allow"
        case .approvalRequired: "approval_required"
        case .deny: "deny"
        }
        return AuditEntry(actor: actor, action: .actionChecked, subject: action.digest, resource: resource,
                          details: AuditEntry.compact(["principal": subject, "decision": outcome, "kind": action.kind.rawValue,
                                                       "risk": classification.risk.rawValue, "categories": classification.categories.joined(separator: ","),
                                                       "grant_id": decision.grant?.id, "text": AuditEntry.excerpt(action.text)]))
    }
}
