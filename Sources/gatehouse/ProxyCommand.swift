import ArgumentParser
import Foundation
import GatehouseApp
import GatehouseCore
import GatehouseIdentity
import GatehouseProxy
import GatehouseServer
import GatehouseStore
import Logging
import ServiceLifecycle

/// What `serve` and `proxy` both do before they run: read the policy, open the store, make the
/// bootstrap admin.
enum ServerSetup {
    static func open(policy: String?, database: String?, logLevel: String, logFormat: ServeConfiguration.LogFormat = .text,
                     environment env: [String: String]) async throws -> (Logger, GatehouseStore, UseCases, GatehouseMetrics) {
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("--log-level: unknown level '\(logLevel)'") }
        LoggingSystem.bootstrap { label in
            switch logFormat {
            case .json: JSONLogHandler(label: label)
            case .text: StreamLogHandler.standardError(label: label)
            }
        }
        var logger = Logger(label: "gatehouse")
        logger.logLevel = level
        let policyPath = policy ?? env["GATEHOUSE_POLICY"] ?? "gatehouse.yaml"
        guard FileManager.default.fileExists(atPath: policyPath) else {
            throw CLIError.failure("policy file \(policyPath) not found; pass --policy FILE (an example is in examples/policy.yaml)")
        }
        let loaded = try PolicyLoader.load(file: policyPath)
        for warning in loaded.warnings { logger.warning("\(warning.located(in: policyPath))") }
        guard let initialPolicy = loaded.policy else {
            throw CLIError.failure(PolicyError(file: policyPath, problems: loaded.errors).description + "\nrefusing to start with an invalid policy")
        }
        if let oidc = initialPolicy.identity.oidc {
            // A sign-in that cannot work should stop the start, not surprise the first person.
            do { _ = try OIDCClient.clientSecret(oidc.clientSecret, environment: env) } catch {
                throw CLIError.failure("\(policyPath): \(error)")
            }
        }
        // A webhook secret that cannot sign (missing, or not `whsec_` and base64) would fail every delivery, quietly.
        for endpoint in initialPolicy.notifications.webhooks {
            do { _ = try endpoint.signingKey(environment: env) } catch { throw CLIError.failure("\(policyPath): notifications.webhooks: \(error.message)") }
        }
        if let slack = initialPolicy.notifications.slack {
            for (reference, name) in [(slack.botToken, "the Slack bot token"), (slack.signingSecret, "the Slack signing secret")] {
                do { _ = try reference.read(name, environment: env) } catch { throw CLIError.failure("\(policyPath): notifications.slack: \(error.message)") }
            }
        }
        let adminToken = env["GATEHOUSE_ADMIN_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        if let adminToken, adminToken.count < 16 {
            throw CLIError.failure("GATEHOUSE_ADMIN_TOKEN must be at least 16 characters; generate one with `head -c 24 /dev/urandom | base64`")
        }
        let databaseURL = database ?? env["GATEHOUSE_DATABASE"] ?? "sqlite:gatehouse.db"
        let store = try await GatehouseStore.open(url: databaseURL, logger: logger)
        let metrics = GatehouseMetrics()
        let service = UseCases(store: store, policies: PolicyHolder(initialPolicy, path: policyPath), clock: SystemClock(), logger: logger,
                               metrics: metrics)
        if let adminToken {
            do {
                switch try await service.tokens.bootstrapAdmin(token: adminToken) {
                case .created: logger.notice("created the bootstrap admin from GATEHOUSE_ADMIN_TOKEN")
                case .present: break
                case .otherValue:
                    logger.warning("GATEHOUSE_ADMIN_TOKEN is not the bootstrap admin's token: only the value of the first start counts, and this one will be refused")
                case .revoked(let by, let at):
                    logger.warning("the bootstrap admin token was revoked by \(by) at \(at.rfc3339): GATEHOUSE_ADMIN_TOKEN no longer works; another admin must create admin tokens")
                }
            } catch {
                await store.close()
                throw error
            }
        }
        do {
            // Names that left the policy while Gatehouse was stopped lose their tokens now.
            let ended = try await service.signIns.endRemovedPrincipals(actor: "policy")
            if !ended.isEmpty { logger.notice("principals removed from the policy lost their tokens and grants", metadata: ["principals": "\(ended)"]) }
            try await service.signIns.refreshPeople()
        } catch {
            await store.close()
            throw error
        }
        return (logger, store, service, metrics)
    }
}

struct ProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "Run only the PostgreSQL guard proxy (no HTTP API) on the store `serve` uses.",
        discussion: """
        Serves every resource of the policy that has a `proxy:` section. The store must be one that \
        several processes can share: postgres://... or sqlite:PATH?mode=shared. To run the proxy inside \
        the server instead, use `gatehouse serve --proxy`.
        """)

    @Option(help: "The policy file (default: $GATEHOUSE_POLICY or gatehouse.yaml).", completion: .file(extensions: ["yaml", "yml"])) var policy: String?
    @Option(help: "The store `serve` uses (default: $GATEHOUSE_DATABASE or sqlite:gatehouse.db).") var database: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error.") var logLevel: String = "info"
    @Option(help: "Log lines as text or json (one object per line).") var logFormat: ServeConfiguration.LogFormat = .text

    func run() async throws {
        let env = ProcessInfo.processInfo.environment
        let (logger, store, service, _) = try await ServerSetup.open(policy: policy, database: database, logLevel: logLevel, logFormat: logFormat,
                                                                     environment: env)
        let guardProxy = GuardProxy(service: service, logger: logger)
        do {
            try guardProxy.validate()
            let group = ServiceGroup(configuration: .init(services: [.init(service: guardProxy),
                                                                     .init(service: PolicyReloadOnHangup(service: service, logger: logger))],
                                                          gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
        } catch {
            await store.close()
            throw CLIError.failure("\(error)")
        }
        await store.close()
    }
}

extension ServeConfiguration.LogFormat: ExpressibleByArgument {}
