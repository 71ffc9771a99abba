import Crypto
import Foundation
import Testing
@testable import GatehouseCore

@Suite("Policy: notifications")
struct NotificationPolicyTests {
    static let head = """
        version: 1
        principals:
          alice: {groups: [engineers]}
          bob: {groups: [dba]}
        resources:
          prod-db:
            kind: postgres
            roles:
              write: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 1h, allows: write}

        """

    @Test("webhooks with events, format, secret and timeout are read")
    func valid() throws {
        let yaml = Self.head + """
            notifications:
              base_url: https://gatehouse.example.com/
              digest_interval: 30m
              retry: {initial: 2s, max: 10m, attempts: 5}
              webhooks:
                siem: {url: "https://siem.example.com/in", secret_env: SIEM_SECRET, events: [all], timeout: 5s}
                chat: {url: "https://hooks.slack.com/services/T/B/X", format: slack, events: [request.created, break_glass.used]}
            """
        let result = PolicyLoader.load(yaml: yaml)
        #expect(result.errors.isEmpty, "\(result.errors)")
        let settings = try #require(result.policy).notifications
        #expect(settings.baseURL == "https://gatehouse.example.com")
        #expect(settings.digestInterval == TimeSpan(seconds: 1800))
        #expect(settings.retry == RetrySchedule(initial: TimeSpan(seconds: 2), maximum: TimeSpan(seconds: 600), attempts: 5))
        #expect(settings.endpoints(for: .breakGlassUsed).map(\.name).sorted() == ["chat", "siem"])
        #expect(settings.endpoints(for: .digest).map(\.name) == ["siem"])
        // The secret is read where the server runs; its absence here is a warning, not an error.
        #expect(result.warnings.contains { $0.message.contains("SIEM_SECRET") })
    }

    @Test("an unusable webhook is reported with its line", arguments: [
        ("{url: \"not a url\", secret_env: S}", "is not a valid URL"),
        ("{url: \"ftp://files.example.com/x\", secret_env: S}", "only https://"),
        ("{url: \"https://user:pw@hooks.example.com/x\", secret_env: S}", "user name or password"),
        ("{url: \"https:///nohost\", secret_env: S}", "no host name"),
        ("{url: \"https://hooks.example.com/x\"}", "needs a secret"),
        ("{secret_env: S}", "needs a `url:`"),
        ("{url: \"https://hooks.example.com/x\", secret_env: S, events: [request.approvd]}", "did you mean `request.approved`"),
        ("{url: \"https://hooks.example.com/x\", format: teams}", "format of webhook `bad` must be one of"),
        ("{url: \"https://hooks.example.com/x\", secret_env: S, timeout: 5m}", "use 1s to 1m"),
    ])
    func invalid(_ endpoint: String, _ message: String) throws {
        let yaml = Self.head + "notifications:\n  webhooks:\n    bad: \(endpoint)\n"
        let result = PolicyLoader.load(yaml: yaml)
        #expect(result.policy == nil)
        let problem = try #require(result.errors.first { $0.message.contains(message) }, "\(result.errors)")
        #expect(problem.line == 12)
    }

    @Test("plain http to another host is a warning")
    func plainHTTP() throws {
        let yaml = Self.head + "notifications:\n  webhooks:\n    w: {url: \"http://hooks.example.com/x\", format: slack}\n"
        let result = PolicyLoader.load(yaml: yaml)
        #expect(result.errors.isEmpty)
        #expect(result.warnings.contains { $0.message.contains("unencrypted") })
    }

    @Test("a webhook subscribed to no event is a warning")
    func noEvents() throws {
        let yaml = Self.head + "notifications:\n  webhooks:\n    w: {url: \"https://hooks.example.com/x\", format: slack, events: []}\n"
        let result = PolicyLoader.load(yaml: yaml)
        #expect(result.errors.isEmpty)
        #expect(result.warnings.contains { $0.message.contains("subscribes to no event") })
        let all = PolicyLoader.load(yaml: Self.head + "notifications:\n  webhooks:\n    w: {url: \"https://hooks.example.com/x\", format: slack}\n")
        #expect(!all.warnings.contains { $0.message.contains("subscribes to no event") })
    }
}
