import Foundation
import GatehouseCore

/// The classifiers behind one entry point: SQL through PostgreSQL's parser, shell through
/// `ShellClassifier`, both run on `ParserThreads` so no statement can exhaust a small stack.
///
/// Classification is a pure function of the text and the policy's guard settings, so results are
/// remembered per text (applications send the same statements over and over); the memory is
/// dropped whenever the settings change and bounded in size.
public final class ActionGuard: Sendable {
    public static let cachedTextLimit = 4096
    public static let cacheEntries = 10_000

    private let threads: ParserThreads
    private let memory = ClassificationMemory()

    public init(threads: ParserThreads = .shared) {
        self.threads = threads
    }

    public func classify(_ action: Action, settings: GuardSettings, normalize: Bool = false) async -> ActionClassification {
        let cacheable = action.text.utf8.count <= Self.cachedTextLimit
        if cacheable, let known = memory.lookup(action, normalize: normalize, settings: settings) { return known }
        let result = await threads.run { ActionGuard.classifyHere(action, settings: settings, normalize: normalize) }
        if cacheable { memory.store(result, for: action, normalize: normalize, settings: settings) }
        return result
    }

    /// What calling a function does, from its definition (`SQLClassifier.classifyDefinition`), on the
    /// parser threads.
    public func classifyDefinition(_ definition: String, settings: GuardSettings) async -> ActionClassification {
        await threads.run { SQLClassifier(settings: settings).classifyDefinition(definition) }
    }

    /// Texts up to this size may be classified on an ordinary thread (8 MiB stack, as event-loop
    /// threads have): at most a few hundred KiB of parser recursion even when nested to the brim.
    public static let inlineTextLimit = 1024

    /// The classification of a short text, remembered or worked out on the calling thread; nil for
    /// a longer text not seen before (classify it with `classify` on the parser threads).
    public func classifyInline(_ action: Action, settings: GuardSettings) -> ActionClassification? {
        if let known = memory.lookup(action, normalize: false, settings: settings) { return known }
        guard action.text.utf8.count <= Self.inlineTextLimit else { return nil }
        let result = Self.classifyHere(action, settings: settings)
        memory.store(result, for: action, normalize: false, settings: settings)
        return result
    }

    /// Classifies on the calling thread, which must have a stack of at least `ParserThreads.stackSize`.
    public static func classifyHere(_ action: Action, settings: GuardSettings, normalize: Bool = false) -> ActionClassification {
        switch action.kind {
        case .sql: SQLClassifier(settings: settings).classify(action.text, normalize: normalize)
        case .shell: ShellClassifier(settings: settings).classify(action.text)
        }
    }
}

private final class ClassificationMemory: @unchecked Sendable {
    /// Keyed by the text's exact UTF-8 bytes: Swift's `String` equality is canonical equivalence, under
    /// which different byte sequences (U+037E and `;`, composed and decomposed accents) are equal,
    /// while PostgreSQL reads the bytes.
    private struct Key: Hashable {
        var kind: Action.Kind
        var text: String
        var normalize: Bool

        static func == (lhs: Key, rhs: Key) -> Bool {
            lhs.kind == rhs.kind && lhs.normalize == rhs.normalize && lhs.text.utf8.elementsEqual(rhs.text.utf8)
        }

        func hash(into hasher: inout Hasher) {
            hasher.combine(kind)
            hasher.combine(normalize)
            var text = text
            text.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        }
    }

    private let lock = NSLock()
    private var settings = GuardSettings()
    private var entries: [Key: ActionClassification] = [:]

    func lookup(_ action: Action, normalize: Bool, settings: GuardSettings) -> ActionClassification? {
        lock.lock()
        defer { lock.unlock() }
        guard settings == self.settings else { return nil }
        return entries[Key(kind: action.kind, text: action.text, normalize: normalize)]
    }

    func store(_ result: ActionClassification, for action: Action, normalize: Bool, settings: GuardSettings) {
        lock.lock()
        defer { lock.unlock() }
        if settings != self.settings {
            self.settings = settings
            entries.removeAll(keepingCapacity: true)
        }
        if entries.count >= ActionGuard.cacheEntries { entries.removeAll(keepingCapacity: true) }
        entries[Key(kind: action.kind, text: action.text, normalize: normalize)] = result
    }
}
