import Mustache

/// The web inbox's Mustache templates and style sheet. They are compiled into the binary so
/// `gatehouse serve` needs no files beside it. `{{name}}` escapes HTML; the only unescaped value
/// is `{{{content}}}` in the layout, which is a page this library rendered (and escaped) itself.
enum WebTemplates {
    static func library() throws -> MustacheLibrary {
        var library = MustacheLibrary()
        for (name, text) in templates { try library.register(text, named: name) }
        return library
    }

    static let templates: [(String, String)] = [
        ("layout", layout), ("sign-in", signIn), ("inbox", inbox), ("request", request), ("requests", requests),
        ("grants", grants), ("audit", audit), ("break-glass", breakGlass), ("error", error),
    ]

    static let layout = """
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>{{title}} · Gatehouse</title>
    <link rel="stylesheet" href="/static/gatehouse.css">
    </head>
    <body>
    <header class="bar">
      <a class="brand" href="/inbox">Gatehouse</a>
      {{#user}}
      <nav>
        <a href="/inbox"{{#nav.inbox}} aria-current="page"{{/nav.inbox}}>Inbox{{#inboxCount}} <span class="count">{{inboxCount}}</span>{{/inboxCount}}</a>
        <a href="/mine"{{#nav.mine}} aria-current="page"{{/nav.mine}}>My requests</a>
        <a href="/grants"{{#nav.grants}} aria-current="page"{{/nav.grants}}>Grants</a>
        <a href="/break-glass"{{#nav.breakGlass}} aria-current="page"{{/nav.breakGlass}}>Break-glass{{#reviewCount}} <span class="count warn">{{reviewCount}}</span>{{/reviewCount}}</a>
        {{#user.admin}}<a href="/audit"{{#nav.audit}} aria-current="page"{{/nav.audit}}>Audit</a>{{/user.admin}}
      </nav>
      <form class="signout" method="post" action="/sign-out">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <span class="who">{{user.name}}{{#user.admin}} (admin){{/user.admin}}</span>
        <button type="submit" class="link">Sign out</button>
      </form>
      {{/user}}
    </header>
    <main>
    {{#flash}}<p class="flash {{flash.kind}}" role="status">{{flash.text}}</p>{{/flash}}
    {{{content}}}
    </main>
    </body>
    </html>
    """

    static let signIn = """
    <section class="narrow">
    <h1>Sign in</h1>
    <p>Paste your Gatehouse token. It is sent once; the browser then keeps a session cookie only.</p>
    <form method="post" action="/sign-in">
      <input type="hidden" name="csrf" value="{{csrf}}">
      <label for="token">Token</label>
      <input id="token" name="token" type="password" autocomplete="off" required maxlength="256">
      <button type="submit">Sign in</button>
    </form>
    </section>
    """

    static let requestRows = """
    <div class="scroll">
    <table class="list">
    <thead><tr><th class="w-id">Request</th><th class="w-who">Requester</th><th class="w-what">Asks for</th><th>Reason</th><th class="w-state">State</th><th class="w-when">Filed</th></tr></thead>
    <tbody>
    {{#requests}}
    <tr>
      <td><a href="/requests/{{id}}">{{id}}</a></td>
      <td>{{requester}}</td>
      <td>{{what}}<div class="muted">for {{duration}}</div></td>
      <td><div class="clamp reason">{{reason}}</div>{{#ticket}} <span class="tag">{{ticket}}</span>{{/ticket}}</td>
      <td><span class="state {{state}}">{{state}}</span>{{#spam}} <span class="score {{spam.level}}" title="spam score">{{spam.score}}</span>{{/spam}}</td>
      <td>{{created}}</td>
    </tr>
    {{/requests}}
    </tbody>
    </table>
    </div>
    {{^requests}}<p class="empty">{{empty}}</p>{{/requests}}
    """

    static let inbox = """
    <h1>Waiting for you</h1>
    \(requestRows)
    {{#hasQuarantined}}
    <h2>Held for security review</h2>
    {{/hasQuarantined}}
    {{#quarantined}}
    <p><a href="/requests/{{id}}">{{id}}</a> · {{requester}} · {{what}} · <span class="reason">{{reason}}</span></p>
    {{/quarantined}}
    """

    static let requests = """
    <h1>{{heading}}</h1>
    \(requestRows)
    """

    static let request = """
    <h1>Request <code>{{r.id}}</code> <span class="state {{r.state}}">{{r.state}}</span></h1>
    <div class="columns">
    <section class="card">
    <dl>
      <dt>Requester</dt><dd>{{r.requester}}{{#flags.blocked}} <span class="state denied">blocked</span>{{/flags.blocked}}{{#flags.throttled}} <span class="state quarantined">throttled</span>{{/flags.throttled}}</dd>
      <dt>Resource</dt><dd>{{r.resource}}</dd>
      {{#r.action}}
      <dt>Exact action</dt><dd>{{r.action.kind}} · risk <span class="risk {{r.action.risk}}">{{r.action.risk}}</span>{{#r.action.categories}} <span class="tag">{{.}}</span>{{/r.action.categories}}</dd>
      <dt>Statement as parsed</dt><dd><pre class="statement">{{r.action.shown}}</pre><div class="muted">SHA-256 {{r.action.sha256}}: the approval covers exactly these bytes, once.</div></dd>
      {{#r.action.differs}}<dt>Text as sent</dt><dd><pre class="statement raw">{{r.action.text}}</pre></dd>{{/r.action.differs}}
      {{/r.action}}
      {{^r.action}}<dt>Role</dt><dd>{{r.role}}</dd>{{/r.action}}
      <dt>Duration</dt><dd>{{r.duration}} (from approval)</dd>
      <dt>Reason</dt><dd class="reason">{{r.reason}}</dd>
      {{#r.ticket}}<dt>Ticket</dt><dd>{{r.ticket}}</dd>{{/r.ticket}}
      <dt>Filed</dt><dd>{{r.created}}</dd>
      {{#r.pending}}<dt>Expires unless decided</dt><dd>{{r.expires}}</dd>{{/r.pending}}
      {{#r.decidedBy}}<dt>Decided</dt><dd>{{r.decidedBy}}{{#r.decided}} at {{r.decided}}{{/r.decided}}{{#r.stateReason}}: {{r.stateReason}}{{/r.stateReason}}</dd>{{/r.decidedBy}}
      <dt>Approvals</dt><dd>{{approvedCount}} of {{r.approvalsRequired}} needed</dd>
    </dl>
    {{#hasApprovals}}<h2>Decisions so far</h2>{{/hasApprovals}}
    <ul class="decisions">
    {{#approvals}}<li><strong>{{approver}}</strong> {{decision}} at {{at}}{{#comment}}: <q>{{comment}}</q>{{/comment}}</li>{{/approvals}}
    </ul>
    {{#canDecide}}
    <h2>Your decision</h2>
    <form method="post" action="/requests/{{r.id}}/decide" class="decide">
      <input type="hidden" name="csrf" value="{{csrf}}">
      <label for="comment">Comment (required to deny or report)</label>
      <textarea id="comment" name="comment" rows="3" maxlength="4096"></textarea>
      <div class="buttons">
        <button type="submit" name="decision" value="approve" class="approve">Approve</button>
        <button type="submit" name="decision" value="deny" class="deny">Deny</button>
        <button type="submit" name="decision" value="report" class="report">Report as suspicious</button>
      </div>
    </form>
    {{/canDecide}}
    {{#canReview}}
    <h2>Security review</h2>
    <p class="muted">The anti-spam policy holds this request; approvers were not told. Release it to them, or reject it.</p>
    <form method="post" action="/requests/{{r.id}}/review" class="decide">
      <input type="hidden" name="csrf" value="{{csrf}}">
      <label for="review-comment">Comment</label>
      <textarea id="review-comment" name="comment" rows="2" maxlength="4096"></textarea>
      <div class="buttons">
        <button type="submit" name="review" value="release" class="approve">Release to approvers</button>
        <button type="submit" name="review" value="reject" class="deny">Reject</button>
      </div>
    </form>
    {{/canReview}}
    {{#canCancel}}
    <form method="post" action="/requests/{{r.id}}/cancel"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit" class="deny">Cancel my request</button></form>
    {{/canCancel}}
    </section>
    <aside class="card">
    <h2>Anti-spam</h2>
    {{#spam}}
    <p>Score <span class="score {{spam.level}}">{{spam.score}}</span> → {{spam.action}}</p>
    <ul class="signals">{{#spam.signals}}<li><code>{{name}}</code> {{points}}: {{detail}}</li>{{/spam.signals}}</ul>
    {{^spam.signals}}<p class="muted">No signal fired.</p>{{/spam.signals}}
    {{/spam}}
    {{^spam}}<p class="muted">Not scored (anti-spam off when filed).</p>{{/spam}}
    <h2>{{r.requester}}'s recent requests</h2>
    <ul class="history">
    {{#history}}<li><a href="/requests/{{id}}">{{id}}</a> <span class="state {{state}}">{{state}}</span> {{what}} · {{created}}</li>{{/history}}
    </ul>
    {{^history}}<p class="muted">None before this one.</p>{{/history}}
    </aside>
    </div>
    """

    static let grants = """
    <h1>{{heading}}</h1>
    <div class="scroll">
    <table class="list">
    <thead><tr><th class="w-id">Grant</th><th class="w-who">Holder</th><th class="w-what">Access</th><th class="w-when">Until</th><th>State</th><th class="w-act"></th></tr></thead>
    <tbody>
    {{#grants}}
    <tr>
      <td>{{id}}{{#breakGlass}} <span class="state denied">break-glass</span>{{/breakGlass}}<div class="muted"><a href="/requests/{{requestId}}">{{requestId}}</a></div></td>
      <td>{{principal}}</td>
      <td>{{resource}}/{{role}}<div class="muted">allows {{allows}}</div></td>
      <td>{{expires}}</td>
      <td><span class="state {{state}}">{{state}}</span></td>
      <td>
        {{#canRelease}}<form method="post" action="/grants/{{id}}/release"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Release</button></form>{{/canRelease}}
        {{#canRevoke}}<form method="post" action="/grants/{{id}}/revoke" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><input name="reason" placeholder="why" required maxlength="1024"><button type="submit" class="deny">Revoke</button></form>{{/canRevoke}}
      </td>
    </tr>
    {{/grants}}
    </tbody>
    </table>
    </div>
    {{^grants}}<p class="empty">No active grants.</p>{{/grants}}
    """

    static let breakGlass = """
    <h1>Break-glass uses</h1>
    <p class="muted">Emergency access granted without approval. Each use stays listed here until someone other than its holder reviews it.</p>
    <div class="scroll">
    <table class="list">
    <thead><tr><th class="w-id">Grant</th><th class="w-who">Who</th><th class="w-what">Access</th><th>Reason</th><th class="w-when">When</th><th class="w-act">Review</th></tr></thead>
    <tbody>
    {{#uses}}
    <tr>
      <td>{{grantId}}<div class="muted"><a href="/requests/{{requestId}}">{{requestId}}</a></div></td>
      <td>{{principal}}</td>
      <td>{{resource}}/{{role}}<div class="muted">until {{expires}}</div></td>
      <td><div class="clamp reason">{{reason}}</div></td>
      <td>{{at}}</td>
      <td>
        {{#reviewedBy}}<span class="state approved">reviewed</span> by {{reviewedBy}}: <q>{{reviewComment}}</q>{{/reviewedBy}}
        {{#awaiting}}<span class="state quarantined">awaiting review</span>
          {{#canReview}}<form method="post" action="/break-glass/{{grantId}}/review"><input type="hidden" name="csrf" value="{{csrf}}"><textarea name="comment" rows="2" required maxlength="4096" placeholder="what was done, was it justified"></textarea><button type="submit">Mark reviewed</button></form>{{/canReview}}
        {{/awaiting}}
      </td>
    </tr>
    {{/uses}}
    </tbody>
    </table>
    </div>
    {{^uses}}<p class="empty">No break-glass use.</p>{{/uses}}
    """

    static let audit = """
    <h1>Audit log</h1>
    <p class="verify {{#verify.ok}}ok{{/verify.ok}}{{^verify.ok}}broken{{/verify.ok}}">{{verify.text}}</p>
    <form method="get" action="/audit" class="filters">
      <label>Principal or subject <input name="who" value="{{filters.who}}" maxlength="128"></label>
      <label>Resource <input name="resource" value="{{filters.resource}}" maxlength="128"></label>
      <label>Action <input name="action" value="{{filters.action}}" maxlength="64" placeholder="request, grant.revoked"></label>
      <label>Since <input name="since" type="date" value="{{filters.since}}"></label>
      <button type="submit">Filter</button>
    </form>
    <div class="scroll">
    <table class="list audit">
    <thead><tr><th class="w-seq">#</th><th class="w-when">At</th><th class="w-who">Actor</th><th class="w-what">Action</th><th class="w-id">Subject</th><th>Details</th></tr></thead>
    <tbody>
    {{#events}}
    <tr><td>{{seq}}</td><td>{{at}}</td><td>{{actor}}</td><td><code>{{action}}</code>{{#resource}}<div class="muted">{{resource}}</div>{{/resource}}</td><td>{{subject}}</td>
      <td class="details"><div class="clamp">{{#details}}<div><span class="key">{{key}}</span> {{value}}</div>{{/details}}</div></td></tr>
    {{/events}}
    </tbody>
    </table>
    </div>
    {{^events}}<p class="empty">No event matches.</p>{{/events}}
    {{#older}}<p><a href="{{older}}">Older events</a></p>{{/older}}
    """

    static let error = """
    <section class="narrow">
    <h1>{{heading}}</h1>
    <p class="problem">{{message}}</p>
    <p><a href="{{back}}">{{backText}}</a></p>
    </section>
    """

    static let css = """
    :root { --fg: #1d2433; --muted: #5d6677; --line: #d9dde5; --bg: #f6f7f9; --card: #fff; --accent: #1f5fbf;
            --ok: #1b7f3b; --bad: #b3261e; --warn: #a15c00; }
    * { box-sizing: border-box; }
    body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
    a { color: var(--accent); }
    .bar { display: flex; flex-wrap: wrap; align-items: center; gap: 1rem; padding: .6rem 1.2rem; background: #16213a; color: #fff; }
    .bar a { color: #dfe7ff; text-decoration: none; }
    .bar a[aria-current] { color: #fff; font-weight: 600; border-bottom: 2px solid #8fb3ff; }
    .brand { font-weight: 700; font-size: 1.1rem; color: #fff !important; }
    nav { display: flex; flex-wrap: wrap; gap: 1rem; flex: 1; }
    .signout { display: flex; gap: .5rem; align-items: center; }
    .who { color: #c9d3ea; }
    button.link { background: none; border: 0; color: #dfe7ff; text-decoration: underline; padding: 0; cursor: pointer; }
    main { max-width: 1200px; margin: 0 auto; padding: 1rem 1.2rem 3rem; }
    h1 { font-size: 1.4rem; margin: .6rem 0 1rem; overflow-wrap: anywhere; }
    h2 { font-size: 1.05rem; margin: 1.2rem 0 .5rem; }
    .narrow { max-width: 30rem; margin: 3rem auto; background: var(--card); padding: 1.5rem; border: 1px solid var(--line); border-radius: 8px; }
    .card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 1rem 1.2rem; min-width: 0; }
    .columns { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 1fr); gap: 1rem; }
    @media (max-width: 800px) { .columns { grid-template-columns: minmax(0, 1fr); } }
    dl { display: grid; grid-template-columns: 11rem minmax(0, 1fr); gap: .35rem 1rem; margin: 0; }
    dt { color: var(--muted); }
    dd { margin: 0; min-width: 0; overflow-wrap: anywhere; }
    .reason, q, .details, td { overflow-wrap: anywhere; word-break: break-word; }
    .reason { white-space: pre-wrap; max-height: 12rem; overflow: auto; }
    pre.statement { margin: 0; padding: .6rem; background: #0f172a; color: #e2e8f0; border-radius: 6px; white-space: pre-wrap;
                    overflow-wrap: anywhere; max-height: 24rem; overflow: auto; font-size: .9rem; }
    pre.raw { background: #3b2f12; }
    table.list { width: 100%; table-layout: fixed; border-collapse: collapse; background: var(--card); border: 1px solid var(--line); }
    table.list th, table.list td { text-align: left; vertical-align: top; padding: .5rem .6rem; border-bottom: 1px solid var(--line); }
    table.list th { font-size: .8rem; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); }
    table.list td.reason { max-height: none; }
    .scroll { overflow-x: auto; }
    .scroll table.list { min-width: 56rem; }
    .clamp { max-height: 7.5rem; overflow: auto; }
    td.w-id, .w-id { width: 14rem; }
    table.list td:first-child { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .82rem; } .w-who { width: 8rem; } .w-what { width: 13rem; } .w-state { width: 9rem; } .w-when { width: 11rem; }
    .w-act { width: 15rem; } .w-seq { width: 4rem; }
    .muted { color: var(--muted); font-size: .85rem; }
    .empty { color: var(--muted); padding: 1rem; background: var(--card); border: 1px dashed var(--line); border-radius: 8px; }
    .state, .tag, .score, .risk, .count { display: inline-block; padding: 0 .45rem; border-radius: 999px; font-size: .8rem; border: 1px solid var(--line); background: #eef1f6; }
    .state.approved, .state.active { background: #e3f4e8; color: var(--ok); border-color: #b5dfc1; }
    .state.denied, .state.revoked { background: #fbe7e5; color: var(--bad); border-color: #f0bdb8; }
    .state.pending { background: #e7effc; color: var(--accent); border-color: #bdd0f3; }
    .state.quarantined { background: #fdf0dc; color: var(--warn); border-color: #f1d2a3; }
    .score.low { color: var(--ok); } .score.mid { color: var(--warn); } .score.high { color: #fff; background: var(--bad); }
    .risk.dangerous, .risk.forbidden { color: #fff; background: var(--bad); } .risk.write { color: var(--warn); }
    .count { background: #8fb3ff; color: #16213a; border: 0; font-weight: 600; } .count.warn { background: #ffcf7a; }
    .flash { padding: .6rem .9rem; border-radius: 6px; background: #e3f4e8; border: 1px solid #b5dfc1; overflow-wrap: anywhere; }
    .flash.error { background: #fbe7e5; border-color: #f0bdb8; }
    .problem { overflow-wrap: anywhere; }
    form { margin: 0; }
    label { display: block; font-size: .85rem; color: var(--muted); margin: .6rem 0 .2rem; }
    input, textarea { width: 100%; font: inherit; padding: .45rem .55rem; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
    button { font: inherit; padding: .45rem .9rem; border-radius: 6px; border: 1px solid var(--line); background: #fff; cursor: pointer; }
    .buttons { display: flex; flex-wrap: wrap; gap: .5rem; margin-top: .6rem; }
    button.approve { background: var(--ok); color: #fff; border-color: var(--ok); }
    button.deny { background: #fff; color: var(--bad); border-color: #f0bdb8; }
    button.report { background: #fff; color: var(--warn); border-color: #f1d2a3; }
    .narrow button { margin-top: .8rem; }
    form.inline { display: flex; gap: .3rem; margin-top: .3rem; }
    .filters { display: flex; flex-wrap: wrap; gap: .6rem; align-items: end; margin-bottom: 1rem; }
    .filters label { margin: 0; } .filters input { width: 12rem; }
    .verify { padding: .5rem .8rem; border-radius: 6px; } .verify.ok { background: #e3f4e8; } .verify.broken { background: #fbe7e5; font-weight: 600; }
    .details .key { color: var(--muted); }
    .signals, .history, .decisions { padding-left: 1.1rem; margin: .3rem 0; } .signals li, .history li, .decisions li { overflow-wrap: anywhere; }
    code { font-size: .9em; overflow-wrap: anywhere; }
    """
}
