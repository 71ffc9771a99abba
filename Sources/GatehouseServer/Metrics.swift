import GatehouseApp
import Prometheus

/// The counters `/metrics` exposes, in the Prometheus text format. One registry per service, so
/// servers started side by side (as the tests do) keep separate counts.
public final class GatehouseMetrics: AppMetrics {
    let registry = PrometheusCollectorRegistry()

    public init() {
        proxyStatements = Self.makeProxyStatements(registry)
    }

    /// An anti-spam outcome (`limited`, `throttled`, `extra_approval`, `quarantined`, `blocked`,
    /// `deduplicated`) and why (the limit's policy name, `score` or `report`).
    public func antiSpam(_ outcome: String, reason: String) {
        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "gatehouse_antispam", unitName: "total",
                                                              helpText: "Requests limited, throttled, quarantined or blocked by the anti-spam policy"),
                             labels: [("outcome", outcome), ("reason", reason)]).increment()
    }

    /// A notification put in the outbox (`request`, `digest`, `report`).
    public func notification(_ kind: String) {
        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "gatehouse_notifications", unitName: "total",
                                                              helpText: "Notifications written to the outbox, by kind"),
                             labels: [("kind", kind)]).increment()
    }

    /// A webhook delivery attempt: `delivered`, `retry` (failed, tried again later) or `failed` (given up).
    public func webhook(_ outcome: String) {
        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "gatehouse_webhook_attempts", unitName: "total",
                                                              helpText: "Webhook delivery attempts, by outcome"),
                             labels: [("outcome", outcome)]).increment()
    }

    /// A Slack interaction: `accepted`, `repeated`, `refused`, `approved` or `denied`.
    public func slackInteraction(_ outcome: String) {
        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "gatehouse_slack_interactions", unitName: "total",
                                                              helpText: "Slack interactions (button clicks and forms), by outcome"),
                             labels: [("outcome", outcome)]).increment()
    }

    // MARK: guard proxy

    private static let checkBuckets: [Duration] = [.microseconds(20), .microseconds(50), .microseconds(100), .microseconds(250),
                                                   .microseconds(500), .milliseconds(1), .milliseconds(2.5), .milliseconds(5),
                                                   .milliseconds(10), .milliseconds(25), .milliseconds(100), .seconds(1)]

    /// A proxy session started, was refused at sign-in, or ended.
    public func proxySession(_ outcome: String) {
        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "gatehouse_proxy_sessions", unitName: "total",
                                                              helpText: "Guard proxy sessions by outcome (started, refused, ended)"),
                             labels: [("outcome", outcome)]).increment()
        guard outcome != "refused" else { return }
        registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "gatehouse_proxy_sessions_active", helpText: "Guard proxy sessions open now"))
            .increment(by: outcome == "started" ? 1 : -1)
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

    public func render() -> String {
        registry.emitToString()
    }
}
