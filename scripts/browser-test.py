#!/usr/bin/env python3
"""Headless-browser test of Gatehouse's web inbox.

Drives headless Chromium through chromedriver with the W3C WebDriver protocol (urllib only, no
selenium) against a running `gatehouse serve`: signs in by typing a token, approves and denies by
clicking the real buttons, checks that hostile and very long texts are escaped and do not break the
layout, and, outside the browser, that the forms refuse posts without the CSRF token or from another
origin. Screenshots go to the artefacts folder.

Started by scripts/browser-test.sh, which sets (environment):
  GATEHOUSE_URL        the server, e.g. http://127.0.0.1:23456
  BOB_TOKEN            a token of bob (dba: may approve alice's requests)
  ALICE_TOKEN          a token of alice (the requester)
  REQ_APPROVE          alice's pending prod-db/write request, approved here
  REQ_DENY             alice's pending request, denied here with a comment
  REQ_ESCAPE           alice's pending request whose reason holds HTML and a 600-character word
  ARTIFACTS            folder for screenshots (default test-artifacts/browser)
  CHROMEDRIVER, CHROMIUM  override /usr/bin/chromedriver, /usr/bin/chromium
"""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None or value == "":
        sys.exit(f"browser test: ${name} is not set (run scripts/browser-test.sh)")
    return value


# --------------------------------------------------------------------------------------------
# WebDriver client


class WebDriverError(Exception):
    pass


class WebDriver:
    def __init__(self, base):
        self.base = base
        self.session = None

    def call(self, method, path, body=None, timeout=30):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            try:
                value = json.loads(text).get("value", {})
                text = f"{value.get('error')}: {value.get('message', '').splitlines()[0] if value.get('message') else ''}"
            except (ValueError, AttributeError):
                pass
            raise WebDriverError(f"{method} {path} -> HTTP {error.code}: {text}") from None
        return payload.get("value")

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def start(self, binary):
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"implicit": 0, "pageLoad": 20000, "script": 10000},
            "goog:chromeOptions": {
                "binary": binary,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900"],
            },
        }}}
        value = self.call("POST", "/session", caps, timeout=60)
        self.session = value["sessionId"]

    def quit(self):
        if self.session:
            try:
                self.call("DELETE", f"/session/{self.session}", timeout=15)
            finally:
                self.session = None

    def get(self, url):
        self.s("POST", "/url", {"url": url})

    def url(self):
        return self.s("GET", "/url")

    def title(self):
        return self.s("GET", "/title")

    def find(self, css, within=None):
        path = f"/element/{within}/element" if within else "/element"
        try:
            return self.s("POST", path, {"using": "css selector", "value": css})[ELEMENT]
        except WebDriverError as error:
            raise CheckFailed(f"no element '{css}' on {self.url()}: {error}") from None

    def find_all(self, css):
        return [e[ELEMENT] for e in self.s("POST", "/elements", {"using": "css selector", "value": css})]

    def text(self, element):
        return self.s("GET", f"/element/{element}/text")

    def prop(self, element, name):
        return self.s("GET", f"/element/{element}/property/{name}")

    def click(self, element):
        self.s("POST", f"/element/{element}/click", {})

    def type(self, element, text):
        self.s("POST", f"/element/{element}/clear", {})
        self.s("POST", f"/element/{element}/value", {"text": text})

    def script(self, source, *args):
        return self.s("POST", "/execute/sync", {"script": source, "args": list(args)})

    def cookies(self):
        return self.s("GET", "/cookie")

    def screenshot(self, path):
        png = base64.b64decode(self.s("GET", "/screenshot"))
        check(png[:8] == b"\x89PNG\r\n\x1a\n", "the screenshot endpoint did not return a PNG")
        with open(path, "wb") as f:
            f.write(png)
        print(f"  screenshot {path} ({len(png)} bytes)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = condition()
            if last:
                return last
        except (WebDriverError, CheckFailed, OSError) as error:  # OSError: chromedriver not listening yet
            last = error
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out waiting for {what} (last: {last!r})")
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# Plain HTTP, outside the browser


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def http(method, url, headers=None, body=None):
    """(status, headers, body text) without following redirects."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with OPENER.open(request, timeout=15) as response:
            return response.status, response.headers, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode(errors="replace")


# --------------------------------------------------------------------------------------------
# The test


class Test:
    def __init__(self, driver):
        self.d = driver
        self.url = env("GATEHOUSE_URL").rstrip("/")
        self.bob = env("BOB_TOKEN")
        self.alice = env("ALICE_TOKEN")
        self.req_approve = env("REQ_APPROVE")
        self.req_deny = env("REQ_DENY")
        self.req_escape = env("REQ_ESCAPE")
        self.artifacts = env("ARTIFACTS", "test-artifacts/browser")
        self.html_responses = []  # (what, status, headers) of every HTML answer seen outside the browser
        self.passed = 0

    def ok(self, message):
        self.passed += 1
        print(f"  ok  {message}")

    def shot(self, name):
        self.d.screenshot(os.path.join(self.artifacts, name))

    def path(self):
        return urllib.parse.urlsplit(self.d.url()).path

    def wait_path(self, path, timeout=10.0):
        wait_until(f"the browser to reach {path}", lambda: self.path() == path, timeout)

    def main_text(self):
        return self.d.text(self.d.find("main"))

    def api(self, method, path, token, body=None):
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body).encode()
        status, _, text = http(method, self.url + path, headers, body)
        return status, (json.loads(text) if text else None)

    def record_html(self, what, status, headers):
        if (headers.get("Content-Type") or "").startswith("text/html") or status in (301, 302, 303, 307, 308):
            self.html_responses.append((what, status, headers))

    # ---- steps

    def sign_in(self, name, token):
        self.d.get(self.url + "/sign-in")
        self.wait_path("/sign-in")
        field = self.d.find("#token")
        self.d.type(field, token)
        self.d.click(self.d.find("section form button[type=submit]"))
        self.wait_path("/inbox")
        who = wait_until("the signed-in name in the header", lambda: self.d.text(self.d.find("header .who")))
        check(who.strip() == name, f"the header shows '{who}' after signing in as {name}")
        self.ok(f"signed in as {name} by typing the token: on /inbox, header shows '{who}'")

    def session_cookie(self):
        cookies = {c["name"]: c for c in self.d.cookies()}
        check("gatehouse_session" in cookies, f"no gatehouse_session cookie after sign-in (cookies: {sorted(cookies)})")
        return cookies["gatehouse_session"]

    def sign_out(self):
        old = self.session_cookie()["value"]
        self.d.click(self.d.find("form.signout button"))
        self.wait_path("/sign-in")
        names = [c["name"] for c in self.d.cookies()]
        check("gatehouse_session" not in names, f"the session cookie survived Sign out: {names}")
        status, headers, _ = http("GET", self.url + "/inbox", {"Cookie": f"gatehouse_session={old}"})
        check(status == 303 and headers.get("Location") == "/sign-in",
              f"the signed-out session still opens /inbox (HTTP {status}, Location {headers.get('Location')})")
        self.ok("Sign out button: back on /sign-in, cookie gone, the old session no longer opens /inbox")

    def test_sign_in_as_bob(self):
        print("sign in")
        # A wrong token is refused on a page, not with a crash, and gives no session.
        self.d.get(self.url + "/sign-in")
        form_token = self.d.prop(self.d.find("section form input[name=csrf]"), "value")
        self.d.type(self.d.find("#token"), "ghs_not_a_real_token_000000000000")
        self.d.click(self.d.find("section form button[type=submit]"))

        def answered():  # another page, an error message, or a fresh sign-in form
            if self.path() != "/sign-in" or self.d.find_all("main .problem"):
                return True
            fields = self.d.find_all("section form input[name=csrf]")
            return bool(fields) and self.d.prop(fields[0], "value") != form_token
        wait_until("the answer to a wrong token", answered)
        check("gatehouse_session" not in [c["name"] for c in self.d.cookies()], "a wrong token produced a session cookie")
        check(self.path() != "/inbox", "a wrong token reached /inbox")
        problems = self.d.find_all("main .problem")
        if problems:
            message = self.d.text(problems[0])
            check("unknown or revoked" in message, f"a wrong token is answered with {message!r}")
            self.ok(f"a wrong token is refused with '{self.d.title()}': {message[:60]}...; no session cookie")
        else:
            self.ok(f"a wrong token is refused: no session cookie, browser on {self.path()}")
            print("  NOTE a wrong token sends the browser back to an empty sign-in form without saying why")

        self.sign_in("bob", self.bob)
        cookie = self.session_cookie()
        check(cookie.get("httpOnly") is True, f"session cookie is not httpOnly: {cookie}")
        check(cookie.get("sameSite") == "Lax", f"session cookie sameSite is {cookie.get('sameSite')!r}, expected 'Lax'")
        check(cookie.get("path") == "/", f"session cookie path is {cookie.get('path')!r}")
        self.ok("gatehouse_session cookie is httpOnly, sameSite=Lax, path=/")
        check("gatehouse_signin" not in [c["name"] for c in self.d.cookies()], "the sign-in CSRF cookie was left behind")
        check(self.d.script("return document.cookie.indexOf('gatehouse_session') === -1") is True,
              "page script can read the session cookie")
        self.ok("document.cookie does not expose the session; the sign-in cookie is cleared")

    def test_inbox(self):
        print("inbox")
        self.d.get(self.url + "/inbox")
        links = {self.d.text(a): a for a in self.d.find_all("main table.list a[href^='/requests/']")}
        for rid in (self.req_approve, self.req_deny, self.req_escape):
            check(rid in links, f"the inbox does not link {rid}; it links {sorted(links)}")
        href = self.d.prop(links[self.req_approve], "href")
        check(href == f"{self.url}/requests/{self.req_approve}", f"the inbox link of {self.req_approve} goes to {href}")
        count = self.d.text(self.d.find("header nav .count"))
        check(count == "3", f"the Inbox counter shows '{count}', expected 3")
        self.ok(f"inbox links alice's pending requests ({self.req_approve}, ...), counter shows 3")
        self.shot("inbox.png")

    def test_request_page(self):
        print("request page")
        self.d.click(self.d.find(f"main a[href='/requests/{self.req_approve}']"))
        self.wait_path(f"/requests/{self.req_approve}")
        check(self.req_approve in self.d.title(), f"title '{self.d.title()}' does not name the request")
        rows = self.d.script(
            "const out = {}; document.querySelectorAll('main dl dt').forEach(dt => {"
            " out[dt.textContent.trim()] = dt.nextElementSibling.innerText.trim(); }); return out;")
        check(rows.get("Requester") == "alice", f"requester shown is {rows.get('Requester')!r}")
        check(rows.get("Reason") == "INC-123 fix the stuck orders migration", f"reason shown is {rows.get('Reason')!r}")
        check(rows.get("Role") == "write" and rows.get("Resource") == "prod-db", f"resource/role shown: {rows}")
        self.ok("request page shows requester alice, prod-db/write and the reason")
        aside = self.d.text(self.d.find("main aside"))
        check("Anti-spam" in aside and "Score" in aside, f"no anti-spam score section: {aside[:300]!r}")
        check("new_principal" in aside and "ticket" in aside, f"the anti-spam signals are not listed: {aside[:300]!r}")
        self.ok("anti-spam section shows the score and its signals (new_principal, ticket)")
        state = self.d.text(self.d.find("main h1 .state"))
        check(state == "pending", f"state shown is {state!r}")
        self.shot("request.png")

    def test_approve(self):
        print("approve")
        self.d.click(self.d.find("form.decide button[value=approve]"))
        wait_until("the approved page", lambda: "done=approved" in self.d.url())
        check(self.path() == f"/requests/{self.req_approve}", f"after Approve the browser is on {self.d.url()}")
        flash = self.d.text(self.d.find("main .flash"))
        check(flash.startswith("Approved"), f"flash after Approve is {flash!r}")
        state = self.d.text(self.d.find("main h1 .state"))
        check(state == "approved", f"state after Approve is {state!r}")
        check(not self.d.find_all("form.decide"), "the decision form is still offered on an approved request")
        decisions = self.d.text(self.d.find("main ul.decisions"))
        check("bob" in decisions and "approved" in decisions, f"decisions list after Approve: {decisions!r}")
        self.ok(f"Approve button: flash '{flash}', state approved, bob listed, no decision form left")
        status, body = self.api("GET", f"/v1/requests/{self.req_approve}", self.bob)
        check(status == 200 and body.get("state") == "approved", f"API says {status} {body}")
        self.ok("the API agrees: approved")

    def test_deny(self):
        print("deny with a comment")
        self.d.get(self.url + "/inbox")
        self.d.click(self.d.find(f"main a[href='/requests/{self.req_deny}']"))
        self.wait_path(f"/requests/{self.req_deny}")
        # Deny without a comment is refused, and nothing happens.
        self.d.click(self.d.find("form.decide button[value=deny]"))
        wait_until("the missing-comment answer", lambda: self.d.find_all("main .problem"))
        problem = self.d.text(self.d.find("main .problem"))
        check("say why" in problem, f"Deny without a comment answered {problem!r}")
        status, body = self.api("GET", f"/v1/requests/{self.req_deny}", self.bob)
        check(body.get("state") == "pending", f"Deny without a comment changed the request: {body.get('state')}")
        back = self.d.prop(self.d.find("main section a"), "href")
        check(back == f"{self.url}/requests/{self.req_deny}", f"the error page's Go back link is {back}")
        self.ok(f"Deny without a comment is refused ('{problem}'), still pending, Go back returns to the request")

        self.d.click(self.d.find("main section a"))
        self.wait_path(f"/requests/{self.req_deny}")
        comment = "Not during the freeze; ask again after INC-200 is closed & \"reviewed\" <b>ok</b>"
        self.d.type(self.d.find("#comment"), comment)
        self.d.click(self.d.find("form.decide button[value=deny]"))
        wait_until("the denied page", lambda: "done=denied" in self.d.url())
        state = self.d.text(self.d.find("main h1 .state"))
        check(state == "denied", f"state after Deny is {state!r}")
        decisions = self.d.text(self.d.find("main ul.decisions"))
        check(comment in decisions, f"the comment is not in the decisions list: {decisions!r}")
        check("bob denied" in decisions, f"decisions list does not say bob denied: {decisions!r}")
        check(not self.d.find_all("main ul.decisions b"), "the comment's <b> became markup")
        flash = self.d.text(self.d.find("main .flash"))
        check(flash.startswith("Denied"), f"flash after Deny is {flash!r}")
        self.ok("Deny with a typed comment: state denied, comment (with & \" < >) shown verbatim in the decisions list")

    def assert_escaped(self, where):
        title = self.d.title()
        check("pwned" not in title, f"{where}: the page title became {title!r}: the reason's script ran")
        scripts = self.d.script("return document.querySelectorAll('script').length")
        check(scripts == 0, f"{where}: {scripts} <script> element(s) in the page")
        images = self.d.script("return document.querySelectorAll('main img').length")
        check(images == 0, f"{where}: {images} <img> element(s) inside main")
        text = self.main_text()
        check("<script>document.title='pwned'</script>" in text, f"{where}: the literal <script> text is not shown")
        check("<img src=x onerror=alert(1)>" in text, f"{where}: the literal <img> text is not shown")
        sizes = self.d.script("return [document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]")
        check(max(sizes[0], sizes[1]) <= sizes[2] + 4,
              f"{where}: the page is {max(sizes[:2])}px wide in a {sizes[2]}px window: the long word breaks the layout")
        # The long word must also stay inside its own box (not spill over neighbouring columns).
        spill = self.d.script(
            "const bad = []; document.querySelectorAll('main .reason, main td, main dd, main h1, main p, main li').forEach(e => {"
            " if (e.scrollWidth > e.clientWidth + 2 && getComputedStyle(e).overflowX === 'visible')"
            "   bad.push(e.tagName + '.' + e.className + ' ' + e.scrollWidth + '>' + e.clientWidth); });"
            " return bad;")
        check(not spill, f"{where}: content overflows its box: {spill}")
        self.ok(f"{where}: title '{title}', no script/img elements, literal markup shown, "
                f"scrollWidth {max(sizes[:2])} <= innerWidth {sizes[2]}")

    def test_escaping(self):
        print("escaping and long texts")
        self.d.get(self.url + "/inbox")
        self.assert_escaped("inbox")
        self.shot("inbox-long-text.png")
        self.d.click(self.d.find(f"main a[href='/requests/{self.req_escape}']"))
        self.wait_path(f"/requests/{self.req_escape}")
        self.assert_escaped("request page")
        self.shot("long-text.png")
        # The reason box scrolls instead of growing without end.
        height, full, overflow, rem = self.d.script(
            "const e = document.querySelector('main dd.reason');"
            " return [e.clientHeight, e.scrollHeight, getComputedStyle(e).overflowY,"
            " parseFloat(getComputedStyle(document.documentElement).fontSize)]")
        check(height <= 12 * rem + 2 and overflow in ("auto", "scroll"),
              f"the reason box is {height}px high (content {full}px, overflow-y {overflow}); expected at most 12rem, scrolling")
        self.ok(f"request page: the long reason sits in a {height}px scrolling box (content {full}px)")

    def test_csrf(self):
        print("CSRF (outside the browser)")
        cookie = self.session_cookie()["value"]
        csrf = self.d.prop(self.d.find("form.decide input[name=csrf]"), "value")
        check(csrf, "no CSRF token in the decision form")
        decide = f"{self.url}/requests/{self.req_escape}/decide"
        base = {"Cookie": f"gatehouse_session={cookie}", "Content-Type": "application/x-www-form-urlencoded"}

        def post(fields, extra=None):
            status, headers, text = http("POST", decide, {**base, **(extra or {})}, urllib.parse.urlencode(fields).encode())
            self.record_html(f"POST decide {fields.get('decision')} {extra or ''}", status, headers)
            return status, headers, text

        def still_pending(after):
            status, body = self.api("GET", f"/v1/requests/{self.req_escape}", self.bob)
            check(status == 200 and body.get("state") == "pending" and not body.get("approvals"),
                  f"after {after}: {self.req_escape} is {body.get('state')} with approvals {body.get('approvals')}")

        status, headers, text = post({"decision": "approve"})
        check(status == 403, f"POST decision=approve without csrf answered HTTP {status} (Location {headers.get('Location')})")
        check("security token" in text, f"the 403 page does not explain the CSRF refusal: {text[:200]!r}")
        still_pending("a POST without csrf")
        self.ok("POST decide without the csrf field: HTTP 403, request still pending")

        status, headers, _ = post({"decision": "approve", "csrf": "x" * len(csrf)})
        check(status == 403, f"POST with a wrong csrf answered HTTP {status}")
        still_pending("a POST with a wrong csrf")
        self.ok("POST decide with a wrong csrf: HTTP 403, still pending")

        status, headers, text = post({"decision": "approve", "csrf": csrf}, {"Origin": "http://evil.example"})
        check(status == 403, f"POST with the right csrf from Origin http://evil.example answered HTTP {status}")
        still_pending("a POST from Origin http://evil.example")
        self.ok("POST decide with the right csrf but Origin http://evil.example: HTTP 403, still pending")

        status, headers, _ = post({"decision": "approve", "csrf": csrf}, {"Sec-Fetch-Site": "cross-site"})
        check(status == 403, f"POST with the right csrf and Sec-Fetch-Site: cross-site answered HTTP {status}")
        still_pending("a cross-site POST")
        self.ok("POST decide with the right csrf but Sec-Fetch-Site: cross-site: HTTP 403, still pending")

        # Control: the same cookie, csrf and own origin do pass the checks (an unknown decision is then a 400),
        # so the 403s above came from the missing token and the foreign origin.
        status, headers, text = post({"decision": "bogus", "csrf": csrf}, {"Origin": self.url})
        check(status == 400 and "choose Approve" in text, f"control POST with the right csrf and origin answered HTTP {status}")
        still_pending("the control POST")
        self.ok("control: right csrf + own Origin passes the CSRF check (unknown decision -> 400)")

    def test_alice_grants(self):
        print("grants as alice")
        self.sign_out()
        self.sign_in("alice", self.alice)
        self.d.click(self.d.find("header nav a[href='/grants']"))
        self.wait_path("/grants")
        heading = self.d.text(self.d.find("main h1"))
        check(heading == "My active grants", f"alice's grants page is headed {heading!r}")
        rows = self.d.script(
            "return Array.from(document.querySelectorAll('main table.list tbody tr')).map(tr =>"
            " Array.from(tr.cells).map(td => td.innerText.trim()))")
        mine = [r for r in rows if r[2].startswith("prod-db/write")]
        check(len(mine) == 1, f"alice's grants page rows: {rows}")
        row = mine[0]
        check(row[1] == "alice" and row[4] == "active" and self.req_approve in row[0], f"the grant row is {row}")
        check("Release" in row[5], f"no Release button on alice's own active grant: {row}")
        self.ok(f"/grants as alice lists prod-db/write, state active, from {self.req_approve}, with Release")
        self.shot("grants.png")
        # alice sees her own request without a decision form (nobody approves their own request).
        self.d.get(f"{self.url}/requests/{self.req_escape}")
        check(not self.d.find_all("form.decide"), "alice is offered the decision form on her own request")
        check(self.d.find_all(f"form[action='/requests/{self.req_escape}/cancel']"), "alice has no Cancel on her pending request")
        self.ok("alice's own pending request: no decision form, a Cancel button")
        self.alice_cookie = self.session_cookie()["value"]

    def test_headers(self):
        print("redirects and headers (outside the browser)")
        status, headers, _ = http("GET", self.url + "/inbox")
        check(status == 303, f"/inbox without a session answered HTTP {status}")
        check(headers.get("Location") == "/sign-in", f"/inbox without a session redirects to {headers.get('Location')}")
        self.record_html("GET /inbox (no cookie)", status, headers)
        self.ok("/inbox without a session: 303 to /sign-in")
        status, headers, _ = http("GET", self.url + "/inbox", {"Cookie": "gatehouse_session=ghw_forged0000000000000000000000000000000"})
        check(status == 303 and headers.get("Location") == "/sign-in", f"/inbox with a forged session answered HTTP {status}")
        self.ok("/inbox with a forged session cookie: 303 to /sign-in")

        signed = {"Cookie": f"gatehouse_session={self.alice_cookie}"}
        for path, want in [("/sign-in", 303), ("/", 303), ("/inbox", 200), ("/mine", 200), ("/grants", 200),
                           ("/break-glass", 200), (f"/requests/{self.req_approve}", 200), ("/requests/req_doesnotexist", 404),
                           ("/requests/%3Cb%3E", 404), ("/audit", 403)]:
            status, headers, text = http("GET", self.url + path, signed)
            check(status == want, f"GET {path} as alice answered HTTP {status}, expected {want}")
            self.record_html(f"GET {path}", status, headers)
            if path == "/requests/%3Cb%3E":
                check("<b>" not in text, "the bad-id error page reflects <b> unescaped")
        status, headers, _ = http("GET", self.url + "/sign-in")
        self.record_html("GET /sign-in (no cookie)", status, headers)

        for what, status, headers in self.html_responses:
            csp = headers.get("Content-Security-Policy") or ""
            check("default-src 'none'" in csp, f"{what} (HTTP {status}) has Content-Security-Policy {csp!r}")
            check(headers.get("X-Content-Type-Options") == "nosniff", f"{what} lacks X-Content-Type-Options: nosniff")
            check("script-src" not in csp, f"{what}: CSP allows scripts: {csp!r}")
        self.ok(f"all {len(self.html_responses)} HTML/redirect responses carry a CSP with default-src 'none' "
                f"(statuses {sorted({s for _, s, _ in self.html_responses})})")

    def run(self):
        os.makedirs(self.artifacts, exist_ok=True)
        self.test_sign_in_as_bob()
        self.test_inbox()
        self.test_request_page()
        self.test_approve()
        self.test_deny()
        self.test_escaping()
        self.test_csrf()
        self.test_alice_grants()
        self.test_headers()


class ProviderSignInTest(Test):
    """A person signs in through the identity provider's own login page and approves a request.

    Environment (SCENARIO=provider): GATEHOUSE_URL, OIDC_ISSUER, APPROVER and APPROVER_PASSWORD (a person
    in a mapped approver group at the provider), REQ_APPROVE (a pending request they may approve).
    """

    def __init__(self, driver):
        self.d = driver
        self.url = env("GATEHOUSE_URL").rstrip("/")
        self.issuer = env("OIDC_ISSUER")
        self.person = env("APPROVER")
        self.password = env("APPROVER_PASSWORD")
        self.req_approve = env("REQ_APPROVE")
        self.artifacts = env("ARTIFACTS", "test-artifacts/browser")
        self.html_responses = []
        self.passed = 0

    def run(self):
        os.makedirs(self.artifacts, exist_ok=True)
        print("sign in through the identity provider")
        self.d.get(self.url + "/sign-in")
        button = self.d.find("#sign-in-provider")
        check("Test SSO" in self.d.text(button), f"the sign-in button reads {self.d.text(button)!r}")
        self.d.click(button)
        provider = urllib.parse.urlsplit(self.issuer)
        wait_until("the provider's login page", lambda: urllib.parse.urlsplit(self.d.url()).netloc == provider.netloc
                   and self.path() == "/accounts/login/", 15)
        self.shot("provider-1-login.png")
        self.ok(f"'Sign in with Test SSO' leads to the provider's login page ({provider.netloc})")
        self.d.type(self.d.find("#id_username"), self.person)
        self.d.type(self.d.find("#id_password"), self.password)
        self.d.click(self.d.find("#login-submit"))
        wait_until("the inbox after signing in", lambda: self.d.url().startswith(self.url + "/inbox"), 15)
        who = wait_until("the signed-in name in the header", lambda: self.d.text(self.d.find("header .who")))
        check(who.strip() == self.person, f"the header shows '{who}' after signing in as {self.person}")
        cookies = {c["name"]: c for c in self.d.cookies()}
        check(cookies.get("gatehouse_session", {}).get("httpOnly") is True, f"no httpOnly session cookie: {sorted(cookies)}")
        check("gatehouse_oidc" not in cookies, "the sign-in's state cookie outlived the sign-in")
        self.shot("provider-2-inbox.png")
        self.ok(f"back from the provider on /inbox as {who.strip()}, with an httpOnly session cookie and no leftover state cookie")
        self.d.click(self.d.find(f"main a[href='/requests/{self.req_approve}']"))
        self.wait_path(f"/requests/{self.req_approve}")
        self.d.click(self.d.find("form.decide button[value=approve]"))
        wait_until("the approved page", lambda: "done=approved" in self.d.url())
        state = self.d.text(self.d.find("main h1 .state")).strip().lower()
        check(state == "approved", f"after Approve the page says {state!r}")
        self.shot("provider-3-approved.png")
        self.ok(f"{self.person} approved {self.req_approve} from the inbox after signing in through the provider")
        self.sign_out()


def main():
    # The shell script's trap (or a CI timeout) may send SIGTERM: unwind through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    chromedriver = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    artifacts = os.environ.get("ARTIFACTS", "test-artifacts/browser")
    os.makedirs(artifacts, exist_ok=True)
    started = time.monotonic()
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="chromedriver-", suffix=".log", delete=False)
    process = subprocess.Popen([chromedriver, f"--port={port}", "--log-level=WARNING"],
                               stdout=log, stderr=subprocess.STDOUT)
    driver = WebDriver(f"http://127.0.0.1:{port}")
    test = None
    failure = None
    try:
        wait_until("chromedriver to start", lambda: process.poll() is None and driver.call("GET", "/status", timeout=2).get("ready"), 15)
        driver.start(chromium)
        test = ProviderSignInTest(driver) if os.environ.get("SCENARIO") == "provider" else Test(driver)
        test.run()
    except (CheckFailed, WebDriverError) as error:
        failure = str(error)
    except Exception as error:  # noqa: BLE001 - report anything as a failed run
        failure = f"{type(error).__name__}: {error}"
    finally:
        if failure and driver.session:
            try:
                driver.screenshot(os.path.join(artifacts, "failure.png"))
                with open(os.path.join(artifacts, "failure.html"), "w") as f:
                    f.write(f"<!-- {driver.url()} -->\n" + driver.s("GET", "/source"))
            except Exception as error:  # noqa: BLE001
                print(f"  (could not save the failure screenshot: {error})", file=sys.stderr)
        try:
            driver.quit()
        except Exception as error:  # noqa: BLE001
            print(f"  (could not end the WebDriver session: {error})", file=sys.stderr)
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    elapsed = time.monotonic() - started
    if failure:
        print(f"\nbrowser test FAILED: {failure}", file=sys.stderr)
        with open(log.name, errors="replace") as f:
            tail = f.read()[-2000:]
        if tail.strip():
            print(f"chromedriver log (tail):\n{tail}", file=sys.stderr)
        print(f"artefacts: {artifacts}/failure.png, failure.html", file=sys.stderr)
        os.unlink(log.name)
        sys.exit(1)
    os.unlink(log.name)
    print(f"\nbrowser test passed: {test.passed} checks in {elapsed:.1f}s; screenshots in {artifacts}/")


if __name__ == "__main__":
    main()
