import Foundation
import GatehouseCore
import Logging
import Synchronization

/// The running policy. A reload replaces it only when the new file is valid; otherwise the old one
/// stays and the problems are returned.
public final class PolicyHolder: Sendable {
    private let current: Mutex<Policy>
    public let path: String?

    public init(_ policy: Policy, path: String?) {
        current = Mutex(policy)
        self.path = path
    }

    public var policy: Policy { current.withLock { $0 } }

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
        current.withLock { $0 = policy }
        logger.info("policy reloaded", metadata: ["path": "\(path)"])
        return ReloadResult(reloaded: true, problems: lines, sha256: digest)
    }
}
