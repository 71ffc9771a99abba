import Foundation
import GatehouseCore
import Logging
import Synchronization

/// The running policy. A reload replaces it only when the new file is valid; otherwise the old one
/// stays and the problems are returned.
public final class PolicyHolder: Sendable {
    /// The file's policy, the people signed in through the identity provider, and the two merged.
    private struct State {
        var file: Policy
        var people: [String: Person] = [:]
        var merged: Policy
    }
    /// A person known from the provider: the provider's groups at their latest sign-in. Acting still
    /// needs a live session; this is what a decision judges them by meanwhile (a requester who signed
    /// out can still be approved, an approver is told).
    public struct Person: Sendable, Equatable {
        public var groups: [String]
        public var signedInAt: Date
        public init(groups: [String], signedInAt: Date) {
            self.groups = groups
            self.signedInAt = signedInAt
        }
    }
    private let current: Mutex<State>
    public let path: String?

    public init(_ policy: Policy, path: String?) {
        current = Mutex(State(file: policy, merged: policy))
        self.path = path
    }

    /// The running policy, with the people signed in through the identity provider as principals.
    public var policy: Policy { current.withLock { $0.merged } }

    /// The policy as the file states it, without people from the provider.
    public var filePolicy: Policy { current.withLock { $0.file } }

    /// Notes a live session's person (newer sign-ins win; `fresh`: this is a sign-in that just
    /// happened, newest by definition). Cheap when nothing changed.
    public func see(_ name: String, _ person: Person, fresh: Bool = false) {
        current.withLock { state in
            if !fresh, let known = state.people[name], known.signedInAt >= person.signedInAt { return }
            if state.people[name] == person { return }
            state.people[name] = person
            state.merged = Self.merge(state.file, state.people)
        }
    }

    /// Replaces the people with those the store knows (at start and every sweep).
    public func replacePeople(_ people: [String: Person]) {
        current.withLock { state in
            guard state.people != people else { return }
            state.people = people
            state.merged = Self.merge(state.file, state.people)
        }
    }

    public func forget(_ name: String) {
        current.withLock { state in
            guard state.people.removeValue(forKey: name) != nil else { return }
            state.merged = Self.merge(state.file, state.people)
        }
    }

    /// People carry the provider's groups; the file's current mapping turns them into policy groups.
    private static func merge(_ file: Policy, _ people: [String: Person]) -> Policy {
        guard let oidc = file.identity.oidc else { return file }
        return file.including(people: people.mapValues { oidc.policyGroups(forProviderGroups: $0.groups) })
    }

    /// Replaces the file's policy (tests and reloads).
    public func replace(_ policy: Policy) {
        current.withLock { state in
            state.file = policy
            state.merged = Self.merge(policy, state.people)
        }
    }

    public struct ReloadResult: Sendable {
        public var reloaded: Bool
        public var problems: [String]
        /// SHA-256 of the file that was read, so the audit log says exactly which policy was loaded.
        public var sha256: String?
    }

    public func reload(logger: Logger) -> ReloadResult {
        guard let path else {
            return ReloadResult(reloaded: false, problems: ["this server was started without a policy file to reload"])
        }
        let result: PolicyLoadResult
        do { result = try PolicyLoader.load(file: path) } catch {
            return ReloadResult(reloaded: false, problems: ["\(path): \(error)"])
        }
        let digest = (try? Data(contentsOf: URL(fileURLWithPath: path))).map { TokenSecret.hash(bytes: $0) }
        let lines = result.problems.map { $0.located(in: path) }
        guard let policy = result.policy else {
            logger.error("policy reload refused; keeping the running policy", metadata: ["problems": "\(lines)"])
            return ReloadResult(reloaded: false, problems: lines, sha256: digest)
        }
        replace(policy)
        logger.info("policy reloaded", metadata: ["path": "\(path)"])
        return ReloadResult(reloaded: true, problems: lines, sha256: digest)
    }
}
