import ArgumentParser
import Foundation
import GatehouseAPI
import GatehouseClient
import GatehouseCore
import GatehouseGuard

/// `--sql`, `--sql-file` and `--shell`: the exact action a command is about.
struct ActionOptions: ParsableArguments {
    @Option(help: "One exact SQL text (one or more statements).") var sql: String?
    @Option(name: .customLong("sql-file"), help: "Read the exact SQL text from a file ('-' for standard input).", completion: .file(extensions: ["sql"])) var sqlFile: String?
    @Option(help: "One exact shell command line.") var shell: String?

    func action() throws -> Action? {
        let given = [sql != nil, sqlFile != nil, shell != nil].filter { $0 }.count
        guard given <= 1 else { throw ValidationError("give only one of --sql, --sql-file and --shell") }
        if let sql { return Action(kind: .sql, text: sql) }
        if let shell { return Action(kind: .shell, text: shell) }
        guard let sqlFile else { return nil }
        let data: Data
        if sqlFile == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            // A file that cannot be read is an error (exit 1), not a wrong command line.
            do { return Action(kind: .sql, text: try TextFile.read(sqlFile)) } catch {
                throw CLIError.failure("cannot read --sql-file \(sqlFile): \(error.why)")
            }
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw CLIError.failure("standard input (--sql-file -) is not UTF-8 text")
        }
        return Action(kind: .sql, text: text)
    }
}

struct ClassifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "classify", abstract: "Show how risky a SQL text or shell command is, and why.",
        discussion: """
            Prints the risk (read, write, dangerous, forbidden), every rule that fired with its statement number \
            and byte position, and the SHA-256 an approval would bind to. Needs a token but no grant. \
            Exit code 0 for read and write, 5 for dangerous, 6 for forbidden.
            """)
    @Argument(help: "The text to classify (or use --file).") var text: String?
    @Option(help: "Read the text from a file ('-' for standard input).", completion: .file()) var file: String?
    @Option(help: "sql or shell.", completion: Completions.actionKinds) var kind: String = "sql"
    @Flag(help: "List every category with its built-in level, and exit.") var categories = false
    @Option(help: "Classify here, with no server or token, under this policy file's `guard:` section (for CI pipelines).", completion: .file(extensions: ["yaml", "yml"])) var policy: String?
    @Flag(help: "Print a GitHub Actions annotation per finding (::error for dangerous and forbidden, ::warning for write) instead of the table.") var github = false
    @OptionGroup var options: ClientOptions

    func run() async throws {
        guard let actionKind = Action.Kind(rawValue: kind) else { throw ValidationError("--kind must be sql or shell") }
        if categories {
            let list = GuardCatalog.categories(for: actionKind)
            if options.format == .json {
                Output.json(try JSONSerialization.data(withJSONObject: ["kind": actionKind.rawValue, "categories": list.map {
                    ["name": $0.name, "level": $0.level.rawValue, "summary": $0.summary, "fail_closed": $0.failClosed] as [String: Any]
                }]))
            } else {
                Output.table(["CATEGORY", "LEVEL", "MEANING"], list.map { [$0.name, $0.level.rawValue, $0.summary] })
            }
            return
        }
        let body: String
        switch (text, file) {
        case let (text?, nil): body = text
        case let (nil, file?) where file == "-":
            guard let decoded = String(data: FileHandle.standardInput.readDataToEndOfFile(), encoding: .utf8) else {
                throw CLIError.failure("standard input is not UTF-8 text")
            }
            body = decoded
        case let (nil, file?):
            do { body = try TextFile.read(file) } catch { throw CLIError.failure("cannot read \(file): \(error.why)") }
        case (nil, nil):
            throw ValidationError("give the text to classify as an argument, or with --file PATH (- for standard input)")
        case (_?, _?):
            throw ValidationError("give the text as an argument or with --file, not both")
        }
        let result: [String: Any]
        if let policy {
            result = try await Self.classifyHere(Action(kind: actionKind, text: body), policyFile: policy)
            if options.format == .json {
                Output.json(try JSONSerialization.data(withJSONObject: result))
            } else if !github {
                Output.classification(result)
            }
        } else {
            let answer = try await options.client().run {
                try await $0.classify(body: .json(Action(kind: actionKind, text: body).input)).ok.body.json
            }
            result = Output.object(answer)
            if options.format == .json || !github { try options.show(answer) { Output.classification($0) } }
        }
        if github, options.format != .json {
            for line in Self.annotations(result["findings"] as? [[String: Any]] ?? [], text: body, file: file ?? "-") { print(line) }
        }
        switch Output.string(result, "risk") {
        case "dangerous": throw CLIError.outcome(code: 5)
        case "forbidden": throw CLIError.outcome(code: 6)
        default: return
        }
    }
}

extension ClassifyCommand {
    /// The classification the server would give, made here under `policyFile`'s `guard:` section,
    /// in the API's shape.
    static func classifyHere(_ action: Action, policyFile: String) async throws -> [String: Any] {
        let loaded = try PolicyLoader.load(file: policyFile)
        guard let policy = loaded.policy else {
            let first = loaded.errors.first.map { ": " + $0.located(in: policyFile) } ?? ""
            throw CLIError.failure("\(policyFile) is not a valid policy (`gatehouse policy check \(policyFile)` lists every problem)\(first)")
        }
        if let problem = action.problem { throw CLIError.failure(problem) }
        let classification = await ActionGuard().classify(action, settings: policy.guardSettings, normalize: true)
        var object: [String: Any] = [
            "kind": classification.kind.rawValue, "risk": classification.risk.rawValue, "statements": classification.statements,
            "sha256": action.digest,
            "findings": classification.findings.map {
                ["category": $0.category, "level": $0.level.rawValue, "statement": $0.statement, "position": $0.position, "detail": $0.detail] as [String: Any]
            },
        ]
        if let normalized = classification.normalized { object["normalized"] = normalized }
        return object
    }

    /// The first byte at or after `start` that is not white space or inside a `--` or `/* */` comment.
    static func skipSpaceAndComments(_ bytes: [UInt8], from start: Int) -> Int {
        var index = start
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: " ") || bytes[index] == UInt8(ascii: "\t") || bytes[index] == UInt8(ascii: "\n") || bytes[index] == UInt8(ascii: "\r") {
                index += 1
            } else if bytes[index...].starts(with: "--".utf8) {
                while index < bytes.count, bytes[index] != UInt8(ascii: "\n") { index += 1 }
            } else if bytes[index...].starts(with: "/*".utf8), let end = Self.find("*/", in: bytes, from: index + 2) {
                index = end + 2
            } else {
                break
            }
        }
        return index < bytes.count ? index : start
    }

    static func find(_ needle: String, in bytes: [UInt8], from start: Int) -> Int? {
        let pattern = Array(needle.utf8)
        guard bytes.count >= pattern.count else { return nil }
        return (start...(bytes.count - pattern.count)).first { bytes[$0..<($0 + pattern.count)].elementsEqual(pattern) }
    }

    /// GitHub Actions workflow commands, one per finding, at the finding's line and column of `text`.
    static func annotations(_ findings: [[String: Any]], text: String, file: String) -> [String] {
        func escape(_ value: String, property: Bool) -> String {
            var escaped = value.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "\r", with: "%0D")
                .replacingOccurrences(of: "\n", with: "%0A")
            if property { escaped = escaped.replacingOccurrences(of: ":", with: "%3A").replacingOccurrences(of: ",", with: "%2C") }
            return escaped
        }
        let bytes = Array(text.utf8)
        return findings.compactMap { finding in
            let level = Output.string(finding, "level")
            guard level != "read" else { return nil }
            // A statement's position is where it begins, its leading comments included: point past them.
            let position = Self.skipSpaceAndComments(bytes, from: min(max(0, finding["position"] as? Int ?? 0), bytes.count))
            let before = bytes[..<position]
            let line = before.filter { $0 == UInt8(ascii: "\n") }.count + 1
            // Columns count characters, as an editor shows them, not bytes (`é` is one column, two bytes).
            let lineStart = before.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0
            let column = String(decoding: bytes[lineStart..<position], as: UTF8.self).count + 1
            let command = level == "write" ? "warning" : "error"
            let category = Output.string(finding, "category")
            return "::\(command) file=\(escape(file, property: true)),line=\(line),col=\(column),title=\(escape("gatehouse: \(category) (\(level))", property: true))::"
                + escape(Output.string(finding, "detail"), property: false)
        }
    }
}

struct ExecCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec", abstract: "Run a command only if Gatehouse allows it on a resource.",
        discussion: """
            Checks the exact command line against your grants on RESOURCE. When allowed, runs it with your \
            standard input, output and error and exits with its exit code; otherwise prints what to request and \
            exits 3 (approval required) or 4 (denied). This guards against mistakes and leaves a record; it is \
            not a sandbox.
            """)
    @Option(help: "The resource the command acts on.", completion: Completions.resources) var resource: String
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments, after --.") var command: [String] = []
    @OptionGroup var options: ClientOptions

    func run() async throws {
        var words = command
        if words.first == "--" { words.removeFirst() }
        guard let program = words.first else { throw ValidationError("give the command after --, e.g. gatehouse exec --resource prod-host -- systemctl restart app") }
        let line = words.map(Shell.quote).joined(separator: " ")
        let result = try await options.client().run {
            try await $0.check(body: .json(.ActionCheck(.init(resource: resource, action: Action(kind: .shell, text: line).input)))).ok.body.json
        }
        if result.decision != .allow {
            try CheckCommand.report(result, options: options)
            return
        }
        // The program is found here, as the shell would, and started itself: through `env` a first word
        // like `-S` or `NAME=value` would be env's own option or assignment, and run a command never judged.
        guard let executable = Self.executable(program, searchPath: ProcessInfo.processInfo.environment["PATH"]) else {
            throw CLIError.failure("allowed, but could not start \(program): no such program (a path, or a name found in PATH)")
        }
        let code: Int32
        do {
            code = try ChildProcess.run(path: executable.path, name: program, arguments: Array(words.dropFirst()))
        } catch {
            throw CLIError.failure("allowed, but could not start \(program): \(error)")
        }
        if code != 0 { throw CLIError.outcome(code: code) }
    }

    /// The file `program` names: itself when it has a `/`, else the first executable of that name in
    /// `searchPath`'s folders. Only absolute folders count: an empty or relative entry would be the current
    /// folder, where a file named like a harmless command would run in its place.
    static func executable(_ program: String, searchPath: String?) -> URL? {
        let files = FileManager.default
        func runnable(_ path: String) -> Bool {
            var folder: ObjCBool = false
            return files.fileExists(atPath: path, isDirectory: &folder) && !folder.boolValue && files.isExecutableFile(atPath: path)
        }
        if program.contains("/") { return runnable(program) ? URL(fileURLWithPath: program) : nil }
        guard !program.isEmpty else { return nil }
        let folders = (searchPath ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":", omittingEmptySubsequences: false)
        for folder in folders where folder.hasPrefix("/") {
            let path = String(folder) + "/" + program
            if runnable(path) { return URL(fileURLWithPath: path) }
        }
        return nil
    }
}
