import Foundation
import GatehouseApp
import GatehouseCore
import GatehouseIdentity
import GatehouseStore
import Logging
import Synchronization

/// The sign-in flow end to end, for the web inbox and the CLI's API: starts a sign-in (state,
/// nonce, PKCE), and finishes it (the state taken once, the code exchanged, the ID token verified,
/// the person bound and given a session). The OIDC client follows the running policy: a reload
/// that changes `identity.oidc` makes a new one.
final class ProviderLink: Sendable {
    let service: UseCases
    let environment: [String: String]
    let logger: Logger
    private let current = Mutex<(OIDCSettings, String, OIDCClient)?>(nil)

    init(service: UseCases, environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger) {
        self.service = service
        self.environment = environment
        self.logger = logger
    }

    var settings: OIDCSettings? { service.signIns.settings }

    func client() throws -> OIDCClient {
        guard let settings else {
            throw GatehouseError(.notFound, "no_identity_provider", "this Gatehouse has no identity provider (`identity.oidc` in the policy); sign in with a token")
        }
        // Read at every sign-in, so a rotated secret (file or environment) takes effect without a restart.
        let secret: String
        do { secret = try OIDCClient.clientSecret(settings.clientSecret, environment: environment) } catch {
            throw GatehouseError(.unavailable, ErrorCode.providerUnavailable, "sign-in is not available: \(error)")
        }
        if let (known, knownSecret, client) = current.withLock({ $0 }), known == settings, knownSecret == secret { return client }
        let client = OIDCClient(settings: settings, clientSecret: secret, logger: logger)
        current.withLock { $0 = (settings, secret, client) }
        return client
    }

    /// Sign-ins each client address may start (`SignInStarts`).
    let starts = SignInStarts()

    /// The provider URL to send the person to, and what the sign-in needs later.
    func start(purpose: PendingSignIn.Purpose, loopbackRedirect: String? = nil, sourceIP: String?) async throws -> (url: String, started: SignIns.Started) {
        let client = try client()
        try starts.admit(sourceIP, now: service.clock.now())
        let started = try await service.signIns.begin(purpose: purpose, loopbackRedirect: loopbackRedirect)
        do {
            let url = try await client.authorizationURL(state: started.state, nonce: started.nonce, codeChallenge: started.codeChallenge,
                                                        redirectURI: started.redirectURI)
            return (url, started)
        } catch let error as OIDCError {
            throw Self.gatehouseError(error)
        }
    }

    /// Finishes a sign-in: every refusal is audited and leaves no session behind.
    func finish(state: String, code: String, purpose: PendingSignIn.Purpose, clientSecret: String? = nil, sourceIP: String?) async throws -> SignIns.Established {
        let client = try client()
        let pending = try await service.signIns.take(state: state, purpose: purpose, clientSecret: clientSecret)
        guard !code.isEmpty, code.utf8.count <= 2048 else {
            throw GatehouseError.invalid("code", "missing_code", "the provider's redirect carried no code; start the sign-in again")
        }
        let claims: IDTokenClaims
        do {
            let idToken = try await client.exchange(code: code, verifier: pending.verifier, redirectURI: pending.redirectURI)
            claims = try await client.verify(idToken: idToken, nonce: pending.nonce, now: service.clock.now())
        } catch let error as OIDCError {
            if case .refused(let refusal) = error {
                await service.signIns.refuse(refusal, issuer: client.settings.issuer, subject: nil, sourceIP: sourceIP)
            }
            throw Self.gatehouseError(error)
        }
        return try await service.signIns.establish(claims: claims, purpose: purpose, sourceIP: sourceIP)
    }

    /// Starts a device sign-in (RFC 8628) at the provider, for a terminal without a browser.
    func startDevice(sourceIP: String?) async throws -> (OIDCClient.DeviceAuthorization, secret: String, expiresAt: Date) {
        let client = try client()
        guard client.settings.deviceFlow else {
            throw GatehouseError(.forbidden, "device_flow_disabled", "sign-in with a device code is switched off (`identity.oidc.device_flow: enabled` turns it on); run `gatehouse login` on a machine with a browser")
        }
        try starts.admit(sourceIP, now: service.clock.now())
        do {
            let device = try await client.startDevice()
            let (secret, expiresAt) = try await service.signIns.beginDevice(deviceCode: device.deviceCode, expiresIn: device.expiresIn)
            return (device, secret, expiresAt)
        } catch let error as OIDCError {
            throw Self.gatehouseError(error)
        }
    }

    enum DeviceOutcome {
        case pending(slowDown: Bool)
        case signedIn(SignIns.Established)
    }

    /// One poll of a device sign-in: still waiting, or signed in (or refused, audited, and over).
    func pollDevice(secret: String, sourceIP: String?) async throws -> DeviceOutcome {
        let client = try client()
        let pending = try await service.signIns.pendingDevice(secret: secret)
        let claims: IDTokenClaims
        do {
            switch try await client.pollDevice(deviceCode: pending.verifier, now: service.clock.now()) {
            case .pending: return .pending(slowDown: false)
            case .slowDown: return .pending(slowDown: true)
            case .signedIn(let found): claims = found
            }
        } catch let error as OIDCError {
            if case .refused(let refusal) = error {
                try? await service.signIns.endDevice(secret: secret)
                await service.signIns.refuse(refusal, issuer: client.settings.issuer, subject: nil, sourceIP: sourceIP)
            }
            throw Self.gatehouseError(error)
        }
        try await service.signIns.endDevice(secret: secret)
        return .signedIn(try await service.signIns.establish(claims: claims, purpose: .device, sourceIP: sourceIP))
    }

    static func gatehouseError(_ error: OIDCError) -> GatehouseError {
        switch error {
        case .providerUnavailable(let message): GatehouseError(.unavailable, ErrorCode.providerUnavailable, message)
        case .refused(let refusal): GatehouseError(.unauthorized, ErrorCode.signInRefused, "sign-in refused (\(refusal.code)): \(refusal.message)")
        }
    }
}

/// Sign-ins one client address may start. Starting needs no credentials and each start is kept for 10
/// minutes, so no one address may fill the sign-ins under way (`SignIns.pendingCap`, where the oldest give
/// way) by itself: 120 a minute, 240 at once, which holds at most about 1,400 under way per address. Behind a
/// reverse proxy every start comes from the proxy's address; the limit is then everyone's, and still a sign-in
/// every half second. Kept in memory, per instance.
final class SignInStarts: Sendable {
    static let rate = RateLimit(count: 120, period: TimeSpan(seconds: 60), burst: 240)
    /// GCRA state by address; an address whose state is in the past is as good as unseen, so those are dropped
    /// once many are kept.
    private let tats = Mutex<[String: Int64]>([:])

    func admit(_ address: String?, now: Date) throws {
        let key = address ?? "unknown"
        let milliseconds = now.unixMilliseconds
        let outcome = tats.withLock { tats -> GCRA.Outcome in
            if tats.count > 10_000 { tats = tats.filter { $0.value > milliseconds } }
            let outcome = GCRA.attempt(tat: tats[key], now: milliseconds, limit: Self.rate)
            if outcome.allowed { tats[key] = outcome.tat }
            return outcome
        }
        guard !outcome.allowed else { return }
        let message = "too many sign-ins were started from \(key.prefix(64)) (at most \(Self.rate.count) a minute); try again shortly"
        var error = GatehouseError(.tooManyRequests, ErrorCode.tooManyRequests, message)
        error.refusal = LimitRefusal(policy: "per-source-ip", message: message, retryAfterSeconds: LimitRefusal.seconds(outcome.retryAfterMilliseconds),
                                     quota: Self.rate.count, windowSeconds: Self.rate.period.seconds)
        throw error
    }
}
