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
        do {
            var command = try parseAsRoot()
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
                if wantsJSON { FileHandle.standardOutput.write(body + Data("\n".utf8)) }
                FileHandle.standardError.write(Data("error (\(status)): \(message)\n".utf8))
                // Being refused by policy is a denial, not a malfunction.
                Foundation.exit(code == ErrorCode.notARequester ? 4 : 1)
            case .outcome(let code):
                Foundation.exit(code)
            }
        } catch let error as GatehouseError {
            fail(error.message, code: error.code, exitCode: 1)
        } catch {
            let code = Gatehouse.exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                if !message.isEmpty { print(message) }
                Foundation.exit(0)
            }
            fail(message, code: code == .validationFailure ? "usage" : "error", exitCode: code == .validationFailure ? 2 : code.rawValue)
        }
    }

    /// `--output json` was asked for, however it was spelled.
    static var wantsJSON: Bool {
        let args = CommandLine.arguments
        return args.contains("--output=json") || zip(args, args.dropFirst()).contains { $0 == "--output" && $1 == "json" }
    }

    /// Reports a failure on stderr, and as a JSON object on stdout when JSON output was asked for.
    static func fail(_ message: String, code: String, exitCode: Int32) -> Never {
        if wantsJSON, let data = try? JSONSerialization.data(withJSONObject: ["error": message, "code": code], options: [.sortedKeys]) {
            FileHandle.standardOutput.write(data + Data("\n".utf8))
        }
        if !message.isEmpty { FileHandle.standardError.write(Data("error: \(message)\n".utf8)) }
        Foundation.exit(exitCode)
    }
}

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Run the Gatehouse server.")

    @Option(help: "The policy file (default: $GATEHOUSE_POLICY or gatehouse.yaml).") var policy: String?
    @Option(help: "sqlite:PATH (sqlite:PATH?mode=shared for several processes on one file) or postgres://USER:PASSWORD@HOST:PORT/DB for several instances (default: $GATEHOUSE_DATABASE or sqlite:gatehouse.db).") var database: String?
    @Option(help: "Address to listen on.") var host: String = "127.0.0.1"
    @Option(help: "Port to listen on.") var port: Int = 8080
    @Option(help: "How often to sweep expired grants and requests.") var sweepEvery: String = "1s"
    @Option(help: "Log level: trace, debug, info, notice, warning, error.") var logLevel: String = "info"
    @Flag(help: "Also run the PostgreSQL guard proxy for every resource with a `proxy:` section.") var proxy = false

    func run() async throws {
        let env = ProcessInfo.processInfo.environment
        let sweepInterval: TimeSpan
        do { sweepInterval = try TimeSpan.parse(sweepEvery) } catch { throw ValidationError("--sweep-every: \(error.description)") }
        guard (1...65535).contains(port) else { throw ValidationError("--port must be between 1 and 65535") }
        let (logger, store, service, metrics) = try await ServerSetup.open(policy: policy, database: database, logLevel: logLevel, environment: env)
        let guardProxy = proxy ? GuardProxy(service: service, logger: logger) : nil
        if let guardProxy {
            do { try guardProxy.validate() } catch {
                await store.close()
                throw CLIError.failure("\(error)")
            }
        }
        let runLogger = logger
        let app = try GatehouseHTTP.makeApplication(
            service: service, metrics: metrics, host: host, port: port, logger: logger,
            services: [Sweeper(service: service, interval: .seconds(sweepInterval.seconds), logger: logger),
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
