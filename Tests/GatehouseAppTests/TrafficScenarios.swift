import Foundation
import GatehouseTestSupport

/// A synthetic month of requests from a team of about fifty, every request labelled honest or
/// abusive. Seeded, so a run is reproducible and a failure can be replayed.
struct TrafficMonth {
    enum Label: String { case honest, abusive }

    /// One thing someone does at a moment of the month.
    struct Event {
        enum Act {
            /// File a request; `decide` says what an approver does about it when it waits for one.
            case file(resource: String, role: String, reason: String, duration: String, decide: Decision)
            /// Cancel the principal's latest waiting request (a bot that cancels and files again).
            case cancelLatest
            /// An admin lifts the principal's block after looking into it.
            case unblock
        }
        enum Decision { case approve, deny, none }

        var at: TimeInterval
        var principal: String
        var sourceIP: String
        var act: Act
        var label: Label
        var scenario: String
    }

    static let resources = ["orders-db", "payments-db", "checkout-db", "inventory-db", "search-db", "ledger-db",
                            "users-db", "shipping-db", "analytics-db", "billing-api", "prod-host", "batch-host"]
    static let engineers = (1...36).map { String(format: "eng%02d", $0) }
    static let approvers = (1...6).map { "dba\($0)" }
    /// dba6 is on holiday all month: never decides anything.
    static let onHoliday = "dba6"
    static let reviewers = ["sec1", "sec2"]
    static let services = ["etl-bot", "backup-bot", "report-bot"]
    static let newHire = "newhire"
    static let spammers = (1...8).map { "spam\($0)" }
    static let fatigue = "mallory"
    static let dripper = "drip"
    static let refiler = "refile-bot"
    /// An honest engineer whose account is taken over for one night.
    static let compromised = "eng07"

    /// Offsets from UTC of where people work: Europe, India, the US west coast.
    static func timeZone(of engineer: String) -> TimeInterval {
        let index = Int(engineer.dropFirst(3)) ?? 0
        return [0, 5.5 * 3600, -8 * 3600][index % 3]
    }

    static let policy: String = {
        var yaml = "version: 1\nprincipals:\n"
        for engineer in engineers + [newHire, fatigue, dripper] + spammers { yaml += "  \(engineer): {groups: [engineers]}\n" }
        yaml += "  \(refiler): {groups: [engineers], kind: service}\n"
        for approver in approvers { yaml += "  \(approver): {groups: [dba]}\n" }
        for reviewer in reviewers { yaml += "  \(reviewer): {groups: [security]}\n" }
        for service in services { yaml += "  \(service): {groups: [automation], kind: service}\n" }
        yaml += "admins: [security]\nresources:\n"
        for resource in resources {
            yaml += """
              \(resource):
                kind: generic
                roles:
                  read: {requesters: [engineers], approvals: 0, max_duration: 8h, allows: read}
                  write: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 2h, allows: write,
                          reason: {min_length: 10, ticket: "(INC|CHG|OPS)-[0-9]+"}}
                  batch: {requesters: [automation], approvals: 0, max_duration: 2h, allows: write}

            """
        }
        // The default anti-spam policy: nothing under `antispam:` is changed.
        yaml += "pending_ttl: 24h\n"
        return yaml
    }()

    static let tasks = ["rebuild the orders index after the failed migration", "rotate the replica credentials before the audit",
                        "backfill missing invoices for the EU tenants", "investigate slow checkout queries reported by support",
                        "drop the temporary table left by yesterday's import", "restart the stuck payment worker",
                        "fix the broken search synonyms for German", "reprocess the webhook events that failed overnight",
                        "update the tax rates for the new quarter", "clean up orphaned sessions after the outage",
                        "verify the refund totals for finance", "apply the hotfix for the currency rounding bug",
                        "check the replication lag alert from last night", "export the shipping report the auditors asked for"]

    static func events(seed: UInt64 = 20_261_202) -> [Event] {
        var rng = SplitMix64(state: seed)
        var events: [Event] = []
        func ip(_ principal: String) -> String {
            let n = abs(principal.hashValue % 200) + 10
            return "10.1.\(n / 250).\(n % 250)"
        }
        func ticket() -> String { "\(["INC", "CHG", "OPS"].randomElement(using: &rng)!)-\(Int.random(in: 1000...9999, using: &rng))" }
        let days = 30
        let day: TimeInterval = 86_400

        // Everyday work: one to three requests per working day and engineer, at their office hours.
        for engineer in engineers {
            let zone = timeZone(of: engineer)
            for d in 0..<days where d % 7 < 5 {
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    let local = TimeInterval(Int.random(in: 9 * 3600...17 * 3600, using: &rng))
                    let resource = resources.randomElement(using: &rng)!
                    let write = Int.random(in: 0..<3, using: &rng) == 0
                    let t = ticket()
                    events.append(Event(at: TimeInterval(d) * day + local - zone, principal: engineer, sourceIP: ip(engineer),
                                        act: .file(resource: resource, role: write ? "write" : "read",
                                                   reason: "\(t) \(tasks.randomElement(using: &rng)!) on \(resource)", duration: "1h",
                                                   decide: Int.random(in: 0..<12, using: &rng) == 0 ? .deny : .approve),
                                        label: .honest, scenario: "everyday work"))
                }
            }
        }

        // On-call incidents: read on six databases within a minute under one ticket and reason, then two writes:
        // ten minutes later, or (every other incident) at once, in the reads' own words.
        for n in 0..<8 {
            let engineer = engineers[(n * 5) % engineers.count]
            let start = TimeInterval(Int.random(in: 0..<days, using: &rng)) * day + TimeInterval(Int.random(in: 0..<86_400, using: &rng))
            let t = "INC-\(2200 + n)"
            let reason = "\(t) checkout errors, tracing the failing payment path"
            let touched = Array(resources.shuffled(using: &rng).prefix(6))
            for (i, resource) in touched.enumerated() {
                events.append(Event(at: start + TimeInterval(i * 9), principal: engineer, sourceIP: ip(engineer),
                                    act: .file(resource: resource, role: "read", reason: reason, duration: "2h", decide: .none),
                                    label: .honest, scenario: "on-call incident"))
            }
            let atOnce = n % 2 == 1
            for (i, resource) in touched.prefix(2).enumerated() {
                events.append(Event(at: start + (atOnce ? 55 + TimeInterval(i * 5) : 600 + TimeInterval(i * 120)), principal: engineer, sourceIP: ip(engineer),
                                    act: .file(resource: resource, role: "write", reason: atOnce ? reason : "\(t) apply the fix for the failing payment path",
                                               duration: "1h", decide: .approve),
                                    label: .honest, scenario: "on-call incident"))
            }
        }

        // A shared incident: four engineers ask within ten minutes with the same ticket and the same words.
        for n in 0..<3 {
            let start = TimeInterval(Int.random(in: 0..<days, using: &rng)) * day + 14 * 3600
            let reason = "INC-\(3100 + n) orders stuck in pending, all hands on the queue"
            for (i, engineer) in engineers.shuffled(using: &rng).prefix(4).enumerated() {
                let resource = ["orders-db", "checkout-db", "payments-db"][i % 3]
                events.append(Event(at: start + TimeInterval(i * 150), principal: engineer, sourceIP: ip(engineer),
                                    act: .file(resource: resource, role: i % 2 == 0 ? "read" : "write", reason: reason, duration: "1h", decide: .approve),
                                    label: .honest, scenario: "shared incident"))
            }
        }

        // A new hire's first week: reads to learn the systems, a few writes.
        for d in 0..<5 {
            for i in 0..<3 {
                let resource = resources[(d * 3 + i) % resources.count]
                events.append(Event(at: TimeInterval(d) * day + 10 * 3600 + TimeInterval(i * 1800), principal: newHire, sourceIP: ip(newHire),
                                    act: .file(resource: resource, role: i == 2 ? "write" : "read",
                                               reason: "OPS-\(4000 + d) onboarding: learn how \(resource) is laid out with my buddy", duration: "2h",
                                               decide: .approve),
                                    label: .honest, scenario: "new hire"))
            }
        }

        // Batch jobs: every night each service account runs on its three systems, with the same words each night.
        for (k, service) in services.enumerated() {
            for d in 0..<days {
                for i in 0..<3 {
                    let resource = resources[(k * 3 + i) % resources.count]
                    events.append(Event(at: TimeInterval(d) * day + 2 * 3600 + TimeInterval(k * 600 + i * 30), principal: service, sourceIP: "10.9.0.\(k + 1)",
                                        act: .file(resource: resource, role: "batch", reason: "CHG-100\(k) nightly \(service) run on \(resource)",
                                                   duration: "1h", decide: .none),
                                        label: .honest, scenario: "batch job"))
                }
            }
        }

        // Abuse 1: a compromised account at night, from a new address, asks for write on every system.
        let night = 12 * day + 3 * 3600
        for (i, resource) in resources.enumerated() {
            events.append(Event(at: night + TimeInterval(i * 20), principal: compromised, sourceIP: "203.0.113.66",
                                act: .file(resource: resource, role: "write", reason: "INC-1 need access", duration: "2h", decide: .none),
                                label: .abusive, scenario: "compromised account"))
        }

        // The next morning security has looked into it, reset the account, and lifted the block.
        events.append(Event(at: 13 * day + 9 * 3600, principal: compromised, sourceIP: "10.0.0.1", act: .unblock, label: .honest,
                            scenario: "compromised account"))

        // Abuse 2: a bot that cancels and files again, to stay at the top of the inbox.
        for i in 0..<20 {
            let at = 5 * day + 11 * 3600 + TimeInterval(i * 180)
            events.append(Event(at: at, principal: refiler, sourceIP: "10.9.9.9",
                                act: .file(resource: "ledger-db", role: "write", reason: "CHG-5000 automated ledger correction, please approve",
                                           duration: "1h", decide: .none),
                                label: .abusive, scenario: "cancel and re-file"))
            events.append(Event(at: at + 60, principal: refiler, sourceIP: "10.9.9.9", act: .cancelLatest, label: .abusive, scenario: "cancel and re-file"))
        }

        // Abuse 3: eight accounts file one spam reason within half an hour.
        for (i, spammer) in spammers.enumerated() {
            for j in 0..<2 {
                events.append(Event(at: 8 * day + 15 * 3600 + TimeInterval(i * 200 + j * 40), principal: spammer, sourceIP: "198.51.100.\(i + 1)",
                                    act: .file(resource: resources[(i + j) % resources.count], role: "write",
                                               reason: "INC-7777 urgent: security audit needs this access today, approve asap", duration: "2h", decide: .none),
                                    label: .abusive, scenario: "shared spam reason"))
            }
        }

        // Abuse 4: approver fatigue, many low-information requests in an hour.
        let lowInformation = ["pls approve", "need access", "access pls", "asdf asdf", "urgent!!", "need it now", "pls pls", "quick access pls"]
        for i in 0..<30 {
            events.append(Event(at: 15 * day + 13 * 3600 + TimeInterval(i * 120), principal: fatigue, sourceIP: "192.0.2.7",
                                act: .file(resource: resources[i % resources.count], role: "write",
                                           reason: "INC-\(i % 3) " + lowInformation[i % lowInformation.count], duration: "1h", decide: .none),
                                label: .abusive, scenario: "approver fatigue"))
        }

        // Abuse 5: a slow drip under every rate limit: one write request every four minutes for ten hours.
        for i in 0..<150 {
            events.append(Event(at: 20 * day + 8 * 3600 + TimeInterval(i * 240), principal: dripper, sourceIP: "192.0.2.99",
                                act: .file(resource: resources[i % resources.count], role: "write",
                                           reason: "OPS-\(10 + i % 3) routine maintenance, please approve", duration: "1h", decide: .none),
                                label: .abusive, scenario: "slow drip"))
        }
        return events.sorted { $0.at < $1.at }
    }
}
