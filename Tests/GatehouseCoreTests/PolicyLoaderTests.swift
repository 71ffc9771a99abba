import Foundation
import Testing
@testable import GatehouseCore

/// Ten lines of a valid policy; a test appends role lines, which start at line 11.
private let header = """
version: 1
principals:
  alice: {groups: [engineers]}
  bob: {groups: [engineers, dba]}
  carol: {groups: [dba]}
  deploy-bot: {groups: [automation, dba], kind: service}
resources:
  prod-db:
    kind: postgres
    roles:

"""

private func withRoles(_ roles: String) -> String { header + roles + "\n" }

private let validRead = "      read: {requesters: [engineers], approvals: 0, max_duration: 8h, allows: read}"

struct InvalidPolicy: Sendable, CustomTestStringConvertible {
    var name: String
    var yaml: String
    var line: Int
    var phrases: [String]
    var testDescription: String { name }

    init(_ name: String, _ yaml: String, line: Int, _ phrases: String...) {
        self.name = name
        self.yaml = yaml
        self.line = line
        self.phrases = phrases
    }
}

@Suite("PolicyLoader")
struct PolicyLoaderTests {
    static let examplePath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("examples/policy.yaml").path

    @Test("the example policy loads with no problems")
    func examplePolicy() throws {
        let text = try String(contentsOfFile: Self.examplePath, encoding: .utf8)
        let result = PolicyLoader.load(yaml: text)
        #expect(result.errors.isEmpty, "\(result.errors)")
        #expect(result.problems.isEmpty, "\(result.problems)")
        let policy = try #require(result.policy)
        #expect(policy.version == 1)
        #expect(Set(policy.principals.keys) == ["alice", "bob", "carol", "erin", "deploy-bot"])
        #expect(policy.principals["deploy-bot"]?.kind == .service)
        #expect(policy.principals["bob"]?.groups == ["engineers", "dba"])
        #expect(policy.adminGroups == ["security"])
        #expect(policy.isAdmin("erin"))
        #expect(!policy.isAdmin("bob"))
        #expect(policy.pendingTTL.seconds == 86_400)
        let db = try #require(policy.resources["prod-db"])
        #expect(db.kind == .postgres)
        #expect(db.labels == ["env": "prod"])
        #expect(Set(db.roles.keys) == ["read", "write", "admin"])
        let write = try #require(db.roles["write"])
        #expect(write.requesters == ["engineers"])
        #expect(write.approvers == ["dba"])
        #expect(write.approvals == 1)
        #expect(write.maxDuration.seconds == 3_600)
        #expect(write.allows == .write)
        #expect(write.reason.minLength == 10)
        #expect(write.reason.ticketPattern == "(INC|CHG)-[0-9]+")
        let admin = try #require(db.roles["admin"])
        #expect(admin.approvals == 2)
        #expect(admin.maxDuration.seconds == 1_800)
        #expect(admin.allows == .dangerous)
        #expect(policy.eligibleApprovers(for: admin) == ["bob", "carol", "erin"])
        #expect(db.roles["read"]?.approvals == 0)
        #expect(policy.resources["billing-api"]?.roles["operate"]?.requesters == ["engineers", "automation"])
    }

    @Test("load(file:) reads the example and reports an unreadable path as a problem")
    func loadFile() throws {
        let policy = try PolicyLoader.loadValid(file: Self.examplePath)
        #expect(policy.resources.count == 3)
        #expect(policy.guardSettings.level(of: "read_credentials", kind: .sql) == .forbidden)
        #expect(policy.resources["prod-db"]?.actions?.approvals == 1)
        let missing = try PolicyLoader.load(file: "/nonexistent/gatehouse/policy.yaml")
        #expect(missing.policy == nil)
        #expect(missing.errors.count == 1)
        #expect(missing.errors.first?.message.contains("cannot read the policy file") == true)
        #expect(throws: PolicyError.self) { try PolicyLoader.loadValid(file: "/nonexistent/gatehouse/policy.yaml") }
        // Why, in words (Foundation's own error for a directory is "NSCocoaErrorDomain error 256").
        #expect(missing.errors.first?.message.contains("there is no such file") == true, "\(missing.errors)")
        let directory = try PolicyLoader.load(file: NSTemporaryDirectory())
        #expect(directory.errors.first?.message == "cannot read the policy file: it is a directory, not a file; check the path and its permissions", "\(directory.errors)")
        // A file on the way is not "no such file" either (nor, for another user, a folder they may not enter).
        #expect(try PolicyLoader.load(file: "/etc/hostname/policy.yaml").errors.first?.message.contains("a part of its path is a file, not a folder") == true)
        let binary = NSTemporaryDirectory() + "gatehouse-policy-\(UUID().uuidString).yaml"
        try Data([0x76, 0x3A, 0x20, 0xFF, 0xFE, 0x0A]).write(to: URL(fileURLWithPath: binary))
        defer { try? FileManager.default.removeItem(atPath: binary) }
        #expect(try PolicyLoader.load(file: binary).errors.first?.message.contains("it is not UTF-8 text") == true)
        // A byte order mark is not part of the text (a secret saved by a Windows editor still matches).
        try Data([0xEF, 0xBB, 0xBF] + Array("s3cret\n".utf8)).write(to: URL(fileURLWithPath: binary))
        #expect(try TextFile.read(binary) == "s3cret\n")
        // A device that never ends is refused after the limit, not read until the memory is full.
        let endless = try PolicyLoader.load(file: "/dev/zero")
        #expect(endless.errors.first?.message.contains("it is larger than 16 MiB") == true, "\(endless.errors)")
        #expect(throws: TextFile.Unreadable(why: "it is larger than 0 MiB, more than such a file ever holds (is it the file meant?)")) {
            try TextFile.read(binary, maximumBytes: 4)
        }
    }

    @Test("the header used by the corpus is itself valid")
    func headerIsValid() throws {
        let result = PolicyLoader.load(yaml: withRoles(validRead))
        #expect(result.problems.isEmpty, "\(result.problems)")
        #expect(try #require(result.policy).resources["prod-db"]?.roles["read"] != nil)
    }

    static let invalidCorpus: [InvalidPolicy] = [
        InvalidPolicy("unknown requester group, with a suggestion",
                      withRoles("      read: {requesters: [enginers], approvals: 0, max_duration: 8h, allows: read}"),
                      line: 11, "unknown group `enginers`", "did you mean `engineers`?"),
        InvalidPolicy("unknown approver group, with a suggestion",
                      withRoles(validRead + "\n      write: {requesters: [engineers], approvers: [dbas], approvals: 1, max_duration: 1h, allows: write}"),
                      line: 12, "unknown group `dbas`", "did you mean `dba`?"),
        InvalidPolicy("unknown admin group",
                      header.replacingOccurrences(of: "resources:\n", with: "admins: [dbas]\nresources:\n") + validRead + "\n",
                      line: 7, "unknown group `dbas` in admins", "did you mean `dba`?"),
        InvalidPolicy("more approvals than human approvers (the service account does not count)",
                      withRoles("      write: {requesters: [engineers], approvers: [dba], approvals: 3, max_duration: 1h, allows: write}"),
                      line: 11, "needs 3 approvals but only 2 human(s) can approve (bob, carol)"),
        InvalidPolicy("approver group of service accounts only",
                      withRoles("      write: {requesters: [engineers], approvers: [automation], approvals: 1, max_duration: 1h, allows: write}"),
                      line: 11, "only 0 human(s) can approve"),
        InvalidPolicy("approvals without approvers",
                      withRoles("      write: {requesters: [engineers], approvals: 1, max_duration: 1h, allows: write}"),
                      line: 11, "lists no `approvers:`"),
        InvalidPolicy("bad duration",
                      withRoles("      read: {requesters: [engineers], approvals: 0, max_duration: 30x, allows: read}"),
                      line: 11, "max_duration of role `prod-db/read`", "'30x' is not a duration"),
        InvalidPolicy("zero duration",
                      withRoles("      read: {requesters: [engineers], approvals: 0, max_duration: 0m, allows: read}"),
                      line: 11, "'0m' is zero"),
        InvalidPolicy("bad pending_ttl",
                      "pending_ttl: soon\n" + withRoles(validRead),
                      line: 1, "pending_ttl", "'soon' is not a duration"),
        InvalidPolicy("invalid ticket regex",
                      withRoles("""
                            write: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 1h,
                                    allows: write, reason: {ticket: "(INC|CHG-[0-9]+"}}
                      """),
                      line: 12, "reason.ticket", "not a valid regular expression"),
        InvalidPolicy("min_length out of range",
                      withRoles("      read: {requesters: [engineers], approvals: 0, max_duration: 8h, allows: read, reason: {min_length: 5000}}"),
                      line: 11, "min_length", "between 1 and 4096"),
        InvalidPolicy("allows: forbidden",
                      withRoles("      read: {requesters: [engineers], approvals: 0, max_duration: 8h, allows: forbidden}"),
                      line: 11, "cannot be `forbidden`"),
        InvalidPolicy("allows: unknown level",
                      withRoles("      read: {requesters: [engineers], approvals: 0, max_duration: 8h, allows: everything}"),
                      line: 11, "must be read, write or dangerous"),
        InvalidPolicy("approvals out of range",
                      withRoles("      read: {requesters: [engineers], approvals: -1, max_duration: 8h, allows: read}"),
                      line: 11, "approvals of role `prod-db/read` is -1"),
        InvalidPolicy("approvals not a number",
                      withRoles("      read: {requesters: [engineers], approvals: two, max_duration: 8h, allows: read}"),
                      line: 11, "must be a whole number"),
        InvalidPolicy("unknown role key with a suggestion",
                      withRoles("      read: {requesters: [engineers], approvals: 0, max_duraton: 8h, allows: read}"),
                      line: 11, "unknown key `max_duraton`", "did you mean `max_duration`?"),
        InvalidPolicy("unknown top-level key with a suggestion",
                      withRoles(validRead) + "pending_tll: 1h\n",
                      line: 12, "unknown key `pending_tll`", "did you mean `pending_ttl`?"),
        InvalidPolicy("unknown principal key with a suggestion",
                      withRoles(validRead).replacingOccurrences(of: "carol: {groups: [dba]}", with: "carol: {group: [dba]}"),
                      line: 5, "unknown key `group`", "did you mean `groups`?"),
        InvalidPolicy("missing version",
                      withRoles(validRead).replacingOccurrences(of: "version: 1\n", with: ""),
                      line: 1, "`version: 1` is missing"),
        InvalidPolicy("version 2",
                      withRoles(validRead).replacingOccurrences(of: "version: 1", with: "version: 2"),
                      line: 1, "version must be 1"),
        InvalidPolicy("missing principals",
                      "version: 1\nresources: {}\n",
                      line: 1, "`principals:` is missing"),
        InvalidPolicy("missing resources",
                      "version: 1\nprincipals: {alice: {groups: [engineers]}}\n",
                      line: 1, "`resources:` is missing"),
        InvalidPolicy("role without requesters",
                      withRoles("      read: {approvals: 0, max_duration: 8h, allows: read}"),
                      line: 11, "needs `requesters:`"),
        InvalidPolicy("role with an empty requesters list",
                      withRoles("      read: {requesters: [], approvals: 0, max_duration: 8h, allows: read}"),
                      line: 11, "needs `requesters:`"),
        InvalidPolicy("role without approvals",
                      withRoles("      read: {requesters: [engineers], max_duration: 8h, allows: read}"),
                      line: 11, "needs `approvals:`"),
        InvalidPolicy("role without max_duration",
                      withRoles("      read: {requesters: [engineers], approvals: 0, allows: read}"),
                      line: 11, "needs `max_duration:`"),
        InvalidPolicy("role without allows",
                      withRoles("      read: {requesters: [engineers], approvals: 0, max_duration: 8h}"),
                      line: 11, "needs `allows:`"),
        InvalidPolicy("requesters written as a scalar",
                      withRoles("      read: {requesters: engineers, approvals: 0, max_duration: 8h, allows: read}"),
                      line: 11, "must be a list, for example [engineers]"),
        InvalidPolicy("resource without kind",
                      withRoles(validRead).replacingOccurrences(of: "    kind: postgres\n", with: ""),
                      line: 9, "needs a `kind:`"),
        InvalidPolicy("resource with an unknown kind",
                      withRoles(validRead).replacingOccurrences(of: "kind: postgres", with: "kind: mysql"),
                      line: 9, "kind `mysql` of resource `prod-db` is not known", "use one of postgres, shell, http, generic"),
        InvalidPolicy("resource kind with a typo, with a suggestion",
                      withRoles(validRead).replacingOccurrences(of: "kind: postgres", with: "kind: postgress"),
                      line: 9, "kind `postgress`", "did you mean `postgres`?"),
        InvalidPolicy("resource without roles",
                      header.replacingOccurrences(of: "    roles:\n", with: ""),
                      line: 9, "needs `roles:`"),
        InvalidPolicy("principal with an unknown kind",
                      withRoles(validRead).replacingOccurrences(of: "kind: service", with: "kind: robot"),
                      line: 6, "must be `user` or `service`"),
        InvalidPolicy("reserved principal name",
                      withRoles(validRead).replacingOccurrences(of: "  carol: {groups: [dba]}", with: "  system: {groups: [dba]}"),
                      line: 5, "`system` is reserved"),
        InvalidPolicy("the anti-spam policy's actor name",
                      withRoles(validRead).replacingOccurrences(of: "  carol: {groups: [dba]}", with: "  antispam: {groups: [dba]}"),
                      line: 5, "`antispam` is reserved"),
        InvalidPolicy("break-glass's actor name",
                      withRoles(validRead).replacingOccurrences(of: "  carol: {groups: [dba]}", with: "  break-glass: {groups: [dba]}"),
                      line: 5, "`break-glass` is reserved"),
        InvalidPolicy("invalid principal name",
                      withRoles(validRead).replacingOccurrences(of: "carol:", with: "Carol:"),
                      line: 5, "principal `Carol` is not a valid name"),
        InvalidPolicy("tab indentation",
                      "version: 1\nprincipals:\n\talice: {groups: [engineers]}\nresources: {}\n",
                      line: 3, "not valid YAML"),
        InvalidPolicy("unclosed flow sequence",
                      withRoles("      read: {requesters: [engineers, approvals: 0, max_duration: 8h, allows: read}"),
                      line: 11, "not valid YAML"),
        InvalidPolicy("duplicate principal",
                      withRoles(validRead).replacingOccurrences(of: "  carol: {groups: [dba]}\n",
                                                                with: "  carol: {groups: [dba]}\n  carol: {groups: [engineers]}\n"),
                      line: 5, "'carol' appears twice"),
        InvalidPolicy("duplicate role key",
                      withRoles("      read: {requesters: [engineers], approvals: 0, approvals: 1, max_duration: 8h, allows: read}"),
                      line: 11, "'approvals' appears twice"),
        InvalidPolicy("a list at the root",
                      "- version: 1\n- principals: {}\n",
                      line: 1, "must be a YAML mapping"),
        InvalidPolicy("a scalar at the root",
                      "just some text\n",
                      line: 1, "must be a YAML mapping"),
        InvalidPolicy("an empty document",
                      "",
                      line: 1, "must be a YAML mapping"),
        InvalidPolicy("only comments",
                      "# nothing here yet\n# really\n",
                      line: 1, "must be a YAML mapping"),
        InvalidPolicy("two YAML documents",
                      withRoles(validRead) + "---\nversion: 1\n",
                      line: 12, "not valid YAML"),
    ]

    @Test("invalid policies are rejected with a located message", arguments: invalidCorpus)
    func invalid(_ testCase: InvalidPolicy) {
        let result = PolicyLoader.load(yaml: testCase.yaml)
        #expect(result.policy == nil, "an invalid policy must not load")
        #expect(!result.errors.isEmpty)
        let matching = result.errors.filter { problem in testCase.phrases.allSatisfy { problem.message.contains($0) } }
        #expect(!matching.isEmpty, "no error mentions \(testCase.phrases); got \(result.problems)")
        #expect(matching.contains { $0.line == testCase.line },
                "expected line \(testCase.line), got \(matching.map(\.line)) in \(result.problems)")
        #expect(result.problems.allSatisfy { $0.line >= 1 && $0.column >= 1 })
    }

    @Test("a policy with several mistakes reports every one of them, sorted by line")
    func everyProblemIsReported() throws {
        let yaml = """
        version: 2
        principals:
          alice: {groups: [engineers]}
          bob: {groups: [engineers, dba]}
          deploy-bot: {groups: [automation], kind: robot}
        resources:
          prod-db:
            kind: postgres
            roles:
              read: {requesters: [enginers], approvals: 0, max_duration: 8h, allows: read}
              write: {requesters: [engineers], approvers: [dba], approvals: 1, max_duration: 30x, allows: write}
              admin: {requesters: [dba], approvers: [dba], approvals: 2, max_duration: 30m, allows: forbidden}
        pending_tll: 24h

        """
        let result = PolicyLoader.load(yaml: yaml)
        #expect(result.policy == nil)
        let lines = result.errors.map(\.line)
        #expect(lines == lines.sorted(), "problems must be sorted by line: \(lines)")
        for (line, phrase) in [(1, "version must be 1"), (5, "must be `user` or `service`"), (10, "unknown group `enginers`"),
                               (11, "'30x' is not a duration"), (12, "cannot be `forbidden`"),
                               (12, "needs 2 approvals but only 1 human(s) can approve (bob)"), (13, "unknown key `pending_tll`")] {
            #expect(result.errors.contains { $0.line == line && $0.message.contains(phrase) },
                    "missing \(line): \(phrase) in \(result.errors)")
        }
        #expect(result.errors.count >= 7)
        let sortedProblems = result.problems.sorted { ($0.line, $0.column) < ($1.line, $1.column) }
        #expect(result.problems == sortedProblems)
    }

    @Test("`break_glass:` is read: duration, rate, who may use it and who is told")
    func breakGlassSection() throws {
        let yaml = withRoles(validRead) + "break_glass: {enabled: true, max_duration: 10m, rate: 2/d, requesters: [engineers], notify: [engineers]}\n"
        let result = PolicyLoader.load(yaml: yaml)
        #expect(result.problems.isEmpty, "\(result.problems)")
        let policy = try #require(result.policy)
        #expect(policy.breakGlass.enabled)
        #expect(policy.breakGlass.maxDuration == TimeSpan(seconds: 600))
        #expect(policy.breakGlass.rate == RateLimit(count: 2, period: TimeSpan(seconds: 86_400), burst: 1))
        #expect(policy.breakGlass.requesters == ["engineers"])
        #expect(policy.breakGlass.notify == ["engineers"])
        let bad = PolicyLoader.load(yaml: withRoles(validRead) + "break_glass: {enabled: yes-please, max_duration: 2d, rate: often, notify: [nobody]}\n")
        #expect(bad.policy == nil)
        let messages = bad.errors.map(\.message).joined(separator: "\n")
        for expected in ["break_glass.enabled must be true or false", "at most 24h", "break_glass.rate must be", "unknown group `nobody`"] {
            #expect(messages.contains(expected), "\(messages)")
        }
    }

    @Test("`guard:` moves categories between levels and adds shell rules; unknown categories are errors with a hint")
    func guardSection() throws {
        let yaml = withRoles(validRead) + """
            guard:
              sql: {forbidden: [drop_database, alter_system], write: [truncate]}
              shell: {dangerous: ["helm uninstall", kubectl_drain], forbidden: [shutdown]}

            """
        let result = PolicyLoader.load(yaml: yaml)
        #expect(result.errors.isEmpty, "\(result.errors)")
        let settings = try #require(result.policy?.guardSettings)
        #expect(settings.level(of: "drop_database", kind: .sql) == .forbidden)
        #expect(settings.level(of: "truncate", kind: .sql) == .write)
        #expect(settings.level(of: "drop_table", kind: .sql) == .dangerous)
        #expect(settings.level(of: "shutdown", kind: .shell) == .forbidden)
        #expect(settings.shellRules == [GuardSettings.ShellRule(pattern: "helm uninstall", level: .dangerous)])

        let typo = PolicyLoader.load(yaml: withRoles(validRead) + "guard:\n  sql: {forbidden: [drop_tabel]}\n")
        #expect(typo.errors.first?.message.contains("did you mean `drop_table`") == true)
        #expect(typo.errors.first?.line == 13)
        let lowered = PolicyLoader.load(yaml: withRoles(validRead) + "guard:\n  sql: {read: [unparseable]}\n")
        #expect(lowered.errors.first?.message.contains("cannot be moved below dangerous") == true)
    }

    @Test("`actions:` of a resource configures one-shot action approvals; the role name `action` is reserved")
    func actionsSection() throws {
        let yaml = header.replacingOccurrences(of: "    roles:\n", with: "    actions: {requesters: [engineers], approvals: 0}\n    roles:\n") + validRead + "\n"
        let result = PolicyLoader.load(yaml: yaml)
        #expect(result.errors.isEmpty, "\(result.errors)")
        let actions = try #require(result.policy?.resources.values.first?.actions)
        #expect(actions.name == Role.actionRoleName)
        #expect(actions.allows == .dangerous)
        #expect(actions.maxDuration == TimeSpan(seconds: 3600))
        let missing = PolicyLoader.load(yaml: header.replacingOccurrences(of: "    roles:\n", with: "    actions: {requesters: [engineers]}\n    roles:\n") + validRead + "\n")
        #expect(missing.errors.contains { $0.message.contains("actions of `prod-db` needs `approvals:`") })
        let reserved = PolicyLoader.load(yaml: withRoles(validRead.replacingOccurrences(of: "read:", with: "action:")))
        #expect(reserved.errors.contains { $0.message.contains("reserved for one-shot action requests") })
    }

    @Test("a requester who could never collect enough approvals is warned about")
    func stuckRequesterWarns() throws {
        // dba has two human members (bob, carol); a request by bob can only be approved by carol.
        let result = PolicyLoader.load(yaml: withRoles(
            "      admin: {requesters: [dba], approvers: [dba], approvals: 2, max_duration: 30m, allows: dangerous}"))
        #expect(result.errors.isEmpty, "\(result.errors)")
        #expect(result.policy != nil)
        let warning = try #require(result.warnings.first)
        #expect(warning.line == 11)
        #expect(warning.message.contains("bob, carol"))
        #expect(warning.message.contains("never collect 2 approvals"))
    }

    @Test("a role with a bad field still reports its missing requesters")
    func missingRequestersReportedNextToOtherErrors() {
        // Reading does not stop at the first problem: a role with a bad duration and no requesters has
        // two problems, and the admin should see both in one run.
        let result = PolicyLoader.load(yaml: withRoles("      read: {approvals: 0, max_duration: 30x, allows: read}"))
        #expect(result.errors.contains { $0.line == 11 && $0.message.contains("'30x' is not a duration") })
        #expect(result.errors.contains { $0.line == 11 && $0.message.contains("needs `requesters:`") }, "\(result.errors)")
    }

    @Test("did-you-mean suggests only close names")
    func closest() {
        #expect(PolicyLoader.closest(to: "enginers", in: ["engineers", "dba", "security"]) == "engineers")
        #expect(PolicyLoader.closest(to: "xyz", in: ["engineers", "dba", "security"]) == nil)
        #expect(PolicyLoader.closest(to: "dbb", in: ["dba", "dbc"]) == "dba") // ties go to the first name
        #expect(PolicyLoader.editDistance("kitten", "sitting") == 3)
        #expect(PolicyLoader.editDistance("", "abc") == 3)
        #expect(PolicyLoader.editDistance("same", "same") == 0)
    }

    @Test("problems print as line:column: severity: message")
    func problemDescription() {
        let problem = PolicyProblem(line: 3, column: 7, message: "boom")
        #expect(problem.description == "3:7: error: boom")
        #expect(problem.located(in: "policy.yaml") == "policy.yaml:3:7: error: boom")
        let error = PolicyError(file: "p.yaml", problems: [problem])
        #expect(error.description == "policy p.yaml is invalid:\n  p.yaml:3:7: error: boom")
    }
}
