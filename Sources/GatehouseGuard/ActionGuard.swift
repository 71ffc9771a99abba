import Foundation
import GatehouseCore

/// The classifiers behind one entry point: SQL through PostgreSQL's parser, shell through
/// `ShellClassifier`, both run on `ParserThreads` so no statement can exhaust a small stack.
///
/// Classification is a pure function of the text and the policy's guard settings, so results are
/// remembered per text (applications send the same statements over and over), and per shape when
/// the result holds for the statement with any other constants (`SQLShape`); the memory is dropped
/// whenever the settings change and bounded in size.
public final class ActionGuard: Sendable {
    public static let cachedTextLimit = 4096
    public static let cacheEntries = 10_000

    private let threads: ParserThreads
    private let memory = ClassificationMemory()

    public init(threads: ParserThreads = .shared) {
        self.threads = threads
    }

    /// Classifies on the parser threads, in the turn of `share` (the principal it is for: one principal's
    /// statements wait behind each other, not in front of everyone else's).
    public func classify(_ action: Action, settings: GuardSettings, normalize: Bool = false, for share: String = "") async -> ActionClassification {
        switch remembered(action, settings: settings, normalize: normalize) {
        case let .known(result): return result
        case let .unknown(shape):
            return await threads.run(for: share) { self.classifyAndRemember(action, settings: settings, normalize: normalize, shape: shape) }
        }
    }

    /// What calling a function does, from its definition (`SQLClassifier.classifyDefinition`), on the
    /// parser threads.
    public func classifyDefinition(_ definition: String, settings: GuardSettings, for share: String = "") async -> ActionClassification {
        await threads.run(for: share) { SQLClassifier(settings: settings).classifyDefinition(definition) }
    }

    /// Texts up to this size may be classified on an ordinary thread (8 MiB stack, as event-loop
    /// threads have): at most a few hundred KiB of parser recursion even when nested to the brim.
    public static let inlineTextLimit = 1024

    /// The classification of a short text, remembered or worked out on the calling thread; nil for
    /// a longer text not seen before (classify it with `classify` on the parser threads).
    public func classifyInline(_ action: Action, settings: GuardSettings) -> ActionClassification? {
        switch remembered(action, settings: settings, normalize: false) {
        case let .known(result): return result
        case let .unknown(shape):
            guard action.text.utf8.count <= Self.inlineTextLimit else { return nil }
            return classifyAndRemember(action, settings: settings, normalize: false, shape: shape)
        }
    }

    /// How many shapes are remembered (for tests).
    var rememberedShapes: Int { memory.shapeCount }

    private enum Remembered {
        case known(ActionClassification)
        /// Not remembered; the text's shape when it has one worth remembering.
        case unknown(SQLShape?)
    }

    /// The result remembered for this exact text, or for another text of its shape (`SQLShape`: the
    /// same statement with other constants).
    private func remembered(_ action: Action, settings: GuardSettings, normalize: Bool) -> Remembered {
        guard action.text.utf8.count <= Self.cachedTextLimit else { return .unknown(nil) }
        if let known = memory.lookup(action, normalize: normalize, settings: settings) { return .known(known) }
        guard action.kind == .sql, !normalize, let shape = SQLShape(action.text) else { return .unknown(nil) }
        if let known = memory.lookup(shape, settings: settings) { return .known(known) }
        return .unknown(shape)
    }

    /// Classifies on the calling thread (see `classifyHere`) and remembers the result: by text, and by
    /// shape when the classifier says it holds for every text of the shape.
    private func classifyAndRemember(_ action: Action, settings: GuardSettings, normalize: Bool, shape: SQLShape?) -> ActionClassification {
        let result: ActionClassification
        if let shape {
            let (classification, holdsForShape) = SQLClassifier(settings: settings).classify(action.text, shape: shape)
            result = classification
            if holdsForShape, let relative = shape.relative(classification) { memory.store(relative, for: shape, settings: settings) }
        } else {
            result = Self.classifyHere(action, settings: settings, normalize: normalize)
        }
        if action.text.utf8.count <= Self.cachedTextLimit { memory.store(result, for: action, normalize: normalize, settings: settings) }
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
            guard lhs.kind == rhs.kind, lhs.normalize == rhs.normalize, lhs.text.utf8.count == rhs.text.utf8.count else { return false }
            let same = lhs.text.utf8.withContiguousStorageIfAvailable { a in
                rhs.text.utf8.withContiguousStorageIfAvailable { b in a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 }
            }
            return (same ?? nil) ?? lhs.text.utf8.elementsEqual(rhs.text.utf8)
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
    /// By shape, with positions as token numbers (`SQLShape.relative`).
    private var shapes: [SQLShape.Key: ActionClassification] = [:]

    func lookup(_ action: Action, normalize: Bool, settings: GuardSettings) -> ActionClassification? {
        lock.lock()
        defer { lock.unlock() }
        guard settings == self.settings else { return nil }
        return entries[Key(kind: action.kind, text: action.text, normalize: normalize)]
    }

    func store(_ result: ActionClassification, for action: Action, normalize: Bool, settings: GuardSettings) {
        lock.lock()
        defer { lock.unlock() }
        adopt(settings)
        if entries.count >= ActionGuard.cacheEntries { entries.removeAll(keepingCapacity: true) }
        entries[Key(kind: action.kind, text: action.text, normalize: normalize)] = result
    }

    var shapeCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return shapes.count
    }

    func lookup(_ shape: SQLShape, settings: GuardSettings) -> ActionClassification? {
        lock.lock()
        let known = settings == self.settings ? shapes[shape.key] : nil
        lock.unlock()
        return known.map(shape.absolute)
    }

    func store(_ relative: ActionClassification, for shape: SQLShape, settings: GuardSettings) {
        lock.lock()
        defer { lock.unlock() }
        adopt(settings)
        if shapes.count >= ActionGuard.cacheEntries { shapes.removeAll(keepingCapacity: true) }
        shapes[shape.key] = relative
    }

    /// Forgets everything worked out under other settings.
    private func adopt(_ settings: GuardSettings) {
        guard settings != self.settings else { return }
        self.settings = settings
        entries.removeAll(keepingCapacity: true)
        shapes.removeAll(keepingCapacity: true)
    }
}
