import ArgumentParser
import Foundation
import GatehouseCore
import GatehouseStore
import Logging

/// `--database`, for the commands that open the store themselves (the server must not be running
/// on an SQLite file; on PostgreSQL it may).
struct StoreOptions: ParsableArguments {
    @Option(help: "sqlite:PATH[?mode=shared] or postgres://USER:PASSWORD@HOST:PORT/DB (default: $GATEHOUSE_DATABASE or sqlite:gatehouse.db).")
    var database: String?

    var url: String { database ?? ProcessInfo.processInfo.environment["GATEHOUSE_DATABASE"] ?? "sqlite:gatehouse.db" }

    func open() async throws -> GatehouseStore {
        var logger = Logger(label: "gatehouse")
        logger.logLevel = .warning
        return try await GatehouseStore.open(url: url, logger: logger)
    }

    /// Opens the store, runs `body` on it, and closes it whatever happens.
    func with<T>(_ body: (GatehouseStore) async throws -> T) async throws -> T {
        let opened = try await open()
        do {
            let result = try await body(opened)
            await opened.close()
            return result
        } catch {
            await opened.close()
            throw error
        }
    }
}

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate", abstract: "Create or update the database schema, and say which version it is at.",
        discussion: "`serve` does the same at start; run this to prepare an empty database for `import`.")
    @OptionGroup var store: StoreOptions

    func run() async throws {
        let (location, version) = try await store.with { opened in
            (opened.location, try await opened.read { try await $0.schemaVersion() })
        }
        print("\(location): schema at version \(version)")
    }
}

struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write every request, grant, token, audit event and limit to JSON lines.",
        discussion: "Token secrets are stored only as hashes, and are exported as such. Keep the file as safe as the database.")
    @OptionGroup var store: StoreOptions
    @Option(name: .shortAndLong, help: "Write to this file instead of standard output.") var output: String?

    func run() async throws {
        // An export reads a store that exists: a mistyped path must not make (and export) an empty one.
        if let file = GatehouseStore.sqliteFile(of: store.url), !file.isEmpty, !file.hasPrefix("file:"), !FileManager.default.fileExists(atPath: file) {
            throw CLIError.failure("there is no database at \(file); check --database (or $GATEHOUSE_DATABASE): export reads an existing store")
        }
        let sink: FileHandle
        // A file (or none yet) is written beside and renamed over at the end: a failed export leaves an earlier
        // file as it was. Anything else (/dev/stdout, a pipe) is written as it is.
        let partial = output.flatMap { Self.isFileOrMissing($0) ? "\($0).partial-\(getpid())" : nil }
        if let partial {
            guard FileManager.default.createFile(atPath: partial, contents: nil, attributes: [.posixPermissions: 0o600]),
                  let handle = FileHandle(forWritingAtPath: partial) else {
                throw CLIError.failure("cannot write \(partial); check that the folder of \(output ?? partial) exists and is writable")
            }
            sink = handle
        } else if let output {
            guard let handle = FileHandle(forWritingAtPath: output) else { throw CLIError.failure("cannot write \(output)") }
            sink = handle
        } else {
            sink = FileHandle.standardOutput
        }
        let (location, summary): (String, StoreTransfer.Summary)
        do {
            (location, summary) = try await store.with { opened in
                (opened.location, try await StoreTransfer.export(opened) { line in try sink.write(contentsOf: Data((line + "\n").utf8)) })
            }
            try sink.synchronize()
        } catch {
            if let partial { try? FileManager.default.removeItem(atPath: partial) }
            throw error
        }
        if let partial, let output, rename(partial, output) != 0 {
            throw CLIError.failure("cannot move the export to \(output) (\(String(cString: strerror(errno)))); it is in \(partial)")
        }
        try? FileHandle.standardError.write(contentsOf: Data("exported \(summary.total) rows (\(summary.auditEvents) audit events, schema version \(summary.schemaVersion)) from \(location)\n".utf8))
    }
}

extension ExportCommand {
    /// Whether `path` is a regular file or nothing yet (not a device, a pipe or a link to one).
    static func isFileOrMissing(_ path: String) -> Bool {
        var status = stat()
        guard lstat(path, &status) == 0 else { return errno == ENOENT }
        return status.st_mode & S_IFMT == S_IFREG
    }
}

struct ImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import", abstract: "Load an export into a new, empty database; the audit chain must verify there.",
        discussion: "All or nothing: one transaction. Prepare the target with `gatehouse migrate --database URL`, import, then start `serve` on it.")
    @OptionGroup var store: StoreOptions
    @Option(name: .shortAndLong, help: "Read from this file instead of standard input.") var input: String?
    @Option(name: .customLong("anchor"), help: "An audit event recorded elsewhere, SEQ:HASH or a webhook id (msg_SEQ_HASH), that the export must hold; repeatable.")
    var anchors: [String] = []

    func validate() throws {
        do { _ = try AuditChain.Anchor.parse(anchors) } catch { throw ValidationError("--anchor: \(error.message)") }
    }

    func run() async throws {
        let handle: FileHandle
        if let input {
            guard let opened = FileHandle(forReadingAtPath: input) else { throw CLIError.failure("cannot read \(input); check the path and its permissions") }
            handle = opened
        } else {
            handle = FileHandle.standardInput
        }
        // Line by line: an export of millions of rows is never held in memory whole.
        let lines = FileLines(handle)
        let (location, summary) = try await store.with { opened in
            (opened.location, try await StoreTransfer.import(opened, anchors: anchors.compactMap(AuditChain.Anchor.init), next: { try lines.next() }))
        }
        print("imported \(summary.total) rows into \(location); the audit chain verifies (\(summary.auditEvents) events)")
    }
}
