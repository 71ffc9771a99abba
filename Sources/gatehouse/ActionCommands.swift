import ArgumentParser
import Foundation
import GatehouseCore

/// `--sql`, `--sql-file` and `--shell`: the exact action a command is about.
struct ActionOptions: ParsableArguments {
    @Option(help: "One exact SQL text (one or more statements).") var sql: String?
    @Option(name: .customLong("sql-file"), help: "Read the exact SQL text from a file ('-' for standard input).") var sqlFile: String?
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
            guard let read = FileManager.default.contents(atPath: sqlFile) else {
                throw ValidationError("cannot read --sql-file \(sqlFile): no such file or not readable")
            }
            data = read
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ValidationError("--sql-file \(sqlFile) is not UTF-8 text")
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
    @Option(help: "Read the text from a file ('-' for standard input).") var file: String?
    @Option(help: "sql or shell.") var kind: String = "sql"
    @Flag(help: "List every category with its built-in level, and exit.") var categories = false
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
        case let (nil, file?):
            let data = file == "-" ? FileHandle.standardInput.readDataToEndOfFile() : FileManager.default.contents(atPath: file)
            guard let data, let decoded = String(data: data, encoding: .utf8) else {
                throw ValidationError("cannot read \(file) as UTF-8 text")
            }
            body = decoded
        default:
            throw ValidationError("give the text as an argument or with --file, not both")
        }
        let (response, result) = try await options.client().call(.POST, "/v1/classify", body: ["kind": actionKind.rawValue, "text": body])
        options.show(response) { Output.classification(result) }
        switch Output.string(result, "risk") {
        case "dangerous": throw CLIError.outcome(code: 5)
        case "forbidden": throw CLIError.outcome(code: 6)
        default: return
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
    @Option(help: "The resource the command acts on.") var resource: String
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments, after --.") var command: [String] = []
    @OptionGroup var options: ClientOptions

    func run() async throws {
        var words = command
        if words.first == "--" { words.removeFirst() }
        guard let program = words.first else { throw ValidationError("give the command after --, e.g. gatehouse exec --resource prod-host -- systemctl restart app") }
        let line = words.map(Shell.quote).joined(separator: " ")
        let (response, result) = try await options.client().call(.POST, "/v1/check", body: [
            "resource": resource, "action": ["kind": "shell", "text": line],
        ])
        if Output.string(result, "decision") != "allow" {
            try CheckCommand.report(response, result, resource: resource, options: options)
            return
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [program] + words.dropFirst()
        do {
            try process.run()
        } catch {
            throw CLIError.failure("allowed, but could not start \(program): \(error.localizedDescription)")
        }
        process.waitUntilExit()
        if process.terminationStatus != 0 { throw CLIError.outcome(code: process.terminationStatus) }
    }
}
