@preconcurrency import Dispatch
import Foundation
import GatehouseCore
import GatehouseStore
import Hummingbird
import Logging
import NIOCore
import OpenAPIHummingbird
import ServiceLifecycle

/// Builds the HTTP application around an `AccessService`.
public enum GatehouseHTTP {
    public static func makeRouter(service: AccessService, logger: Logger) throws -> Router<GatehouseRequestContext> {
        let router = Router(context: GatehouseRequestContext.self)
        router.add(middleware: ProblemMiddleware(logger: logger))
        router.add(middleware: RequestInfoMiddleware())
        try APIHandler(service: service).registerHandlers(on: router)
        return router
    }

    public static func makeApplication(service: AccessService, host: String, port: Int, logger: Logger,
                                       services: [any Service] = [],
                                       onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        let router = try makeRouter(service: service, logger: logger)
        return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "gatehouse"),
                           services: services, onServerRunning: onServerRunning, logger: logger)
    }
}

/// Periodically marks expired grants and requests. Expiry itself is enforced at decision time;
/// the sweeper only records and announces it.
public struct Sweeper: Service {
    let service: AccessService
    let interval: Duration
    let logger: Logger

    public init(service: AccessService, interval: Duration, logger: Logger) {
        self.service = service
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let swept = try await service.sweep()
                if swept.grants + swept.requests > 0 {
                    logger.info("sweeper ended expired items", metadata: ["grants": "\(swept.grants)", "requests": "\(swept.requests)"])
                }
            } catch {
                logger.warning("sweep failed; will retry", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: interval)
        }
    }
}

/// Re-reads the policy file on SIGHUP, keeping the running policy if the new one is invalid.
public struct PolicyReloadOnHangup: Service {
    let policies: PolicyHolder
    let logger: Logger

    public init(policies: PolicyHolder, logger: Logger) {
        self.policies = policies
        self.logger = logger
    }

    public func run() async throws {
        let hangups = AsyncStream<Void> { continuation in
            signal(SIGHUP, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: SIGHUP)
            source.setEventHandler { continuation.yield() }
            continuation.onTermination = { _ in source.cancel() }
            source.resume()
        }
        for await _ in hangups.cancelOnGracefulShutdown() {
            let result = policies.reload(logger: logger)
            for problem in result.problems { logger.warning("\(problem)") }
        }
    }
}
