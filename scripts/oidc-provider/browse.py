"""A person's browser at the test provider, for tests: follows redirects with cookies kept, signs in
on the provider's real login form when it appears, and reports where it ended.

usage: browse.py START_URL USER PASSWORD [--stop-at URL_PREFIX] [--device USER_CODE] [--cookie NAME=VALUE@HOST ...]

Stops before requesting a URL that starts with --stop-at (printing it), else at the first page that
is not a redirect. With --device, enters the user code on the provider's device page and accepts. Prints one JSON object: url, status, stopped_at, cookies (name -> value), body.
"""
import html
import json
import re
import sys
from urllib.parse import urljoin, urlparse

import requests


def hidden(page, name):
    m = re.search(r'name="%s" value="([^"]*)"' % re.escape(name), page)
    return html.unescape(m.group(1)) if m else None


def main(argv):
    args, stop_at, cookies, device = [], None, [], None
    i = 0
    while i < len(argv):
        if argv[i] == "--device":
            device = argv[i + 1]
            i += 2
        elif argv[i] == "--stop-at":
            stop_at = argv[i + 1]
            i += 2
        elif argv[i] == "--cookie":
            cookies.append(argv[i + 1])
            i += 2
        else:
            args.append(argv[i])
            i += 1
    url, user, password = args
    session = requests.Session()
    for spec in cookies:
        pair, host = spec.rsplit("@", 1)
        name, value = pair.split("=", 1)
        session.cookies.set(name, value, domain=host)
    result = {"stopped_at": None}
    for _ in range(20):
        if stop_at and url.startswith(stop_at):
            result["stopped_at"] = url
            break
        r = session.get(url, allow_redirects=False, timeout=20)
        if r.status_code in (301, 302, 303, 307, 308):
            url = urljoin(url, r.headers["Location"])
            continue
        if r.status_code == 200 and 'id="login-submit"' in r.text and urlparse(url).path == "/accounts/login/":
            form = {"csrfmiddlewaretoken": hidden(r.text, "csrfmiddlewaretoken"), "username": user, "password": password,
                    "next": hidden(r.text, "next")}
            done = session.post(url, data=form, allow_redirects=False, timeout=20)
            if done.status_code != 302:
                result.update(status=done.status_code, url=url, body=done.text[:2000])
                break
            url = urljoin(url, done.headers["Location"])
            continue
        if device and r.status_code == 200 and 'name="user_code"' in r.text:
            done = session.post(url, data={"csrfmiddlewaretoken": hidden(r.text, "csrfmiddlewaretoken"), "user_code": device},
                                allow_redirects=False, timeout=20)
            if done.status_code not in (301, 302, 303):
                result.update(status=done.status_code, url=url, body=done.text[:2000])
                break
            url = urljoin(url, done.headers["Location"])
            continue
        if device and r.status_code == 200 and 'value="accept"' in r.text:
            done = session.post(url, data={"csrfmiddlewaretoken": hidden(r.text, "csrfmiddlewaretoken"), "action": "accept"},
                                allow_redirects=False, timeout=20)
            result.update(status=done.status_code, url=url, body=done.text[:2000], accepted=done.status_code in (200, 301, 302, 303))
            break
        result.update(status=r.status_code, url=url, body=r.text[:4000])
        break
    result.setdefault("url", url)
    result["cookies"] = {c.name: c.value for c in session.cookies}
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
