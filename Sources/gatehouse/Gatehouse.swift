import ArgumentParser
import Foundation
import GatehouseApp
import GatehouseCore
import GatehouseProxy
import GatehouseServer
import GatehouseStore
import Logging
import ServiceLifecycle

@main
struct Gatehouse: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gatehouse",
        abstract: "Just-in-time access: request, approve, check and audit time-boxed access.",
        discussion: """
            Client commands read GATEHOUSE_URL and GATEHOUSE_TOKEN. Exit codes: 0 success or allowed, 1 error, \
            2 usage, 3 approval required, 4 denied.
            """,
        version: "gatehouse \(BuildInfo.version)",
        subcommands: [
            ServeCommand.self, PolicyCommand.self, TokenCommand.self, RequestCommand.self, RequestsCommand.self,
            ShowCommand.self, ApproveCommand.self, DenyCommand.self, CancelCommand.self, GrantsCommand.self,
            ReleaseCommand.self, RevokeCommand.self, CheckCommand.self, ClassifyCommand.self, ExecCommand.self,
            ReportCommand.self, ReviewCommand.self, PrincipalsCommand.self, UnblockCommand.self, ProxyCommand.self,
            AuditCommand.self, WhoamiCommand.self, MigrateCommand.self, ExportCommand.self, ImportCommand.self,
            BreakGlassCommand.self, WebhooksCommand.self, LoginCommand.self, LogoutCommand.self, SessionsCommand.self,
        ])

    /// Runs the command and maps every outcome to the documented exit codes.
    static func main() async {
        // Set once the arguments are read: a mistake found while running is about that command.
        var ran: (any ParsableCommand.Type)? = nil
        do {
            var command = try await asyncParseAsRoot()
            ran = type(of: command)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as CLIError {
            switch error {
            case .usage(let message):
                fail(message, code: "usage", exitCode: 2)
            case .failure(let message):
                fail(message, code: "error", exitCode: 1)
            case .api(let status, let code, let message, let body):
                // The same shape as every other error, with the server's status and field.
                var extra: [String: Any] = ["status": status]
                if let field = (try? JSONSerialization.jsonObject(with: body) as? [String: Any])?["field"] as? String { extra["field"] = field }
                // Being refused by policy is a denial, not a malfunction.
                // Denied by the policy: a role the caller may not request, break-glass the policy does not allow them.
                let deniedByPolicy = [ErrorCode.notARequester, "not_allowed_break_glass", "break_glass_disabled"].contains(code)
                fail(message, code: code, exitCode: deniedByPolicy ? 4 : 1, prefix: "error (\(status))", extra: extra)
            case .outcome(let code):
                Foundation.exit(code)
            }
        } catch let error where GatehouseStore.isDatabaseError(error) {
            // A database error that reached the command as it was (an import's rows, a store's statements).
            fail("the database refused: \(GatehouseStore.explain(error))", code: "database_error", exitCode: 1)
        } catch let error as GatehouseError {
            fail(error.message, code: error.code, exitCode: 1)
        } catch {
            let code = Gatehouse.exitCode(for: error)
            if code == .success {
                let message = fullMessage(for: error)
                if !message.isEmpty { print(message) }
                Foundation.exit(0)
            }
            var message = oneLine(fullMessage(for: error))
            // ArgumentParser points a mistake found while a subcommand ran at the top-level help.
            if let ran, ran != Gatehouse.self, message.hasSuffix(" (see 'gatehouse --help')") {
                message.removeLast(" (see 'gatehouse --help')".count)
            }
            fail(message, code: code == .validationFailure ? "usage" : "error",
                 exitCode: code == .validationFailure ? 2 : code.rawValue)
        }
    }

    /// ArgumentParser's message in one line, as every failure is said: its first line without "Error: "
    /// (ours say "error: " once), and the command whose help explains more, instead of the usage it prints
    /// below. The lines of a message without that pointer are joined.
    static func oneLine(_ message: String) -> String {
        let lines = message.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard var first = lines.first else { return message }
        if first.hasPrefix("Error: ") { first.removeFirst("Error: ".count) }
        guard let see = lines.first(where: { $0.hasPrefix("See '") }), let open = see.firstIndex(of: "'"),
              let close = see.lastIndex(of: "'"), open < close else {
            return ([first] + lines.dropFirst()).joined(separator: "; ")
        }
        return "\(first) (see \(see[open...close]))"
    }

    /// `--output json` was asked for, however it was spelled.
    static var wantsJSON: Bool {
        let args = CommandLine.arguments
        return args.contains("--output=json") || zip(args, args.dropFirst()).contains { $0 == "--output" && $1 == "json" }
    }

    /// Reports a failure on stderr, and as a JSON object on stdout when JSON output was asked for.
    /// Every failure the same way: one line on stderr, and with `--output json` one object on stdout
    /// (`error`, `code`; `status` and `field` when the server refused).
    static func fail(_ message: String, code: String, exitCode: Int32, prefix: String = "error", extra: [String: Any] = [:]) -> Never {
        if wantsJSON, let data = try? JSONSerialization.data(withJSONObject: extra.merging(["error": message, "code": code]) { $1 },
                                                             options: [.sortedKeys, .withoutEscapingSlashes]) {
            FileHandle.standardOutput.write(data + Data("\n".utf8))
        }
        if !message.isEmpty { FileHandle.standardError.write(Data("\(prefix): \(message)\n".utf8)) }
        Foundation.exit(exitCode)
    }
}

struct ServeCommand: AsyncParsableCommand {

    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Run the Gatehouse server.",
        discussion: """
            Each setting comes from its flag, else its GATEHOUSE_* environment variable, else the configuration \
            file (--config or $GATEHOUSE_CONFIG: a YAML mapping of policy, database, host, port, sweep_every, \
            retention, log_level, log_format, proxy, trusted_proxies), else its default. SIGTERM or SIGINT stops the server gracefully: it stops \
            accepting connections and finishes the requests under way.
            """)

    @Option(help: "A YAML file of settings (default: $GATEHOUSE_CONFIG; flags and GATEHOUSE_* variables win over it).") var config: String?
    @Option(help: "The policy file ($GATEHOUSE_POLICY; default gatehouse.yaml).") var policy: String?
    @Option(help: "sqlite:PATH (sqlite:PATH?mode=shared for several processes on one file) or postgres://USER:PASSWORD@HOST:PORT/DB for several instances ($GATEHOUSE_DATABASE; default sqlite:gatehouse.db).") var database: String?
    @Option(help: "Address to listen on ($GATEHOUSE_HOST; default 127.0.0.1).") var host: String?
    @Option(help: "Port to listen on ($GATEHOUSE_PORT; default 8080).") var port: String?
    @Option(help: "How often to sweep expired grants and requests ($GATEHOUSE_SWEEP_EVERY; default 1s).") var sweepEvery: String?
    @Option(help: "How long notifications, Slack message references and expired session tokens are kept, 1d to 3650d ($GATEHOUSE_RETENTION; default 30d); the audit log is kept for good.") var retention: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error ($GATEHOUSE_LOG_LEVEL; default info).") var logLevel: String?
    @Option(help: "Log lines as text or json, one object per line ($GATEHOUSE_LOG_FORMAT; default text).") var logFormat: String?
    @Flag(help: "Also run the PostgreSQL guard proxy for every resource with a `proxy:` section ($GATEHOUSE_PROXY=true).") var proxy = false
    @Option(help: "Reverse proxies whose X-Forwarded-For names the client, as addresses (or CIDR blocks holding only proxies) separated by commas, e.g. 10.0.0.5,10.0.0.6: whoever connects from them is believed about who the client is ($GATEHOUSE_TRUSTED_PROXIES; default none: every connection is its own client).") var trustedProxies: String?

    /// The settings from the flags, the environment and the configuration file.
    func settings(environment env: [String: String]) throws -> ServeConfiguration {
        var flags: [String: String] = [:]
        for (key, value) in [("policy", policy), ("database", database), ("host", host), ("port", port), ("sweep_every", sweepEvery),
                             ("log_level", logLevel), ("log_format", logFormat), ("retention", retention),
                             ("trusted_proxies", trustedProxies)] {
            if let value { flags[key] = value }
        }
        if proxy { flags["proxy"] = "true" }
        var file: (String, String)?
        if let path = config ?? env["GATEHOUSE_CONFIG"].flatMap({ $0.isEmpty ? nil : $0 }) {
            do { file = (path, try TextFile.read(path)) } catch {
                throw CLIError.failure("cannot read the configuration file \(path): \(error.why)")
            }
        }
        do { return try ServeConfiguration.resolve(flags: flags, environment: env, file: file) } catch {
            throw CLIError.usage("\(error)")
        }
    }

    func run() async throws {
        let env = ProcessInfo.processInfo.environment
        let settings = try settings(environment: env)
        let sweepInterval = try TimeSpan.parse(settings.sweepEvery)
        let retention = try TimeSpan.parse(settings.retention)
        let (host, port) = (settings.host, settings.port)
        if let problem = GatehouseHTTP.listenProblem(host: host, port: port) { throw CLIError.failure(problem) }
        let (logger, store, service, metrics) = try await ServerSetup.open(policy: settings.policy, database: settings.database, logLevel: settings.logLevel,
                                                                           logFormat: settings.logFormat, environment: env)
        let proxy = settings.proxy
        let guardProxy = proxy ? GuardProxy(service: service, logger: logger) : nil
        if let guardProxy {
            do { try guardProxy.validate() } catch {
                await store.close()
                throw CLIError.failure("\(error)")
            }
        }
        let runLogger = logger
        let app = try GatehouseHTTP.makeApplication(
            service: service, metrics: metrics, host: host, port: port, logger: logger, trustedProxies: settings.trustedProxies,
            services: [Sweeper(service: service, interval: .seconds(sweepInterval.seconds), retention: TimeInterval(retention.seconds), logger: logger),
                       WebhookDispatcher(service: service, logger: logger),
                       PolicyReloadOnHangup(service: service, logger: logger)] + (guardProxy.map { [$0] } ?? []),
            onServerRunning: { channel in
                runLogger.notice("gatehouse listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")", "store": "\(store.location)"])
            })
        do {
            try await app.runService()
        } catch {
            await store.close()
            throw error
        }
        await store.close()
    }
}
