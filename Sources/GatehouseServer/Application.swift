import Foundation
import GatehouseAPI
import GatehouseApp
import GatehouseCore
import GatehouseStore
import Hummingbird
import Logging
import NIOCore
import OpenAPIHummingbird
import OpenAPIRuntime
import ServiceLifecycle
import UnixSignals

/// Builds the HTTP application around an `UseCases`.
public enum GatehouseHTTP {
    /// Why `serve` could not listen on `host`:`port`, or nil: asked before anything starts (the store is not
    /// even opened), so that it can say so plainly rather than fail at the bind after its services have started.
    public static func listenProblem(host: String, port: Int) -> String? {
        let fix = "choose another (--host, --port, GATEHOUSE_HOST, GATEHOUSE_PORT)"
        guard let address = try? SocketAddress.makeAddressResolvingHost(host, port: port) else {
            return "cannot listen on \(host):\(port): `\(host)` is not an IP address and its name cannot be resolved; use an address of this machine (127.0.0.1, 0.0.0.0 for every one, :: for IPv6) or \(fix)"
        }
        let descriptor = socket(Int32(address.protocol.rawValue), Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var on: Int32 = 1
        _ = setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        guard address.withSockAddr({ bind(descriptor, $0, socklen_t($1)) }) != 0 else { return nil }
        switch errno {
        case EADDRINUSE: return "cannot listen on \(host):\(port): something is already listening there (another gatehouse?); stop it or \(fix)"
        case EADDRNOTAVAIL: return "cannot listen on \(host):\(port): \(host) is not an address of this machine; \(fix)"
        case EACCES: return "cannot listen on \(host):\(port): ports below 1024 need privileges this process lacks; \(fix)"
        default: return nil
        }
    }

    public static func makeRouter(service: UseCases, metrics: GatehouseMetrics, logger: Logger,
                                  trustedProxies: TrustedProxies = .none) throws -> Router<GatehouseRequestContext> {
        let router = Router(context: GatehouseRequestContext.self, options: .autoGenerateHeadEndpoints)
        router.add(middleware: ClientAddressMiddleware(trusted: trustedProxies))
        let routes = RouteTable()
        router.add(middleware: ObservabilityMiddleware(metrics: metrics, logger: logger, table: routes))
        router.add(middleware: ProblemMiddleware(logger: logger))
        router.add(middleware: ContractMiddleware(table: routes))
        router.add(middleware: RequestInfoMiddleware(tokens: service.tokens))
        let provider = ProviderLink(service: service, logger: logger)
        let api = APIHandler(service: service, provider: provider)
        router.add(middleware: CheckFastPath(handler: api))
        router.add(middleware: DuplicateNamesRefused())
        try WebInbox(service: service, provider: provider, logger: logger).register(on: router)
        SlackInteractions(service: service, logger: logger).register(on: router)
        try api.registerHandlers(on: RecordingTransport(router: router, table: routes),
                                                                               configuration: .init(dateTranscoder: PreciseDateTranscoder(), jsonEncodingOptions: [.sortedKeys]),
                                                                               middlewares: [EmptyBodyIsNoBody()])
        for route in routes.all { metrics.registerRoute(route.path, method: route.method.rawValue) }
        metrics.registerRoute("/metrics", method: "GET")
        // Prometheus text format; no principal names in labels. The store's gauges are read now; when
        // the store cannot answer, they keep their last values (and /readyz says why).
        router.get("/metrics") { _, _ -> Response in
            if let (counts, now) = try? await service.housekeeping.operationalCounts() { metrics.update(counts, at: now) }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: metrics.render())))
        }
        return router
    }

    public static func makeApplication(service: UseCases, metrics: GatehouseMetrics, host: String, port: Int, logger: Logger,
                                       limits: HTTPLimits = HTTPLimits(), trustedProxies: TrustedProxies = .none, services: [any Service] = [],
                                       onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        let router = try makeRouter(service: service, metrics: metrics, logger: logger, trustedProxies: trustedProxies)
        // A trusted reverse proxy carries many clients' connections: it may hold more (`ConnectionCounts.proxyFactor`).
        let counts = ConnectionCounts(limit: limits.connectionsPerAddress, proxies: trustedProxies)
        // Idle connections are closed after 35 s; a request must arrive whole within `limits.requestDeadline` (30 s) of
        // its head, and is answered 408 when it does not, whether its body stalled (the deadline comes before the idle
        // timeout) or was trickled a byte at a time (which resets the idle timeout every time).
        return Application(router: router,
                           server: .http1(configuration: .init(additionalChannelHandlers: [ConnectionPersistenceInstaller(),
                                                                                           ConnectionLimiter(counts: counts, deadline: limits.requestDeadline),
                                                                                           ParseErrorAnswer(), ContinueAnswer()],
                                                               idleTimeout: limits.idleTimeout)),
                           configuration: .init(address: .hostname(host, port: port), serverName: "gatehouse"),
                           services: services, onServerRunning: onServerRunning, logger: logger)
    }
}

/// Periodically marks expired grants and requests. Expiry itself is enforced at decision time;
/// the sweeper only records and announces it.
public struct Sweeper: Service {
    let service: UseCases
    let interval: Duration
    /// How long what is kept only for a while is kept (`Housekeeping.pruneRetained`).
    let retention: TimeInterval
    let logger: Logger

    public init(service: UseCases, interval: Duration, retention: TimeInterval = Housekeeping.retention, logger: Logger) {
        self.service = service
        self.interval = interval
        self.retention = retention
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                // The lease outlives a few missed sweeps, not a stopped instance.
                let swept = try await service.housekeeping.sweep(lease: max(10, 3 * Double(interval.components.seconds)), retention: retention)
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
    let service: UseCases
    let logger: Logger

    public init(service: UseCases, logger: Logger) {
        self.service = service
        self.logger = logger
    }

    public func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        for await _ in hangups.cancelOnGracefulShutdown() {
            do {
                let result = try await service.housekeeping.reloadPolicy(actor: "system (SIGHUP)")
                for problem in result.problems { logger.warning("\(problem)") }
            } catch {
                logger.error("policy reload could not be recorded", metadata: ["error": "\(error)"])
            }
        }
    }
}
