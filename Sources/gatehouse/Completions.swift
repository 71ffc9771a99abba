import ArgumentParser
import Foundation
import GatehouseAPI
import GatehouseClient

/// Values the shell completes from the server the command line points at: `--url`/`--token` on the line,
/// else GATEHOUSE_URL/GATEHOUSE_TOKEN or the `gatehouse login` session, as every command finds them.
/// Asked with a short deadline; when the server cannot be reached, or says no, nothing is offered.
enum Completions {
    /// Resources the caller may ask for (from `GET /v1/whoami`).
    static let resources = CompletionKind.custom { (words: [String], _: Int, prefix: String) async -> [String] in
        await requestable(words).map(\.resource).filter { $0.hasPrefix(prefix) }
    }

    /// The roles the caller may ask for on the resource already on the line (all their roles when none is).
    static let roles = CompletionKind.custom { (words: [String], _: Int, prefix: String) async -> [String] in
        let known = await requestable(words)
        let named = known.first { entry in words.contains(entry.resource) }
        let roles = named.map(\.roles) ?? Array(Set(known.flatMap(\.roles))).sorted()
        return roles.filter { $0.hasPrefix(prefix) }
    }

    /// Pending requests waiting for the caller's approval.
    static let requestsToApprove = CompletionKind.custom { (words: [String], _: Int, prefix: String) async -> [String] in
        await ask(words) { try await $0.listRequests(query: .init(scope: .toApprove, state: .pending)).ok.body.json.requests.map(\.id) }?
            .filter { $0.hasPrefix(prefix) } ?? []
    }

    /// The caller's own requests, newest first.
    static let ownRequests = CompletionKind.custom { (words: [String], _: Int, prefix: String) async -> [String] in
        await ask(words) { try await $0.listRequests(query: .init(scope: .mine)).ok.body.json.requests.map(\.id) }?
            .filter { $0.hasPrefix(prefix) } ?? []
    }

    /// The caller's active grants.
    static let ownGrants = CompletionKind.custom { (words: [String], _: Int, prefix: String) async -> [String] in
        await ask(words) { try await $0.listGrants(query: .init(active: true)).ok.body.json.grants.map(\.id) }?
            .filter { $0.hasPrefix(prefix) } ?? []
    }

    static let actionKinds = CompletionKind.list(["sql", "shell"])
    static let outputFormats = CompletionKind.list(OutputFormat.allCases.map(\.rawValue))
    static let requestStates = CompletionKind.list(["pending", "approved", "denied", "expired", "canceled", "quarantined"])

    struct Requestable: Sendable {
        var resource: String
        var roles: [String]
    }

    static func requestable(_ words: [String]) async -> [Requestable] {
        await ask(words) { try await $0.whoami().ok.body.json.requestable.map { Requestable(resource: $0.resource, roles: $0.roles) } } ?? []
    }

    /// One question as the command line would ask it, or nil. The completing shell waits for this, so it
    /// gives up after `deadline` (3 seconds unless GATEHOUSE_COMPLETION_TIMEOUT says otherwise; an address
    /// that does not accept a connection within two thirds of it, sooner).
    static func ask<T: Sendable>(_ words: [String], _ question: @escaping @Sendable (Client) async throws -> T) async -> T? {
        var options = ClientOptions()
        options.url = value(of: "--url", in: words)
        options.token = value(of: "--token", in: words)
        guard var client = try? options.client() else { return nil }
        let deadline = Self.deadline(ProcessInfo.processInfo.environment["GATEHOUSE_COMPLETION_TIMEOUT"])
        client.connectTimeout = .milliseconds(Int64(deadline * 2000 / 3))
        let caller = client
        return await withTaskGroup(of: T?.self) { group in
            group.addTask { try? await caller.run(question) }
            group.addTask {
                try? await Task.sleep(for: .seconds(deadline))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    /// How long completion waits for the server, in seconds: GATEHOUSE_COMPLETION_TIMEOUT when it is a number
    /// from 0.1 to 60 (a slow link, a busy server), else 3. Completion cannot report an error, so a value
    /// that is not one is ignored.
    static func deadline(_ setting: String?) -> Double {
        guard let setting, let seconds = Double(setting.trimmingCharacters(in: .whitespaces)), seconds >= 0.1, seconds <= 60 else { return 3 }
        return seconds
    }

    /// The value given to an option on the line (`--url X` or `--url=X`), as the shell passed the word.
    static func value(of option: String, in words: [String]) -> String? {
        for (index, word) in words.enumerated() {
            if word == option, index + 1 < words.count { return unquoted(words[index + 1]) }
            if word.hasPrefix(option + "=") { return unquoted(String(word.dropFirst(option.count + 1))) }
        }
        return nil
    }

    static func unquoted(_ word: String) -> String {
        for quote in ["\"", "'"] where word.count >= 2 && word.hasPrefix(quote) && word.hasSuffix(quote) {
            return String(word.dropFirst().dropLast())
        }
        return word
    }
}
