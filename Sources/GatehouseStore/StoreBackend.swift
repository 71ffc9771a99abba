import GatehouseCore

/// What the store needs from a database: serialized write transactions, reads, and a health check.
protocol StoreBackend: Sendable {
    func write<T: Sendable>(_ body: @escaping @Sendable (StoreSession) async throws -> T) async throws -> T
    /// A write transaction that may run as long as it needs (schema migrations: an index built on a large
    /// table), with no time limit of the store's own.
    func migrate<T: Sendable>(_ body: @escaping @Sendable (StoreSession) async throws -> T) async throws -> T
    func read<T: Sendable>(_ body: @escaping @Sendable (StoreSession) async throws -> T) async throws -> T
    /// Throws when the store must not answer even from the cache (a broken or replaced database).
    func check() throws
    func close() async
    /// Readiness: the database answers a trivial query, quickly.
    func ping() async -> Bool
}

extension StoreBackend {
    func migrate<T: Sendable>(_ body: @escaping @Sendable (StoreSession) async throws -> T) async throws -> T {
        try await write(body)
    }
}
