import GatehouseCore

/// What the store needs from a database: serialized write transactions, reads, and a health check.
protocol StoreBackend: Sendable {
    func write<T: Sendable>(_ body: @escaping @Sendable (StoreSession) async throws -> T) async throws -> T
    func read<T: Sendable>(_ body: @escaping @Sendable (StoreSession) async throws -> T) async throws -> T
    /// Throws when the store must not answer even from the cache (a broken or replaced database).
    func check() throws
    func close() async
    /// Readiness: the database answers a trivial query, quickly.
    func ping() async -> Bool
}
