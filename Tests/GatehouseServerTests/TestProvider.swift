import Foundation
import GatehouseTestSupport
import Testing

/// A real OpenID Connect provider (django-oauth-toolkit, scripts/oidc-provider.sh) in a fresh
/// folder, with Gatehouse registered as a client. People sign in through its own login page.
final class TestProvider: Sendable {
    static let clientID = "gatehouse"
    static let clientSecret = "test-client-secret-0123456789"

    let folder: String
    let issuer: String

    private init(folder: String, issuer: String) {
        self.folder = folder
        self.issuer = issuer
    }

    static func start() async throws -> TestProvider {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("oidc-\(UUID().uuidString)").path
        let issuer = try await RepositoryScript.run("oidc-provider.sh", ["start", folder])
        let provider = TestProvider(folder: folder, issuer: issuer)
        // Loopback redirect URIs match on any port (RFC 8252): the web callback and the CLI's listener.
        _ = try await provider.manage(["fixture_client", clientID, "--secret", clientSecret,
                                       "--redirect-uri", "http://127.0.0.1/auth/callback", "--redirect-uri", "http://127.0.0.1/callback"])
        try clientSecret.write(toFile: folder + "/gatehouse-client-secret", atomically: true, encoding: .utf8)
        return provider
    }

    /// Stops the provider and keeps its folder (the client secret file stays readable).
    func halt() async {
        _ = try? await RepositoryScript.run("oidc-provider.sh", ["stop", folder])
    }

    func stop() async {
        _ = try? await RepositoryScript.run("oidc-provider.sh", ["stop", folder])
        try? FileManager.default.removeItem(atPath: folder)
    }

    static func with<T>(_ body: (TestProvider) async throws -> T) async throws -> T {
        let provider = try await start()
        do {
            let result = try await body(provider)
            await provider.stop()
            return result
        } catch {
            await provider.stop()
            throw error
        }
    }

    func manage(_ arguments: [String]) async throws -> String {
        try await RepositoryScript.run("oidc-provider.sh", ["manage", folder] + arguments)
    }

    /// Creates or updates a person at the provider; their password is `pw-NAME`.
    @discardableResult
    func person(_ name: String, groups: [String], email: String? = nil, verified: Bool = true, renameTo: String? = nil) async throws -> String {
        var arguments = ["fixture_user", name, "--password", "pw-\(renameTo ?? name)", "--email", email ?? "\(name)@example.test",
                         "--groups", groups.joined(separator: ","), "--email-verified", verified ? "yes" : "no"]
        if let renameTo { arguments += ["--rename-to", renameTo] }
        return try await manage(arguments)
    }

    func rotateKey() async throws { _ = try await RepositoryScript.run("oidc-provider.sh", ["rotate-key", folder]) }

    var signingKeyPEM: String { (try? String(contentsOfFile: folder + "/keys/signing.pem", encoding: .utf8)) ?? "" }
    var clientSecretFile: String { folder + "/gatehouse-client-secret" }

    struct Visit: Decodable {
        var url: String
        var status: Int?
        var stoppedAt: String?
        var cookies: [String: String]
        var body: String?
        var accepted: Bool?
        enum CodingKeys: String, CodingKey { case url, status, cookies, body, accepted; case stoppedAt = "stopped_at" }
    }

    /// A person's browser: from `url`, through the provider's login form, until a URL starting with
    /// `stopAt`; with `deviceCode`, entering it on the provider's device page and accepting.
    func browse(_ url: String, as person: String, stopAt: String? = nil, deviceCode: String? = nil) async throws -> Visit {
        var arguments = [url, person, "pw-\(person)"]
        if let stopAt { arguments += ["--stop-at", stopAt] }
        if let deviceCode { arguments += ["--device", deviceCode] }
        let output = try await RepositoryScript.run("oidc-provider.sh", ["browse"] + arguments)
        return try JSONDecoder().decode(Visit.self, from: Data(output.utf8))
    }

    /// The identity section for a Gatehouse at `baseURL`.
    func identityYAML(baseURL: String, extra: String = "", oidcExtra: String = "") -> String {
        """
        identity:
          oidc:
            issuer: \(issuer)
            client_id: \(Self.clientID)
            client_secret_file: \(clientSecretFile)
            redirect_uri: \(baseURL)/auth/callback
            display_name: Test SSO
            session_max: 8h
            groups:
              oncall: [engineers]
              db-leads: [leads]
              secops: [security]
        \(oidcExtra)
        \(extra)
        """
    }
}
