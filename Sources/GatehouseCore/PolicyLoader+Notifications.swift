import Foundation
import Yams

extension PolicyLoader.Reader {
    /// `notifications: {base_url, digest_interval, retry, webhooks: {NAME: {url, format, secret_env | secret_file, events, timeout}}}`.
    mutating func notifications(_ node: Node, groups: Set<String>, resources: Set<String>) -> NotificationSettings {
        var settings = NotificationSettings()
        for (key, _, value) in entries(node, "notifications", allowed: ["base_url", "digest_interval", "retry", "webhooks", "slack"]) {
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
            case "slack":
                settings.slack = slack(value, groups: groups, resources: resources)
            default:
                for (name, keyNode, endpoint) in entries(value, "notifications.webhooks") {
                    checkName(name, keyNode, "webhook")
                    if let parsed = webhook(name, endpoint) { settings.webhooks.append(parsed) }
                }
            }
        }
        return settings
    }

    /// `notifications.slack: {bot_token_env | bot_token_file, signing_secret_env | signing_secret_file, channel,
    /// routes: {resources: {NAME: CHANNEL}, approver_groups: {GROUP: CHANNEL}}, direct_messages, api_url, timeout}`.
    mutating func slack(_ node: Node, groups: Set<String>, resources: Set<String>) -> SlackSettings? {
        let what = "notifications.slack"
        var tokens: [SecretReference] = [], secrets: [SecretReference] = []
        var channel: String?, apiURL: String?, teamID: String?, directMessages = false, timeout = TimeSpan(seconds: 10)
        var resourceChannels: [String: String] = [:], groupChannels: [String: String] = [:]
        let keys = ["bot_token_env", "bot_token_file", "signing_secret_env", "signing_secret_file", "team_id", "channel", "routes", "direct_messages",
                    "api_url", "timeout"]
        for (key, _, value) in entries(node, what, allowed: keys) {
            switch key {
            case "bot_token_env": if let name = string(value, "\(what).bot_token_env") { tokens.append(.environment(name)) }
            case "bot_token_file": if let path = string(value, "\(what).bot_token_file") { tokens.append(.file(path)) }
            case "signing_secret_env": if let name = string(value, "\(what).signing_secret_env") { secrets.append(.environment(name)) }
            case "signing_secret_file": if let path = string(value, "\(what).signing_secret_file") { secrets.append(.file(path)) }
            case "channel": channel = slackChannel(value, "\(what).channel")
            case "team_id":
                guard let text = string(value, "\(what).team_id") else { continue }
                if text.hasPrefix("T"), SlackSettings.isSlackID(text) { teamID = text } else {
                    error(value, "\(what).team_id is `\(text.prefix(80))`; give the workspace id (T0123ABCD: the `T...` part of the workspace's app.slack.com/client/ URL)")
                }
            case "direct_messages": directMessages = bool(value, "\(what).direct_messages") ?? false
            case "api_url":
                guard let text = string(value, "\(what).api_url") else { continue }
                if !Self.isHTTPURL(text, allowHTTPOnLoopback: true) {
                    error(value, "\(what).api_url must be an https URL (http only on 127.0.0.1 or localhost); leave it out to use https://slack.com/api")
                } else {
                    apiURL = text.hasSuffix("/") ? String(text.dropLast()) : text
                }
            case "timeout":
                guard let span = duration(value, "\(what).timeout") else { continue }
                if span.seconds < 1 || span.seconds > 30 { error(value, "\(what).timeout is \(span); use 1s to 30s") } else { timeout = span }
            default:
                for (kind, _, routes) in entries(value, "\(what).routes", allowed: ["resources", "approver_groups"]) {
                    for (name, nameNode, target) in entries(routes, "\(what).routes.\(kind)") {
                        guard let target = slackChannel(target, "the channel of `\(name)` in \(what).routes.\(kind)") else { continue }
                        if kind == "resources" {
                            if resources.contains(name) { resourceChannels[name] = target } else {
                                let hint = PolicyLoader.closest(to: name, in: Array(resources)).map { "did you mean `\($0)`?" }
                                    ?? "its resources are \(resources.sorted().map { "`\($0)`" }.joined(separator: ", "))"
                                error(nameNode, "\(what).routes.resources names `\(name)`, which is not a resource in this policy; \(hint)")
                            }
                        } else {
                            checkGroup(name, nameNode, known: groups, what: "\(what).routes.approver_groups")
                            groupChannels[name] = target
                        }
                    }
                }
            }
        }
        if tokens.count != 1 {
            error(node, tokens.isEmpty ? "\(what) needs `bot_token_env:` (an environment variable) or `bot_token_file:` holding the app's bot token (xoxb-...); never the token itself"
                  : "\(what) takes one of `bot_token_env:` and `bot_token_file:`, not both")
        }
        if secrets.count != 1 {
            error(node, secrets.isEmpty ? "\(what) needs `signing_secret_env:` or `signing_secret_file:` holding the app's signing secret (Basic Information → Signing Secret); Gatehouse refuses every click it cannot verify"
                  : "\(what) takes one of `signing_secret_env:` and `signing_secret_file:`, not both")
        }
        if teamID == nil, !problems.contains(where: { $0.message.contains("\(what).team_id") }) {
            error(node, "\(what) needs `team_id:`, the workspace (T0123ABCD) whose people may approve and deny: clicks from any other workspace (Slack Connect guests) decide nothing")
        }
        if channel == nil, resourceChannels.isEmpty, groupChannels.isEmpty, !directMessages {
            error(node, "\(what) sends nothing: give a `channel:`, `routes:`, or `direct_messages: true`")
        }
        guard tokens.count == 1, secrets.count == 1, let teamID else { return nil }
        var settings = SlackSettings(botToken: tokens[0], signingSecret: secrets[0], teamID: teamID)
        settings.channel = channel
        settings.resourceChannels = resourceChannels
        settings.approverGroupChannels = groupChannels
        settings.directMessages = directMessages
        settings.timeout = timeout
        if let apiURL { settings.apiURL = apiURL }
        for (reference, name) in [(settings.botToken, "the Slack bot token"), (settings.signingSecret, "the Slack signing secret")] {
            // Not an error: the secret may only be present where the server runs.
            do { _ = try reference.read(name) } catch { warning(node, "\(error.message)") }
        }
        return settings
    }

    mutating func slackChannel(_ node: Node, _ what: String) -> String? {
        guard let text = string(node, what) else { return nil }
        guard SlackSettings.isChannel(text) else {
            error(node, "\(what) is `\(text.prefix(80))`; give a channel id (C0123ABCDEF, from the channel's details) or a public channel's name (#access-requests)")
            return nil
        }
        return text
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
                if value.sequence?.isEmpty == true {
                    warning(value, "\(what) subscribes to no event (`events: []`) and is never sent anything; leave `events` out for all of them")
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
