import GatehouseCore

/// The classifiers behind one entry point: SQL through PostgreSQL's parser, shell through
/// `ShellClassifier`, both run on `ParserThreads` so no statement can exhaust a small stack.
public struct ActionGuard: Sendable {
    private let threads: ParserThreads

    public init(threads: ParserThreads = .shared) {
        self.threads = threads
    }

    public func classify(_ action: Action, settings: GuardSettings, normalize: Bool = false) async -> ActionClassification {
        await threads.run { ActionGuard.classifyHere(action, settings: settings, normalize: normalize) }
    }

    /// Classifies on the calling thread, which must have a stack of at least `ParserThreads.stackSize`.
    public static func classifyHere(_ action: Action, settings: GuardSettings, normalize: Bool = false) -> ActionClassification {
        switch action.kind {
        case .sql: SQLClassifier(settings: settings).classify(action.text, normalize: normalize)
        case .shell: ShellClassifier(settings: settings).classify(action.text)
        }
    }
}
