import Foundation

/// The Block Kit Gatehouse sends to Slack's Web API. Text people wrote (reasons, statements,
/// comments) goes into `plain_text` objects, which Slack never reads as markup; the rest is escaped.
public enum SlackMessages {
    /// A request as its message shows it now: Approve and Deny while it waits for a decision, the
    /// outcome once it has one.
    public static func request(_ r: AccessRequest, approvals: [Approval], link: String?) -> [String: Any] {
        var blocks: [[String: Any]] = [
            ["type": "header", "text": plain(clip(headline(r), 150))],
            ["type": "section", "text": mrkdwn("*\(escape(r.requester))* asks for \(escape(access(r))) on *\(escape(r.resource))* for \(r.duration)")],
        ]
        var fields = [mrkdwn("*Requester*\n\(escape(r.requester))"), mrkdwn("*Resource*\n\(escape(r.resource))"),
                      mrkdwn("*Access*\n\(escape(access(r)))"), mrkdwn("*Duration*\n\(r.duration)")]
        if let ticket = r.ticket { fields.append(mrkdwn("*Ticket*\n\(escape(clip(ticket, 200)))")) }
        if let action = r.action {
            let categories = action.categories.isEmpty ? "" : " (\(action.categories.joined(separator: ", ")))"
            fields.append(mrkdwn("*Risk*\n\(action.risk.rawValue)\(escape(categories))"))
        }
        blocks.append(["type": "section", "fields": fields])
        if let action = r.action {
            blocks.append(["type": "section", "text": plain("Statement (\(action.kind.rawValue)):\n" + clip(action.normalized ?? action.text, 2800))])
        }
        blocks.append(["type": "section", "text": plain("Reason: " + clip(r.reason, 2900))])
        var context = ["Request \(r.id)", "approvals \(approvals.filter { $0.decision == .approve }.count) of \(max(r.approvalsRequired, 1))"]
        if let spam = r.spam { context.append("anti-spam score \(spam.score) (\(spam.action.rawValue))" + (spam.signals.isEmpty ? "" : ": \(spam.summary)")) }
        blocks.append(["type": "context", "elements": [plain(clip(context.joined(separator: " · "), 2000))]])
        if r.state == .pending {
            var buttons: [[String: Any]] = [
                ["type": "button", "action_id": SlackInteraction.approveAction, "text": plain("Approve"), "style": "primary", "value": r.id],
                ["type": "button", "action_id": SlackInteraction.denyAction, "text": plain("Deny"), "style": "danger", "value": r.id],
            ]
            if let link { buttons.append(["type": "button", "action_id": SlackInteraction.openAction, "text": plain("Open in Gatehouse"), "url": link]) }
            blocks.append(["type": "actions", "block_id": "decide", "elements": buttons])
        } else {
            var outcome = "*\(outcomeTitle(r.state))*"
            if let by = r.decidedBy { outcome += " by \(escape(by))" }
            if let at = r.decidedAt { outcome += " at \(at.rfc3339)" }
            if let link { outcome += " · <\(link)|Open in Gatehouse>" }
            blocks.append(["type": "section", "text": mrkdwn(outcome)])
            if let note = r.stateReason, !note.isEmpty { blocks.append(["type": "context", "elements": [plain(clip(note, 2000))]]) }
        }
        let fallback = "\(headline(r)): \(r.requester) asks for \(access(r)) on \(r.resource) for \(r.duration)"
        return ["text": escape(clip(fallback, 3000)), "blocks": blocks]
    }

    /// The modal a Deny click opens: the comment every denial carries.
    public static func denyModal(_ r: AccessRequest, responseURL: String?) -> [String: Any] {
        [
            "type": "modal", "callback_id": SlackInteraction.denyModal,
            "private_metadata": privateMetadata(["request_id": r.id], responseURL: responseURL),
            "title": plain("Deny request"), "submit": plain("Deny"), "close": plain("Cancel"),
            "blocks": [
                ["type": "section", "text": plain(clip("\(r.requester) asks for \(access(r)) on \(r.resource) for \(r.duration): \(r.reason)", 2900))],
                ["type": "input", "block_id": SlackInteraction.commentBlock, "label": plain("Why is it denied?"),
                 "element": ["type": "plain_text_input", "action_id": SlackInteraction.commentBlock, "multiline": true,
                             "min_length": 1, "max_length": SlackInteraction.commentLimit]],
            ],
        ]
    }

    /// The digest of requests that waited beyond the recipient's notification budget.
    public static func digest(recipient: String, requests: [AccessRequest], link: String?) -> [String: Any] {
        let waiting = requests.filter { $0.state == .pending || $0.state == .quarantined }
        var blocks: [[String: Any]] = [
            ["type": "header", "text": plain("Access requests waiting")],
            ["type": "section", "text": plain("\(requests.count) request(s) collected for \(recipient); \(waiting.count) still waiting.")],
        ]
        for r in requests.prefix(10) {
            blocks.append(["type": "section", "text": plain(clip("\(r.id) · \(r.state.rawValue) · \(r.requester) asks for \(access(r)) on \(r.resource) for \(r.duration): \(r.reason)", 600))])
        }
        if requests.count > 10 { blocks.append(["type": "context", "elements": [plain("and \(requests.count - 10) more")]]) }
        if let link {
            blocks.append(["type": "actions", "elements": [["type": "button", "action_id": SlackInteraction.openAction, "text": plain("Open the inbox"), "url": link]]])
        }
        return ["text": escape("\(requests.count) access request(s) are waiting for \(recipient)"), "blocks": blocks]
    }

    /// The answer to a click from an unlinked Slack account: why nothing was decided, and a button
    /// that opens the form for a link code from the web inbox.
    public static func notLinked(_ text: String) -> [String: Any] {
        ["response_type": "ephemeral", "replace_original": false, "text": escape(clip(text, 3000)), "blocks": [
            ["type": "section", "text": plain(clip(text, 3000))],
            ["type": "actions", "elements": [["type": "button", "action_id": SlackInteraction.linkAction, "text": plain("Enter a link code")]]],
        ]]
    }

    /// The form for the link code a signed-in person made in the web inbox.
    public static func linkModal(responseURL: String?) -> [String: Any] {
        [
            "type": "modal", "callback_id": SlackInteraction.linkModal,
            "private_metadata": privateMetadata([:], responseURL: responseURL),
            "title": plain("Link to Gatehouse"), "submit": plain("Link"), "close": plain("Cancel"),
            "blocks": [
                ["type": "section", "text": plain("Sign in to Gatehouse's web inbox, open “Link Slack”, and type the code it shows you here. Never type a code someone else gave you: whoever links this Slack account decides in that person's name.")],
                ["type": "input", "block_id": SlackInteraction.codeBlock, "label": plain("Link code"),
                 "element": ["type": "plain_text_input", "action_id": SlackInteraction.codeBlock, "min_length": 8, "max_length": 20,
                             "placeholder": plain("K7QF-9XMW")]],
            ],
        ]
    }

    /// What a modal carries back to Gatehouse when it is submitted: its fields, and the `response_url`
    /// of the click that opened it (for the answer; Slack allows 3,000 characters in all).
    static func privateMetadata(_ fields: [String: Any], responseURL: String?) -> String {
        var metadata = fields
        if let responseURL, responseURL.utf8.count <= 1500 { metadata["response_url"] = responseURL }
        return String(decoding: WebhookMessage.json(metadata), as: UTF8.self)
    }

    /// An answer only the person who clicked sees.
    public static func ephemeral(_ text: String) -> [String: Any] {
        ["response_type": "ephemeral", "replace_original": false, "text": escape(clip(text, 3000))]
    }

    public static func access(_ r: AccessRequest) -> String {
        r.action.map { "one \($0.kind.rawValue) action (\($0.risk.rawValue))" } ?? "the role \(r.role)"
    }

    static func headline(_ r: AccessRequest) -> String {
        switch r.state {
        case .pending: "Access request waiting"
        case .approved: "Access request approved"
        case .denied: "Access request denied"
        case .expired: "Access request expired"
        case .canceled: "Access request canceled"
        case .quarantined: "Access request held for review"
        }
    }

    static func outcomeTitle(_ state: RequestState) -> String {
        switch state {
        case .pending: "Waiting"
        case .approved: "Approved"
        case .denied: "Denied"
        case .expired: "Expired before anyone decided"
        case .canceled: "Canceled"
        case .quarantined: "Held for security review"
        }
    }

    static func plain(_ text: String) -> [String: Any] { ["type": "plain_text", "text": text.isEmpty ? " " : text, "emoji": false] }
    static func mrkdwn(_ text: String) -> [String: Any] { ["type": "mrkdwn", "text": text, "verbatim": true] }
    static func escape(_ text: String) -> String { WebhookMessage.slackEscape(text) }
    static func clip(_ text: String, _ limit: Int) -> String { WebhookMessage.clip(text, limit - 1) }
}
