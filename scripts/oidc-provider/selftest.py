"""End-to-end check of the test OpenID Connect provider: `scripts/oidc-provider.sh selftest`.

Starts a provider in a temporary folder, adds users and a client with the fixture commands, signs
in through the real login form, runs the authorization-code flow with PKCE (S256), state and
nonce, checks the ID token against the JWKS, the refusals that matter, key rotation and the
RFC 8628 device grant, then stops the provider. Uses only the provider's venv (requests, jwcrypto).
"""

import base64
import hashlib
import html
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from urllib.parse import parse_qs, urljoin, urlparse

import requests
from jwcrypto import jwk, jwt

SCRIPT = sys.argv[1] if len(sys.argv) > 1 else "scripts/oidc-provider.sh"
CLIENT_ID, CLIENT_SECRET = "gatehouse-test", "s3cret-of-the-client"
REGISTERED = "http://127.0.0.1:8765/auth/callback"
passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {what}")
    else:
        failed += 1
        print(f"FAIL {what}")
    return ok


def sh(*args):
    return subprocess.run([SCRIPT, *args], check=True, text=True, stdout=subprocess.PIPE).stdout.strip()


def b64json(part):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def decode(id_token):
    header, claims, _ = id_token.split(".")
    return b64json(header), b64json(claims)


def hidden(page, name):
    m = re.search(r'name="%s" value="([^"]*)"' % re.escape(name), page)
    return html.unescape(m.group(1)) if m else None


class Provider:
    def __init__(self, issuer):
        self.issuer = issuer
        self.config = requests.get(issuer + "/.well-known/openid-configuration", timeout=10).json()

    def jwks(self):
        return requests.get(self.config["jwks_uri"], timeout=10).json()

    def login(self, session, response, username, password):
        """Follow a redirect to the login page and submit the real form (CSRF token and cookie)."""
        assert response.status_code == 302, response.status_code
        login_url = urljoin(self.issuer, response.headers["Location"])
        assert urlparse(login_url).path == "/accounts/login/", login_url
        page = session.get(login_url, timeout=10)
        assert 'id="login-submit"' in page.text
        form = {
            "csrfmiddlewaretoken": hidden(page.text, "csrfmiddlewaretoken"),
            "username": username,
            "password": password,
            "next": hidden(page.text, "next"),
        }
        done = session.post(login_url, data=form, allow_redirects=False, timeout=10)
        assert done.status_code == 302, f"login failed: {done.status_code}"
        return urljoin(self.issuer, done.headers["Location"])

    def authorize(self, session, redirect_uri, scope="openid profile email", user=None, **extra):
        """Run the authorization request; sign in when asked. Returns the callback's query."""
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        params = {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        params.update(extra)
        params = {k: v for k, v in params.items() if v is not None}
        r = session.get(self.config["authorization_endpoint"], params=params, allow_redirects=False, timeout=10)
        if r.status_code == 302 and urlparse(r.headers["Location"]).path == "/accounts/login/":
            r = session.get(self.login(session, r, *user), allow_redirects=False, timeout=10)
        if r.status_code != 302:
            return {"status": r.status_code}, verifier, state, nonce
        location = r.headers["Location"]
        query = {k: v[0] for k, v in parse_qs(urlparse(location).query).items()}
        query["location"] = location
        return query, verifier, state, nonce

    def token(self, data, basic=True, secret=CLIENT_SECRET):
        auth = (CLIENT_ID, secret) if basic else None
        if not basic:
            data = dict(data, client_id=CLIENT_ID, client_secret=secret)
        return requests.post(self.config["token_endpoint"], data=data, auth=auth, timeout=10)


def verify(provider, id_token):
    keys = jwk.JWKSet.from_json(json.dumps(provider.jwks()))
    token = jwt.JWT(jwt=id_token, key=keys, algs=["RS256"])
    return json.loads(token.claims)


def main():
    root = tempfile.mkdtemp(prefix="oidc-selftest-")
    pdir = root + "/provider"
    started = time.monotonic()
    issuer = sh("start", pdir)
    print(f"started {issuer} in {time.monotonic() - started:.1f} s")
    try:
        run(Provider(issuer), pdir)
    finally:
        subprocess.run([SCRIPT, "stop", pdir], check=False)
        if os.environ.get("OIDC_SELFTEST_KEEP"):
            print(f"kept {pdir} (server.log there)")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def run(p, pdir):
    port = urlparse(p.issuer).port
    check(p.issuer == f"http://127.0.0.1:{port}/o", f"issuer is {p.issuer}")
    sh("manage", pdir, "fixture_user", "alice", "--password", "alice-pw", "--email", "alice@example.test",
       "--groups", "dba,oncall")
    sh("manage", pdir, "fixture_user", "bob", "--password", "bob-pw", "--email", "bob@example.test",
       "--email-verified", "no")
    # Groups are replaced, not added to; running a fixture twice updates it.
    sh("manage", pdir, "fixture_user", "alice", "--password", "alice-pw", "--email", "alice@example.test",
       "--groups", "oncall,dba,admins")
    sh("manage", pdir, "fixture_client", CLIENT_ID, "--secret", CLIENT_SECRET, "--redirect-uri", REGISTERED,
       "--redirect-uri", "https://gatehouse.example.test/auth/callback")

    c = p.config
    print("discovery:", json.dumps(c, indent=2))
    check(c["id_token_signing_alg_values_supported"] == ["RS256"], "RS256 only")
    check(c["code_challenge_methods_supported"] == ["S256"], "PKCE S256 only")
    check(set(c["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post"},
          "client_secret_basic and client_secret_post")

    # --- authorization code + PKCE, signing in through the form; redirect on another loopback port
    browser = requests.Session()
    loopback = "http://127.0.0.1:40123/auth/callback"
    q, verifier, state, nonce = p.authorize(browser, loopback, user=("alice", "alice-pw"))
    check("code" in q and q["location"].startswith(loopback + "?"),
          f"loopback redirect on an unregistered port (RFC 8252) gets a code: {q}")
    check(q.get("state") == state, "state returned")
    r = p.token({"grant_type": "authorization_code", "code": q["code"], "redirect_uri": loopback,
                 "code_verifier": verifier})
    check(r.status_code == 200, f"code exchanged with client_secret_basic: {r.status_code} {r.text[:200]}")
    tokens = r.json()
    print("token response keys:", sorted(tokens), "expires_in", tokens.get("expires_in"))
    header, claims = decode(tokens["id_token"])
    print("ID token header:", json.dumps(header))
    print("ID token claims:", json.dumps(claims, indent=2))
    check(header["alg"] == "RS256" and header.get("kid"), "RS256 with a kid")
    check(claims["iss"] == p.issuer and claims["aud"] == CLIENT_ID and claims["nonce"] == nonce,
          "iss, aud, nonce")
    check(claims.get("preferred_username") == "alice" and claims.get("email") == "alice@example.test"
          and claims.get("email_verified") is True and claims.get("groups") == ["admins", "dba", "oncall"],
          "preferred_username, email, email_verified, groups in the ID token")
    check(isinstance(claims.get("sub"), str) and claims["sub"].isdigit(), "sub is the user's pk")
    check(verify(p, tokens["id_token"])["sub"] == claims["sub"], "signature verifies against the JWKS")
    kids = [k["kid"] for k in p.jwks()["keys"]]
    check(header["kid"] in kids, "JWKS has the ID token's kid")
    first_kid = header["kid"]

    again = p.token({"grant_type": "authorization_code", "code": q["code"], "redirect_uri": loopback,
                     "code_verifier": verifier})
    check(again.status_code == 400 and again.json().get("error") == "invalid_grant",
          f"second use of the code refused: {again.status_code} {again.text[:100]}")

    info = requests.get(c["userinfo_endpoint"], headers={"Authorization": "Bearer " + tokens["access_token"]},
                        timeout=10)
    print("userinfo:", info.text)
    check(info.status_code == 200 and info.json().get("groups") == ["admins", "dba", "oncall"]
          and info.json().get("sub") == claims["sub"], "userinfo answers with the same claims")

    r = p.token({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    refreshed = r.json()
    check(r.status_code == 200 and "id_token" in refreshed, f"refresh_token grant: {r.status_code} {sorted(refreshed)}")
    if "id_token" in refreshed:
        _, rc = decode(refreshed["id_token"])
        check(rc["sub"] == claims["sub"] and rc.get("groups") == claims["groups"], "refreshed ID token: same claims")

    # --- refusals
    q2, verifier2, _, _ = p.authorize(browser, REGISTERED)
    check("code" in q2, "second authorization: the session is kept, no login form")
    r = p.token({"grant_type": "authorization_code", "code": q2["code"], "redirect_uri": REGISTERED})
    check(r.status_code == 400, f"exchange without code_verifier refused: {r.status_code} {r.text[:100]}")
    q2, verifier2, _, _ = p.authorize(browser, REGISTERED)
    r = p.token({"grant_type": "authorization_code", "code": q2["code"], "redirect_uri": REGISTERED,
                 "code_verifier": "x" * 50})
    check(r.status_code == 400, f"wrong code_verifier refused: {r.status_code}")
    q2, verifier2, _, _ = p.authorize(browser, REGISTERED)
    r = p.token({"grant_type": "authorization_code", "code": q2["code"], "redirect_uri": REGISTERED,
                 "code_verifier": verifier2}, secret="wrong")
    check(r.status_code == 401, f"wrong client secret refused: {r.status_code} {r.text[:100]}")
    q2, verifier2, _, _ = p.authorize(browser, REGISTERED)
    r = p.token({"grant_type": "authorization_code", "code": q2["code"], "redirect_uri": REGISTERED,
                 "code_verifier": verifier2}, basic=False)
    check(r.status_code == 200 and "id_token" in r.json(), f"client_secret_post works: {r.status_code}")
    q2, _, _, _ = p.authorize(browser, REGISTERED, code_challenge=None, code_challenge_method=None)
    check(q2.get("error") == "invalid_request", f"authorization without PKCE refused: {q2}")
    q2, _, _, _ = p.authorize(browser, REGISTERED, code_challenge_method="plain")
    check("code" not in q2, f"PKCE plain refused: {q2.get('error')} {q2.get('error_description')}")
    q2, _, _, _ = p.authorize(browser, "http://127.0.0.1:40123/other")
    check(q2.get("status") == 400, f"unregistered redirect path refused without redirecting: {q2}")
    q2, _, _, _ = p.authorize(browser, "http://localhost:40123/auth/callback")
    check(q2.get("status") == 400, "localhost is not 127.0.0.1")

    # bob: email not verified, no groups; a `groups` scope alone also releases groups
    bob = requests.Session()
    q3, v3, _, _ = p.authorize(bob, REGISTERED, scope="openid email groups", user=("bob", "bob-pw"))
    r = p.token({"grant_type": "authorization_code", "code": q3["code"], "redirect_uri": REGISTERED,
                 "code_verifier": v3})
    _, bob_claims = decode(r.json()["id_token"])
    print("bob's claims (scope openid email groups):", json.dumps(bob_claims))
    check(bob_claims.get("email_verified") is False and bob_claims.get("groups") == []
          and "preferred_username" not in bob_claims, "email_verified false, groups [], no profile claims")
    q3, v3, _, _ = p.authorize(bob, REGISTERED, scope="openid")
    _, only = decode(p.token({"grant_type": "authorization_code", "code": q3["code"], "redirect_uri": REGISTERED,
                              "code_verifier": v3}).json()["id_token"])
    check("email" not in only and "groups" not in only, f"scope openid alone: {sorted(only)}")

    # --- device authorization grant (RFC 8628)
    # DOT wants client_id in the body even when the client authenticates with HTTP Basic.
    d = requests.post(c["device_authorization_endpoint"], data={"client_id": CLIENT_ID}, timeout=10,
                      auth=(CLIENT_ID, "wrong"))
    check(d.status_code == 401, f"device authorization with a wrong secret refused: {d.status_code}")
    d = requests.post(c["device_authorization_endpoint"], data={"client_id": CLIENT_ID, "scope": "openid profile email"},
                      auth=(CLIENT_ID, CLIENT_SECRET), timeout=10)
    check(d.status_code == 200, f"device authorization: {d.status_code} {d.text[:300]}")
    dev = d.json()
    print("device authorization response:", json.dumps(dev))
    grant = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": dev["device_code"]}
    r = p.token(grant)
    check(r.status_code == 400 and r.json().get("error") == "authorization_pending", f"pending: {r.text[:100]}")
    page = browser.get(dev["verification_uri_complete"], timeout=10)
    r = browser.post(dev["verification_uri"], allow_redirects=False, timeout=10, data={
        "csrfmiddlewaretoken": hidden(page.text, "csrfmiddlewaretoken"), "user_code": dev["user_code"]})
    check(r.status_code == 302, f"user code accepted: {r.status_code}")
    confirm = urljoin(p.issuer, r.headers["Location"])
    page = browser.get(confirm, timeout=10)
    r = browser.post(confirm, allow_redirects=False, timeout=10, data={
        "csrfmiddlewaretoken": hidden(page.text, "csrfmiddlewaretoken"), "action": "accept"})
    check(r.status_code == 302, f"device approved: {r.status_code}")
    r = p.token(grant)
    check(r.status_code == 200 and "access_token" in r.json(), f"device token: {r.status_code} {r.text[:300]}")
    device_tokens = r.json()
    print("device token response keys:", sorted(device_tokens), "scope", device_tokens.get("scope"))
    info = requests.get(c["userinfo_endpoint"], timeout=10,
                        headers={"Authorization": "Bearer " + device_tokens["access_token"]})
    check(info.status_code == 200 and info.json().get("preferred_username") == "alice",
          f"userinfo with the device access token: {info.text[:200]}")
    r = p.token(grant)
    check(r.status_code == 400, f"device code used twice refused: {r.status_code} {r.text[:100]}")

    # --- key rotation
    t = time.monotonic()
    issuer = sh("rotate-key", pdir)
    print(f"rotate-key took {time.monotonic() - t:.1f} s")
    check(issuer == p.issuer, "same issuer after rotate-key")
    kids = [k["kid"] for k in p.jwks()["keys"]]
    q4, v4, _, _ = p.authorize(browser, REGISTERED)
    r = p.token({"grant_type": "authorization_code", "code": q4["code"], "redirect_uri": REGISTERED,
                 "code_verifier": v4})
    new_header, _ = decode(r.json()["id_token"])
    print("after rotation: JWKS kids", kids, "new ID token kid", new_header["kid"])
    check(len(kids) == 2 and first_kid in kids and new_header["kid"] in kids and new_header["kid"] != first_kid,
          "JWKS has the old and the new kid; new tokens use the new kid")
    check(verify(p, r.json()["id_token"]) and verify(p, tokens["id_token"]),
          "old and new ID tokens verify against the JWKS")
    check(kids[0] == new_header["kid"], "the active key is listed first")


if __name__ == "__main__":
    sys.exit(main())
