/// What the use cases count. The HTTP server exposes these in the Prometheus format; the
/// application layer only names the events, so it links no metrics backend.
public protocol AppMetrics: Sendable {
    /// An anti-spam outcome (`limited`, `throttled`, `extra_approval`, `quarantined`, `blocked`,
    /// `deduplicated`, `refused`) and why (the limit's policy name, the top signal, `score` or `report`).
    func antiSpam(_ outcome: String, reason: String)
    /// A notification put in the outbox (`request`, `digest`, `report`, `break_glass`).
    func notification(_ kind: String)
    /// A webhook delivery attempt: `delivered`, `retry` or `failed`.
    func webhook(_ outcome: String)
    /// A Slack interaction: `accepted`, `repeated`, `refused`, `approved` or `denied`.
    func slackInteraction(_ outcome: String)
    /// A proxy session `started`, `refused` at sign-in, or `ended`.
    func proxySession(_ outcome: String)
    /// A statement checked by the proxy, and the time the check added.
    func proxyStatement(allowed: Bool, checkTime: Duration)
}

/// Counts nothing: for tools that run a use case once (the CLI's store commands).
public struct NoMetrics: AppMetrics {
    public init() {}
    public func antiSpam(_ outcome: String, reason: String) {}
    public func notification(_ kind: String) {}
    public func webhook(_ outcome: String) {}
    public func slackInteraction(_ outcome: String) {}
    public func proxySession(_ outcome: String) {}
    public func proxyStatement(allowed: Bool, checkTime: Duration) {}
}
