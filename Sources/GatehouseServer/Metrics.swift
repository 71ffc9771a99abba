import Prometheus

/// The counters `/metrics` exposes, in the Prometheus text format. One registry per service, so
/// servers started side by side (as the tests do) keep separate counts.
public final class GatehouseMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()

    public init() {}

    /// An anti-spam outcome (`limited`, `throttled`, `extra_approval`, `quarantined`, `blocked`,
    /// `deduplicated`) and why (the limit's policy name, `score` or `report`).
    func antiSpam(_ outcome: String, reason: String) {
        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "gatehouse_antispam", unitName: "total",
                                                              helpText: "Requests limited, throttled, quarantined or blocked by the anti-spam policy"),
                             labels: [("outcome", outcome), ("reason", reason)]).increment()
    }

    /// A notification put in the outbox (`request`, `digest`, `report`).
    func notification(_ kind: String) {
        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "gatehouse_notifications", unitName: "total",
                                                              helpText: "Notifications written to the outbox, by kind"),
                             labels: [("kind", kind)]).increment()
    }

    public func render() -> String {
        registry.emitToString()
    }
}
