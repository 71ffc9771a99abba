import Foundation
import Testing
@testable import GatehouseCore

@Suite("Anti-spam policy section")
struct AntiSpamPolicyLoaderTests {
    let base = """
        version: 1
        principals: {alice: {groups: [engineers]}, erin: {groups: [security]}}
        resources:
          prod-db: {kind: postgres, roles: {read: {requesters: [engineers], approvals: 0, max_duration: 1h, allows: read}}}

        """

    @Test("defaults apply without the section; every key is read")
    func reads() throws {
        let defaults = try #require(PolicyLoader.load(yaml: base).policy)
        #expect(defaults.antiSpam == AntiSpamPolicy())
        #expect(defaults.reviewerGroups == ["security"])
        let yaml = base + """
            antispam:
              enabled: true
              limits:
                per_principal: {rate: 10/h, burst: 6}
                per_resource: off
                per_source_ip: {rate: 1/10m}
                max_pending_per_principal: 2
              denial_cooldown: {base: 5m, factor: 3, max: 2h}
              approver_notifications: {rate: 4/h, burst: 2}
              throttle_cooldown: 30m
              blocked_delay: 3s
              reviewers: [security]
              score:
                thresholds: {throttle: 5, extra_approval: 9, quarantine: 13, block: 20}
                weights: {burst: 1, off_hours: 0, ticket: -5}
            """
        let result = PolicyLoader.load(yaml: yaml)
        #expect(result.problems.isEmpty, "\(result.problems)")
        let spam = try #require(result.policy?.antiSpam)
        #expect(spam.perPrincipal == RateLimit(count: 10, period: TimeSpan(seconds: 3600), burst: 6))
        #expect(spam.perResource == nil)
        #expect(spam.perSourceIP == RateLimit(count: 1, period: TimeSpan(seconds: 600), burst: 20))
        #expect(spam.maxPendingPerPrincipal == 2)
        #expect(spam.denialCooldown.base.seconds == 300 && spam.denialCooldown.factor == 3 && spam.denialCooldown.max.seconds == 7200)
        #expect(spam.approverNotifications?.burst == 2)
        #expect(spam.throttleCooldown.seconds == 1800)
        #expect(spam.blockedDelay?.seconds == 3)
        #expect(PolicyLoader.load(yaml: base + "antispam: {blocked_delay: off}\n").policy?.antiSpam.blockedDelay == nil)
        #expect(spam.thresholds.block == 20)
        #expect(spam.weights[.burst] == 1 && spam.weights[.offHours] == 0 && spam.weights[.ticket] == -5)
        #expect(spam.weights[.sharedReason] == 3)
    }

    @Test("a per-principal burst too small for an on-call engineer's first minute is a warning with its line")
    func incidentBurstWarning() throws {
        let result = PolicyLoader.load(yaml: base + "antispam:\n  limits:\n    per_principal: {rate: 20/h, burst: 5}\n")
        #expect(result.policy?.antiSpam.perPrincipal?.burst == 5)
        let warning = try #require(result.warnings.first)
        #expect(result.errors.isEmpty)
        #expect(warning.line == 7)   // the per_principal line
        #expect(warning.message.contains("on-call engineer"))
        #expect(PolicyLoader.load(yaml: base + "antispam:\n  limits:\n    per_principal: {rate: 20/h, burst: 6}\n").warnings.isEmpty)
    }

    @Test("mistakes are reported with their line and a way out", arguments: [
        ("antispam: {limits: {per_principal: {rate: lots}}}", "rate must be a count per unit"),
        ("antispam: {limits: {per_principal: {rate: 20/h, burst: 0}}}", "burst is 0"),
        ("antispam: {score: {weights: {bursty: 2}}}", "did you mean `burst`"),
        ("antispam: {score: {thresholds: {throttle: 10, extra_approval: 5}}}", "must grow"),
        ("antispam: {reviewers: [secruity]}", "did you mean `security`"),
        ("antispam: {denial_cooldown: {base: 2h, max: 1h}}", "shorter than its base"),
        ("antispam: {enabled: maybe}", "true or false"),
        ("antispam: {blocked_delay: 5m}", "at most 1m"),
        ("antispam: {blocked_delay: soon}", "antispam.blocked_delay"),
        ("antispam: {limitz: {}}", "did you mean `limits`"),
    ])
    func mistakes(section: String, expected: String) {
        let result = PolicyLoader.load(yaml: base + section + "\n")
        #expect(result.policy == nil)
        #expect(result.errors.contains { $0.message.contains(expected) && $0.line == 5 }, "\(result.errors)")
    }
}
