import Foundation
import GatehouseApp
import GatehouseCore
import GatehouseStore
import Prometheus
import Synchronization

/// What `/metrics` exposes, in the Prometheus text format. One registry per service, so servers
/// started side by side (as the tests do) keep separate counts. Every labelled series the server
/// knows of is there from the start, at zero, so dashboards and alerts can be written before the
/// first event; the process's own figures and the store's gauges are read at each scrape.
public final class GatehouseMetrics: AppMetrics {
    let registry = PrometheusCollectorRegistry()

    public init(version: String = BuildInfo.version) {
        proxyStatements = Self.makeProxyStatements(registry)
        store = Self.makeStoreGauges(registry)
        registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "gatehouse_build_info", helpText: "The running Gatehouse: always 1, its version as a label"),
                           labels: [("version", version)]).set(1.0)
        for (outcome, reason) in Self.antiSpamSeries { _ = antiSpamCounter(outcome, reason: reason) }
        for kind in ["request", "digest", "report", "break_glass"] { _ = notificationCounter(kind) }
        for outcome in ["delivered", "retry", "failed"] { _ = webhookCounter(outcome) }
        for outcome in ["accepted", "repeated", "refused", "approved", "denied"] { _ = slackCounter(outcome) }
        for outcome in ["started", "refused", "over_address_cap", "ended"] { _ = proxySessionCounter(outcome) }
        _ = proxySessionsActive
    }

    /// The anti-spam outcomes and reasons the server reports (`AppMetrics.antiSpam`).
    static let antiSpamSeries: [(String, String)] =
        ["per-principal", "per-resource", "per-source-ip", "denial-cooldown", "throttle", "pending"].map { ("limited", $0) }
        + [("deduplicated", "identical_pending"), ("blocked", "score"), ("blocked", "report"), ("refused", "break_glass_rate"),
           ("quarantined", "blocked"), ("quarantined", "report"), ("quarantined", "shared_reason")]
        + ["throttled", "extra_approval", "quarantined"].flatMap { outcome in
            (SpamSignal.allCases.map(\.rawValue) + (outcome == "quarantined" ? [] : ["score"])).map { (outcome, $0) }
        }

    /// The event counters: family name (`_total` added), help, and the label the value goes under.
    private enum Family {
        static let antiSpam = ("gatehouse_antispam", "Requests limited, throttled, quarantined or blocked by the anti-spam policy")
        static let notifications = ("gatehouse_notifications", "Notifications written to the outbox, by kind")
        static let webhooks = ("gatehouse_webhook_attempts", "Webhook delivery attempts, by outcome")
        static let slack = ("gatehouse_slack_interactions", "Slack interactions (button clicks and forms), by outcome")
        static let proxySessions = ("gatehouse_proxy_sessions", "Guard proxy sessions by outcome (started, refused, over_address_cap: a connection closed unread over max_connections_per_address, ended)")
    }

    /// One counter series (made, at zero, the first time it is asked for).
    private func counter(_ family: (name: String, help: String), _ labels: [(String, String)]) -> Counter {
        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: family.name, unitName: "total", helpText: family.help), labels: labels)
    }

    private func antiSpamCounter(_ outcome: String, reason: String) -> Counter {
        counter(Family.antiSpam, [("outcome", outcome), ("reason", reason)])
    }

    private func notificationCounter(_ kind: String) -> Counter { counter(Family.notifications, [("kind", kind)]) }
    private func webhookCounter(_ outcome: String) -> Counter { counter(Family.webhooks, [("outcome", outcome)]) }
    private func slackCounter(_ outcome: String) -> Counter { counter(Family.slack, [("outcome", outcome)]) }
    private func proxySessionCounter(_ outcome: String) -> Counter { counter(Family.proxySessions, [("outcome", outcome)]) }

    private var proxySessionsActive: Gauge {
        registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "gatehouse_proxy_sessions_active", helpText: "Guard proxy sessions open now"))
    }

    /// An anti-spam outcome (`limited`, `throttled`, `extra_approval`, `quarantined`, `blocked`,
    /// `deduplicated`) and why (the limit's policy name, `score` or `report`).
    public func antiSpam(_ outcome: String, reason: String) {
        antiSpamCounter(outcome, reason: reason).increment()
    }

    /// A notification put in the outbox (`request`, `digest`, `report`).
    public func notification(_ kind: String) {
        notificationCounter(kind).increment()
    }

    /// A webhook delivery attempt: `delivered`, `retry` (failed, tried again later) or `failed` (given up).
    public func webhook(_ outcome: String) {
        webhookCounter(outcome).increment()
    }

    /// A Slack interaction: `accepted`, `repeated`, `refused`, `approved` or `denied`.
    public func slackInteraction(_ outcome: String) {
        slackCounter(outcome).increment()
    }

    // MARK: guard proxy

    private static let checkBuckets: [Duration] = [.microseconds(20), .microseconds(50), .microseconds(100), .microseconds(250),
                                                   .microseconds(500), .milliseconds(1), .milliseconds(2.5), .milliseconds(5),
                                                   .milliseconds(10), .milliseconds(25), .milliseconds(100), .seconds(1)]

    /// A proxy session started, was refused at sign-in, or ended.
    public func proxySession(_ outcome: String) {
        proxySessionCounter(outcome).increment()
        guard outcome == "started" || outcome == "ended" else { return }
        proxySessionsActive.increment(by: outcome == "started" ? 1 : -1)
    }

    private let proxyStatements: (allowed: Counter, refused: Counter, time: DurationHistogram)

    private static func makeProxyStatements(_ registry: PrometheusCollectorRegistry) -> (allowed: Counter, refused: Counter, time: DurationHistogram) {
        let statements = MetricNameDescriptor(metricName: "gatehouse_proxy_statements", unitName: "total",
                                              helpText: "Statements checked by the guard proxy, by outcome")
        return (registry.makeCounter(descriptor: statements, labels: [("outcome", "allowed")]),
                registry.makeCounter(descriptor: statements, labels: [("outcome", "refused")]),
                registry.makeDurationHistogram(descriptor: MetricNameDescriptor(metricName: "gatehouse_proxy_check", unitName: "seconds",
                                                                                helpText: "Time the guard proxy added to a statement to decide it"),
                                               buckets: Self.checkBuckets))
    }

    /// A statement checked by the proxy, and the time the check added. (Per statement: the metric
    /// objects are made once.)
    public func proxyStatement(allowed: Bool, checkTime: Duration) {
        let metrics = proxyStatements
        (allowed ? metrics.allowed : metrics.refused).increment()
        metrics.time.record(checkTime)
    }

    // MARK: HTTP

    private static let httpBuckets: [Duration] = [.milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                                                  .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
                                                  .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60)]

    private struct Route: Hashable {
        var template: String
        var method: String
    }

    /// The metric objects of each route and method (and each status seen), made once each.
    private let http = Mutex<(durations: [Route: DurationHistogram], counts: [Route: [Int: Counter]])>(([:], [:]))

    private func durations(_ route: Route) -> DurationHistogram {
        if let known = http.withLock({ $0.durations[route] }) { return known }
        let made = registry.makeDurationHistogram(descriptor: MetricNameDescriptor(metricName: "gatehouse_http_request_duration", unitName: "seconds",
                                                                                   helpText: "Time to answer an HTTP request (long polls included), by route template and method"),
                                                  labels: [("route", route.template), ("method", route.method)], buckets: Self.httpBuckets)
        http.withLock { $0.durations[route] = made }
        return made
    }

    private func count(_ route: Route, status: Int) -> Counter {
        if let known = http.withLock({ $0.counts[route]?[status] }) { return known }
        let made = registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "gatehouse_http_requests", unitName: "total",
                                                                         helpText: "HTTP requests answered, by route template, method and status"),
                                        labels: [("route", route.template), ("method", route.method), ("status", "\(status)")])
        http.withLock { $0.counts[route, default: [:]][status] = made }
        return made
    }

    /// Registers a route's latency series at zero (its `_count` counts its requests from the start;
    /// the counter by status has a series per status once one is answered).
    func registerRoute(_ template: String, method: String) {
        _ = durations(Route(template: template, method: method))
    }

    /// An HTTP request answered. `template` is the route the router matched (a bounded set), never the path.
    func httpRequest(route template: String, method: String, status: Int, duration: Duration) {
        let route = Route(template: template, method: method)
        count(route, status: status).increment()
        durations(route).record(duration)
    }

    // MARK: the store's gauges

    private struct StoreGauges {
        var pending: Gauge
        var quarantined: Gauge
        var grants: Gauge
        var queue: Gauge
        var oldest: Gauge
    }

    private let store: StoreGauges

    private static func makeStoreGauges(_ registry: PrometheusCollectorRegistry) -> StoreGauges {
        let waiting = MetricNameDescriptor(metricName: "gatehouse_requests_waiting", helpText: "Requests waiting for a decision (pending) or a review (quarantined)")
        return StoreGauges(
            pending: registry.makeGauge(descriptor: waiting, labels: [("state", "pending")]),
            quarantined: registry.makeGauge(descriptor: waiting, labels: [("state", "quarantined")]),
            grants: registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "gatehouse_grants_active", helpText: "Grants in force now")),
            queue: registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "gatehouse_outbox_queue_depth",
                                                                       helpText: "Webhook and Slack deliveries waiting (neither delivered nor given up)")),
            oldest: registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "gatehouse_outbox_oldest_age", unitName: "seconds",
                                                                        helpText: "Age of the oldest delivery waiting (0 when none waits)")))
    }

    /// The store's figures as of this scrape.
    func update(_ counts: OperationalCounts, at now: Date) {
        store.pending.set(Double(counts.pendingRequests))
        store.quarantined.set(Double(counts.quarantinedRequests))
        store.grants.set(Double(counts.activeGrants))
        store.queue.set(Double(counts.queuedDeliveries))
        store.oldest.set(counts.oldestQueuedDelivery.map { max(0, now.timeIntervalSince($0)) } ?? 0)
    }

    public func render() -> String {
        registry.emitToString() + ProcessMetrics.render()
    }
}
