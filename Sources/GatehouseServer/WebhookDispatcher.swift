import AsyncHTTPClient
import Foundation
import GatehouseApp
import GatehouseCore
import GatehouseStore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// Runs the webhook outbox: follows the audit log, sends due digests, delivers due messages.
public struct WebhookDispatcher: Service {
    /// Events read and messages sent per round.
    static let batch = 64
    let service: UseCases
    let interval: Duration
    let logger: Logger

    public init(service: UseCases, interval: Duration = .milliseconds(500), logger: Logger) {
        self.service = service
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        var configuration = HTTPClient.Configuration()
        // A redirect would carry the message (and its signature) somewhere the policy never named.
        configuration.redirectConfiguration = .disallow
        configuration.decompression = .disabled
        // No endpoint may hold a connection longer than the longest attempt allowed.
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(60))
        // A refused connection fails the attempt at once: the outbox's own retries (with the policy's backoff)
        // try again, rather than the client trying until the attempt's deadline.
        configuration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let underWay = UnderWay()
        // Deliveries run beside the rounds, not inside them: an endpoint that answers late (or never, until its
        // timeout) holds only its own messages, while the rounds go on claiming, sending and recording the
        // others'. Shutting down waits for the deliveries under way (each bounded by its timeout) and records them.
        await withDiscardingTaskGroup { group in
            var rounds = 0
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                do {
                    rounds += 1
                    if rounds % 7200 == 1 {
                        // About hourly: delivered and given-up messages are kept a week.
                        try await service.outbox.pruneDeliveries(olderThan: 7 * 86_400)
                    }
                    await record(underWay.finished())
                    let webhooks = service.policies.policy.notifications.webhooks
                    let slackTimeout = service.policies.policy.notifications.slack.map { Double($0.timeout.seconds) * 4 } ?? 0
                    // Claims are taken in the round's last write, just before sending: they hold for the longest
                    // attempt and the round that records it.
                    let lease = max(webhooks.map { Double($0.timeout.seconds) }.max() ?? 10, slackTimeout) + 5
                    // Small batches keep each write transaction (and the writer lock) short. Messages already due
                    // (retries, and new ones a full round left unclaimed) are claimed first, then new ones as they
                    // are queued, up to the batch and the room for deliveries under way, in one write.
                    try await service.outbox.flushDigests()
                    let room = min(Self.batch, Self.maximumUnderWay - underWay.count)
                    let (queued, due) = try await service.outbox.queueMessages(limit: Self.batch, claimFor: lease, claimAtMost: room,
                                                                                claimDue: true)
                    for delivery in due {
                        underWay.started()
                        group.addTask { underWay.ended(await self.deliver(delivery, client: client)) }
                    }
                    // A full batch means more is waiting: go on at once; otherwise poll again shortly.
                    if queued == Self.batch || (due.count >= Self.batch && underWay.count < Self.maximumUnderWay) { continue }
                } catch {
                    logger.warning("webhook outbox round failed; will retry", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: interval)
            }
        }
        await record(underWay.finished())
        try? await client.shutdown()
    }

    /// At most this many messages are sent at once (each endpoint's connections are pooled, a few per host).
    static let maximumUnderWay = 256

    /// The outcome of deliveries that ended since the last round, recorded in one write.
    private func record(_ attempts: [Outbox.WebhookAttempt]) async {
        guard !attempts.isEmpty else { return }
        do {
            try await service.outbox.recordAttempts(attempts)
        } catch {
            // The claims run out and the messages are tried again (same ids).
            logger.warning("webhook attempts could not be recorded", metadata: ["count": "\(attempts.count)", "error": "\(error)"])
        }
    }

    /// Deliveries under way, and the attempts that ended and wait to be recorded.
    final class UnderWay: Sendable {
        private let state = Mutex<(count: Int, ended: [Outbox.WebhookAttempt])>((0, []))

        var count: Int { state.withLock { $0.count } }
        func started() { state.withLock { $0.count += 1 } }
        func ended(_ attempt: Outbox.WebhookAttempt) {
            state.withLock {
                $0.count -= 1
                $0.ended.append(attempt)
            }
        }
        func finished() -> [Outbox.WebhookAttempt] {
            state.withLock { state in
                defer { state.ended = [] }
                return state.ended
            }
        }
    }

    func deliver(_ delivery: WebhookDelivery, client: HTTPClient) async -> Outbox.WebhookAttempt {
        let policy = service.policies.policy
        var status: Int?
        var failure: String?
        if delivery.endpoint.hasPrefix(SlackOperation.endpointPrefix), let slack = policy.notifications.slack {
            // A post may take two calls and an update one per copy: each call has its own timeout.
            (status, failure) = await SlackSender(service: service, logger: logger).deliver(delivery, settings: slack)
        } else if let endpoint = policy.notifications.webhooks.first(where: { $0.name == delivery.endpoint }) {
            // One deadline for the whole attempt, headers and body: a slow endpoint costs its own
            // timeout, never the outbox.
            let limit = Double(endpoint.timeout.seconds)
            (status, failure) = await withTaskGroup(of: (Int?, String?)?.self) { group in
                group.addTask { await self.attempt(delivery, endpoint: endpoint, client: client) }
                group.addTask {
                    try? await Task.sleep(for: .seconds(limit))
                    return nil
                }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first ?? (nil, nil)
            }
            if status == nil, failure == nil {
                // The HTTP client tries a refused connection again until the deadline: ask the address once.
                failure = await Self.unreachable(endpoint.url) ?? "no complete answer within \(endpoint.timeout)"
            }
        }
        if let failure { logger.warning("webhook delivery failed", metadata: ["id": "\(delivery.id)", "endpoint": "\(delivery.endpoint)", "error": "\(failure)"]) }
        return Outbox.WebhookAttempt(delivery: delivery, status: status, error: failure)
    }

    /// Why the endpoint's address takes no connection, when it says so within a second (refused, or a name
    /// that does not resolve); nil when it takes one or says nothing.
    static func unreachable(_ url: String) async -> String? {
        guard let (host, port) = address(url) else { return nil }
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(1))
                .connect(host: host, port: port).get()
            try? await channel.close()
            return nil
        } catch {
            return said(error, url: url)
        }
    }

    /// A connection failure as the outbox records it: refused, or a name that does not resolve; nil otherwise.
    static func said(_ error: any Error, url: String) -> String? {
        guard let (host, port) = address(url) else { return nil }
        if let failure = error as? NIOConnectionError {
            if failure.connectionErrors.isEmpty, failure.dnsAError != nil || failure.dnsAAAAError != nil {
                return "the host name \(host) cannot be resolved"
            }
            return failure.connectionErrors.contains { ($0.error as? IOError)?.errnoCode == ECONNREFUSED }
                ? "connection refused by \(host):\(port)" : nil
        }
        return (error as? IOError)?.errnoCode == ECONNREFUSED ? "connection refused by \(host):\(port)" : nil
    }

    /// Whether the endpoint ended the connection before its answer was complete (closed, or reset).
    static func hungUp(_ error: any Error) -> Bool {
        if let error = error as? HTTPClientError { return error == .remoteConnectionClosed }
        if let error = error as? IOError { return [ECONNRESET, EPIPE].contains(error.errnoCode) }
        // The request written (or its answer read) just as the endpoint closed: which of these the client says
        // depends on the moment the close is seen.
        if let error = error as? ChannelError { return error == .ioOnClosedChannel || error == .eof || error == .outputClosed }
        return false
    }

    /// The host (without an IPv6 literal's brackets) and port of an endpoint's URL.
    static func address(_ url: String) -> (host: String, port: Int)? {
        guard let components = URLComponents(string: url), var host = components.host else { return nil }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, components.port ?? (components.scheme == "https" ? 443 : 80))
    }

    func attempt(_ delivery: WebhookDelivery, endpoint: WebhookEndpoint, client: HTTPClient) async -> (Int?, String?) {
        var status: Int?
        var failure: String?
        do {
            var request = HTTPClientRequest(url: endpoint.url)
            request.method = .POST
            let body = Array(delivery.body.utf8)
            request.headers.add(name: "content-type", value: "application/json")
            request.headers.add(name: "user-agent", value: "gatehouse-webhooks")
            request.headers.add(name: "webhook-id", value: delivery.id)
            let timestamp = Int64(service.clock.now().timeIntervalSince1970)
            request.headers.add(name: "webhook-timestamp", value: "\(timestamp)")
            if let key = try endpoint.signingKey() {
                request.headers.add(name: "webhook-signature", value: StandardWebhooks.signature(id: delivery.id, timestamp: timestamp, body: body, key: key))
            }
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await client.execute(request, timeout: .seconds(endpoint.timeout.seconds))
            status = Int(response.status.code)
            _ = try? await response.body.collect(upTo: 64 * 1024)
        } catch let error as WebhookSecretError {
            failure = error.message
        } catch let error as HTTPClientError where [.deadlineExceeded, .readTimeout, .connectTimeout].contains(error) {
            // The HTTP client's own deadline came first (on a busy machine it may): the same outcome as ours.
            failure = await Self.unreachable(endpoint.url) ?? "no complete answer within \(endpoint.timeout)"
        } catch where Self.hungUp(error) {
            failure = "the endpoint closed the connection before a complete answer"
        } catch {
            // The HTTP client may give up on a refused connection itself: said the same way as the probe says it.
            failure = Self.said(error, url: endpoint.url) ?? "\(error)"
        }
        return (status, failure)
    }
}
