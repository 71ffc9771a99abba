import Foundation
import Yams

extension PolicyLoader.Reader {
    /// `notifications: {base_url, digest_interval, retry, webhooks: {NAME: {url, format, secret_env | secret_file, events, timeout}}}`.
    mutating func notifications(_ node: Node) -> NotificationSettings {
        var settings = NotificationSettings()
        for (key, _, value) in entries(node, "notifications", allowed: ["base_url", "digest_interval", "retry", "webhooks"]) {
            switch key {
            case "base_url":
                guard let text = string(value, "notifications.base_url") else { continue }
                if let problem = Self.urlProblem(text) {
                    error(value, "notifications.base_url \(problem)")
                } else {
                    settings.baseURL = text.hasSuffix("/") ? String(text.dropLast()) : text
                }
            case "digest_interval":
                guard let span = duration(value, "notifications.digest_interval") else { continue }
                if span.seconds < 1 || span.seconds > 7 * 86_400 {
                    error(value, "notifications.digest_interval is \(span); use 1s to 7d")
                } else {
                    settings.digestInterval = span
                }
            case "retry":
                for (name, _, field) in entries(value, "notifications.retry", allowed: ["initial", "max", "attempts"]) {
                    switch name {
                    case "initial": if let span = duration(field, "notifications.retry.initial") { settings.retry.initial = span }
                    case "max": if let span = duration(field, "notifications.retry.max") { settings.retry.maximum = span }
                    default: if let count = int(field, "notifications.retry.attempts", min: 1, max: 100) { settings.retry.attempts = count }
                    }
                }
                if settings.retry.maximum < settings.retry.initial {
                    error(value, "notifications.retry.max (\(settings.retry.maximum)) is shorter than its initial delay (\(settings.retry.initial))")
                }
            default:
                for (name, keyNode, endpoint) in entries(value, "notifications.webhooks") {
                    checkName(name, keyNode, "webhook")
                    if let parsed = webhook(name, endpoint) { settings.webhooks.append(parsed) }
                }
            }
        }
        return settings
    }

    mutating func webhook(_ name: String, _ node: Node) -> WebhookEndpoint? {
        let what = "webhook `\(name)`"
        var url: String?
        var format = WebhookEndpoint.Format.standard
        var events = Set(WebhookEvent.allCases)
        var secret: WebhookEndpoint.SecretSource?
        var timeout = TimeSpan(seconds: 10)
        var valid = true
        for (key, _, value) in entries(node, what, allowed: ["url", "format", "events", "secret_env", "secret_file", "timeout"]) {
            switch key {
            case "url":
                guard let text = string(value, "url of \(what)") else { valid = false; continue }
                if let problem = Self.urlProblem(text) {
                    error(value, "url of \(what) \(problem)")
                    valid = false
                } else {
                    url = text
                    if text.lowercased().hasPrefix("http://"), let host = URLComponents(string: text)?.host, !ProxySettings.isLoopback(host) {
                        warning(value, "url of \(what) is plain http to \(host): messages and their signatures travel unencrypted; use https")
                    }
                }
            case "format":
                if let raw = value.scalar?.string, let parsed = WebhookEndpoint.Format(rawValue: raw) { format = parsed } else {
                    error(value, "format of \(what) must be one of: \(WebhookEndpoint.Format.allCases.map(\.rawValue).joined(separator: ", "))")
                }
            case "events":
                var chosen = Set<WebhookEvent>()
                for (event, eventNode) in stringList(value, "events of \(what)") {
                    if event == "all" {
                        chosen.formUnion(WebhookEvent.allCases)
                    } else if let parsed = WebhookEvent(rawValue: event) {
                        chosen.insert(parsed)
                    } else {
                        let known = WebhookEvent.allCases.map(\.rawValue)
                        let hint = PolicyLoader.closest(to: event, in: known).map { "did you mean `\($0)`? " } ?? ""
                        error(eventNode, "unknown event `\(event)` in \(what); \(hint)known events: all, \(known.joined(separator: ", "))")
                    }
                }
                events = chosen
            case "secret_env":
                if let variable = string(value, "secret_env of \(what)") { secret = .environment(variable) }
            case "secret_file":
                if let path = string(value, "secret_file of \(what)") { secret = .file(path) }
            default:
                guard let span = duration(value, "timeout of \(what)") else { continue }
                if span.seconds < 1 || span.seconds > 60 { error(value, "timeout of \(what) is \(span); use 1s to 1m") } else { timeout = span }
            }
        }
        if url == nil, valid { error(node, "\(what) needs a `url:` (https://...)"); valid = false }
        if format == .standard, secret == nil {
            error(node, "\(what) sends signed Standard Webhooks messages and needs a secret: `secret_env: VARIABLE` (or `secret_file: PATH`) holding `whsec_` and base64; make one with `echo whsec_$(openssl rand -base64 32)`")
            valid = false
        }
        guard valid, let url else { return nil }
        let endpoint = WebhookEndpoint(name: name, url: url, format: format, events: events, secret: secret, timeout: timeout)
        do { _ = try endpoint.signingKey() } catch {
            // Not an error: the secret may only be present where the server runs.
            warning(node, "\(error.message)")
        }
        return endpoint
    }

    mutating func bool(_ node: Node, _ what: String) -> Bool? {
        switch node.scalar?.string {
        case "true": return true
        case "false": return false
        default:
            error(node, "\(what) must be true or false")
            return nil
        }
    }

    /// Why a webhook or inbox address is unusable, or nil.
    static func urlProblem(_ text: String) -> String? {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            return "is not a valid URL (`\(text)`); write it in full, like https://hooks.example.com/gatehouse"
        }
        guard scheme == "https" || scheme == "http" else {
            return "uses `\(scheme):`; only https:// (or http:// on a trusted network) is supported"
        }
        guard let host = components.host, !host.isEmpty else {
            return "has no host name (`\(text)`); write it like https://hooks.example.com/gatehouse"
        }
        guard components.user == nil, components.password == nil else {
            return "carries a user name or password; put credentials in the secret, not the URL"
        }
        guard !text.contains(where: \.isWhitespace) else { return "contains spaces (`\(text)`)" }
        return nil
    }
}
