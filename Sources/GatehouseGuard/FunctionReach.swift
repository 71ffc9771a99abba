import Foundation
import GatehouseCore

/// A function or procedure as the database's catalog (`pg_proc`) describes it.
public struct FunctionDefinition: Sendable, Equatable {
    public var oid: Int64
    /// Changes whenever the function's catalog row does (its `xmin`): `CREATE OR REPLACE`, `ALTER FUNCTION`.
    public var version: String
    public var schema: String
    public var name: String
    /// Its argument types, as `pg_get_function_identity_arguments` spells them.
    public var arguments: String
    public var language: String
    public var securityDefiner: Bool
    /// `pg_get_functiondef`, for a function or procedure written in SQL or PL/pgSQL; nil for any other
    /// language (C, internal, untrusted languages) and for aggregates, whose bodies the guard cannot read.
    public var definition: String?

    public init(oid: Int64, version: String, schema: String, name: String, arguments: String, language: String,
                securityDefiner: Bool, definition: String?) {
        self.oid = oid
        self.version = version
        self.schema = schema
        self.name = name
        self.arguments = arguments
        self.language = language
        self.securityDefiner = securityDefiner
        self.definition = definition
    }

    public var signature: String { "\(schema).\(name)(\(arguments))" }
}

/// Where function definitions are looked up: the database the statements run on.
public protocol FunctionCatalog: Sendable {
    /// At least every function or procedure a call by each of these names could reach: for a qualified
    /// name, those in that schema (`pg_temp`: every session's temporary schema); for a bare name, those in
    /// every schema but `pg_catalog` and `information_schema`, whatever the caller's `search_path`. More
    /// may come back; `FunctionCallSite.reaches` picks those a call reaches.
    func functions(named calls: [FunctionCallSite]) async throws -> [FunctionDefinition]
}

/// Judges a call by what the called function does: its body is looked up in the database's catalog
/// and classified like any statement, the functions it calls in turn (at most `maximumDepth` deep),
/// and every finding of a body counts against the statement that calls it. What a body classifies
/// to is remembered per function until the function's catalog row changes.
///
/// A body the guard cannot read (C, internal, untrusted languages, aggregates) adds nothing; nor
/// does a function the catalog does not show (one created in a transaction still open, which was
/// judged when it was created). Triggers, views, operators, casts and column defaults call functions
/// without naming them in the statement, and are not followed.
public final class FunctionReach: Sendable {
    public static let maximumDepth = 4
    static let memoryEntries = 10_000

    let catalog: any FunctionCatalog
    let actionGuard: ActionGuard
    private let memory = BodyMemory()

    public init(catalog: any FunctionCatalog, actionGuard: ActionGuard) {
        self.catalog = catalog
        self.actionGuard = actionGuard
    }

    /// `classification` with the findings of every body its calls reach. Throws when the catalog
    /// cannot be read: the caller then refuses the statement (fail closed).
    public func judge(_ classification: ActionClassification, settings: GuardSettings, for share: String = "") async throws -> ActionClassification {
        guard !classification.calls.isEmpty else { return classification }
        var extra: [Finding] = []
        var seen: Set<Int64> = []
        // Each call still to look up, with the call in the statement it came from and the chain that led to it.
        var frontier = classification.calls.map { Pending(call: $0, origin: $0, chain: "") }
        for _ in 0..<Self.maximumDepth {
            guard !frontier.isEmpty else { break }
            let found = try await catalog.functions(named: Array(Set(frontier.map(\.call.key))).map(\.site))
            var next: [Pending] = []
            for pending in frontier {
                for function in found where pending.call.reaches(function) && seen.insert(function.oid).inserted {
                    guard let definition = function.definition else { continue }
                    let body = await bodyClassification(function, definition: definition, settings: settings, for: share)
                    let chain = pending.chain + function.signature + (function.securityDefiner ? " (SECURITY DEFINER)" : "")
                    for finding in body.findings {
                        extra.append(Finding(category: finding.category, level: finding.level, statement: pending.origin.statement,
                                             position: pending.origin.position,
                                             detail: "calls \(chain), whose body: \(Self.withoutBodyLabel(finding.detail))"))
                    }
                    next += body.calls.map { Pending(call: $0, origin: pending.origin, chain: chain + " → ") }
                }
            }
            frontier = next
        }
        // Calls still to follow: only those that reach a function not yet read are too deep (a call of
        // a built-in such as now() reaches nothing the catalog shows).
        if !frontier.isEmpty {
            let found = try await catalog.functions(named: Array(Set(frontier.map(\.call.key))).map(\.site))
            frontier = frontier.filter { pending in found.contains { pending.call.reaches($0) && !seen.contains($0.oid) } }
        }
        if let deeper = frontier.first {
            extra.append(Finding(category: "too_complex", level: settings.level(of: "too_complex", kind: .sql),
                                 statement: deeper.origin.statement, position: deeper.origin.position,
                                 detail: "calls \(deeper.chain)\(deeper.call.qualifiedName)(): functions calling functions more than \(Self.maximumDepth) deep, which the guard does not follow"))
        }
        guard !extra.isEmpty else { return classification }
        return ActionClassification(kind: classification.kind, findings: classification.findings + extra, statements: classification.statements,
                                    normalized: classification.normalized, calls: classification.calls)
    }

    private func bodyClassification(_ function: FunctionDefinition, definition: String, settings: GuardSettings, for share: String) async -> ActionClassification {
        if let known = memory.lookup(function, settings: settings) { return known }
        let result = await actionGuard.classifyDefinition(definition, settings: settings, for: share)
        memory.store(result, for: function, settings: settings)
        return result
    }

    static func withoutBodyLabel(_ detail: String) -> String {
        detail.hasPrefix("in function body: ") ? String(detail.dropFirst("in function body: ".count)) : detail
    }

    private struct Pending {
        var call: FunctionCallSite
        var origin: FunctionCallSite
        var chain: String
    }
}

extension FunctionCallSite {
    /// A call by name as the catalog is asked about it (where it stands does not matter).
    struct Key: Hashable {
        var schema: String?
        var name: String
        var attributeNotation = false
        var site: FunctionCallSite { FunctionCallSite(schema: schema, name: name, statement: 1, position: 0, attributeNotation: attributeNotation) }
    }

    var key: Key { Key(schema: schema, name: name) }

    /// Whether a call by this name can reach `function` (see `FunctionCatalog.functions(named:)`); in
    /// attribute notation, any function with an argument (the row is the first; PostgreSQL fills the
    /// others from their defaults, so `o.purge` calls `purge(o orders, n int DEFAULT 0)`).
    func reaches(_ function: FunctionDefinition) -> Bool {
        guard function.name == name else { return false }
        if attributeNotation, function.arguments.isEmpty { return false }
        switch schema {
        case nil: return !["pg_catalog", "information_schema"].contains(function.schema)
        case "pg_temp": return function.schema.hasPrefix("pg_temp_")
        case let schema?: return function.schema == schema
        }
    }
}

/// Body classifications by function, valid while the function's catalog row and the guard settings
/// are those it was made under.
private final class BodyMemory: @unchecked Sendable {
    private let lock = NSLock()
    private var settings = GuardSettings()
    private var entries: [Int64: (version: String, classification: ActionClassification)] = [:]

    func lookup(_ function: FunctionDefinition, settings: GuardSettings) -> ActionClassification? {
        lock.lock()
        defer { lock.unlock() }
        guard settings == self.settings, let entry = entries[function.oid], entry.version == function.version else { return nil }
        return entry.classification
    }

    func store(_ classification: ActionClassification, for function: FunctionDefinition, settings: GuardSettings) {
        lock.lock()
        defer { lock.unlock() }
        if settings != self.settings {
            self.settings = settings
            entries.removeAll(keepingCapacity: true)
        }
        if entries.count >= FunctionReach.memoryEntries { entries.removeAll(keepingCapacity: true) }
        entries[function.oid] = (function.version, classification)
    }
}
