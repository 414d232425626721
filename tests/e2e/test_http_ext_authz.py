"""portcullis behind a real Envoy (HTTP ext_authz, configured as Istio's envoyExtAuthzHttp) with a
real OpenID Provider. Every request goes through Envoy, as a browser's would.

Each test builds its own browser (cookie jar) and, where it needs one, its own login: no test
depends on another one having run.
"""

from __future__ import annotations

import json
import re
import time
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import pytest

from browser import Browser, jwt_claims, query, without_query
from parts import CLIENT_ID

COOKIE = "_portcullis"  # cookie.name's default
PROTECTED = "/protected/page?x=1"


# -- helpers ---------------------------------------------------------------------------------
def is_session_cookie(name: str) -> bool:
    """The session cookie, or one chunk of it (`_portcullis_0`, `_portcullis_1`, ...)."""
    return name == COOKIE or re.fullmatch(re.escape(COOKIE) + r"_\d+", name) is not None


def with_param(url: str, key: str, value: str) -> str:
    parts = urlsplit(url)
    params = [(k, value if k == key else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(params)))


def set_cookies(r) -> list[str]:
    return r.raw.headers.getlist("set-cookie")


def parse_set_cookie(line: str) -> tuple[str, str, dict[str, str]]:
    parts = [p.strip() for p in line.split(";")]
    name, _, value = parts[0].partition("=")
    attrs = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        attrs[k.strip().lower()] = v.strip()
    return name, value, attrs


def clears(line: str) -> bool:
    """Whether a Set-Cookie line deletes its cookie."""
    _, value, attrs = parse_set_cookie(line)
    if "max-age" in attrs and attrs["max-age"].lstrip("-").isdigit() and int(attrs["max-age"]) <= 0:
        return True
    if "expires" in attrs:
        try:
            return parsedate_to_datetime(attrs["expires"]).timestamp() < time.time()
        except (TypeError, ValueError):
            pass
    return value in ("", '""')


def session_set_cookies(r) -> list[str]:
    return [c for c in set_cookies(r) if is_session_cookie(parse_set_cookie(c)[0])]


def session_cookie_pairs(b: Browser) -> list[tuple[str, str]]:
    """The session cookie (or its chunks) in a browser's jar, in name order."""
    pairs = sorted((c.name, c.value) for c in b.session.cookies if is_session_cookie(c.name) and c.value)
    assert pairs, f"no session cookie in the jar: {sorted(b.cookie_names())}"
    return pairs


def cookie_header(pairs) -> str:
    return "; ".join(f"{n}={v}" for n, v in pairs)


def assert_login_redirect(stack, r, b: Browser | None = None):
    """`r` is a 302 to the IdP's authorization endpoint for our client."""
    trace = b.trace() if b else ""
    assert r.status_code == 302, f"expected a login redirect, got {r.status_code}: {r.text[:300]}\n{trace}"
    loc = r.headers.get("location", "")
    assert without_query(loc) == stack.idp.discovery["authorization_endpoint"], loc
    q = query(loc)
    assert q["client_id"] == CLIENT_ID
    assert q["response_type"] == "code"
    assert q["redirect_uri"] == stack.callback_url
    return q


def echo_json(r) -> dict:
    assert r.status_code == 200, f"expected 200 from the upstream, got {r.status_code}: {r.text[:300]}"
    assert r.headers.get("content-type", "").startswith("application/json")
    data = json.loads(r.text)
    assert set(data) >= {"method", "path", "headers"}, data
    return data


def start_login(stack, b: Browser, path: str = PROTECTED):
    r = b.get(stack.url + path)
    assert_login_redirect(stack, r, b)
    return r.headers["location"]


def finish_at_idp(stack, b: Browser, auth_url: str, login: str = "alice") -> str:
    """Log in and consent at the IdP; returns the callback URL (through Envoy) it sends us to."""
    return b.authorize_at_idp(auth_url, stack.callback_url, login=login)


def login(stack, b: Browser, path: str = PROTECTED) -> dict:
    """The whole browser login for `path`; returns what the upstream saw for `path`."""
    callback = finish_at_idp(stack, b, start_login(stack, b, path))
    r = b.get(callback)
    assert r.status_code == 302, f"callback answered {r.status_code}: {r.text[:300]}\n{b.trace()}"
    assert urljoin(stack.url + "/", r.headers["location"]) == stack.url + path, b.trace()
    return echo_json(b.get(stack.url + path))


# -- the login flow --------------------------------------------------------------------------
def test_browser_without_session_is_sent_to_the_idp(stack):
    b = Browser()
    r = b.get(stack.url + PROTECTED)
    q = assert_login_redirect(stack, r, b)
    assert q["code_challenge_method"] == "S256"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", q["code_challenge"]), q["code_challenge"]
    assert len(q["state"]) >= 16 and len(q["nonce"]) >= 16, q
    assert set(q["scope"].split()) == {"openid", "email", "profile", "groups"}, q["scope"]
    assert set_cookies(r), "no Set-Cookie (pending login) on the login redirect"
    # The pending-login cookie is not the session cookie.
    assert not any(is_session_cookie(parse_set_cookie(c)[0]) and not clears(c) for c in set_cookies(r)), (
        set_cookies(r)
    )
    # A second redirect for the same browser gets a fresh state and nonce.
    q2 = assert_login_redirect(stack, b.get(stack.url + PROTECTED), b)
    assert q2["state"] != q["state"] and q2["nonce"] != q["nonce"]


def test_full_login_reaches_upstream_with_identity_headers(stack):
    b = Browser()
    auth_url = start_login(stack, b)
    callback = finish_at_idp(stack, b, auth_url)
    cq = query(callback)
    assert without_query(callback) == stack.callback_url
    assert cq["state"] == query(auth_url)["state"] and cq["code"]

    r = b.get(callback)
    assert r.status_code == 302, f"{r.status_code} {r.text[:300]}\n{b.trace()}"
    assert urljoin(stack.url + "/", r.headers["location"]) == stack.url + PROTECTED
    new = [c for c in session_set_cookies(r) if not clears(c)]
    assert new, f"callback set no session cookie: {set_cookies(r)}"
    assert all("httponly" in parse_set_cookie(c)[2] for c in new), new

    seen = echo_json(b.get(stack.url + PROTECTED))
    assert seen["method"] == "GET"
    assert seen["path"] == PROTECTED
    h = seen["headers"]
    assert h.get("x-auth-request-user") == "alice", h
    assert h.get("x-auth-request-email") == "alice@example.com", h
    assert h.get("x-auth-request-preferred-username") == "alice", h
    assert h.get("x-auth-request-groups") == "admins,devs", h
    # Defaults: headers.pass_access_token and headers.set_authorization_header are off.
    assert "x-auth-request-access-token" not in h, h
    assert "authorization" not in h, h


def test_session_works_for_other_paths_and_methods(stack):
    b = Browser()
    login(stack, b)
    seen = echo_json(b.post(stack.url + "/other/api?y=2", data=b"payload",
                            headers={"Content-Type": "text/plain"}))
    assert seen["method"] == "POST" and seen["path"] == "/other/api?y=2"
    assert seen["body"] == "payload"
    assert seen["headers"]["x-auth-request-user"] == "alice"


def test_client_cannot_spoof_identity_headers(stack):
    b = Browser()
    login(stack, b)
    spoof = {
        "X-Auth-Request-Email": "evil@example.com",
        "X-Auth-Request-User": "mallory",
        "X-Auth-Request-Groups": "root",
        "X-Auth-Request-Preferred-Username": "mallory",
    }
    h = echo_json(b.get(stack.url + PROTECTED, headers=spoof))["headers"]
    assert h["x-auth-request-email"] == "alice@example.com", h
    assert h["x-auth-request-user"] == "alice", h
    assert h["x-auth-request-groups"] == "admins,devs", h
    assert h["x-auth-request-preferred-username"] == "alice", h


def test_spoofed_identity_headers_without_session_do_not_pass(stack):
    b = Browser()
    r = b.get(stack.url + PROTECTED, headers={"X-Auth-Request-Email": "alice@example.com",
                                               "X-Auth-Request-User": "alice"})
    assert_login_redirect(stack, r, b)


def test_api_client_without_session_gets_401_json(stack):
    b = Browser(accept="application/json")
    r = b.get(stack.url + "/protected/api")
    assert r.status_code == 401, f"{r.status_code} {r.headers} {r.text[:300]}"
    assert "location" not in r.headers, r.headers
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    json.loads(r.text)  # the body is JSON


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda v: v[: len(v) // 2] + ("A" if v[len(v) // 2] != "A" else "B") + v[len(v) // 2 + 1:],
                     id="one-char-flipped"),
        pytest.param(lambda v: v[:-4], id="truncated"),
        pytest.param(lambda v: "x" * len(v), id="replaced"),
    ],
)
def test_tampered_session_cookie_is_no_session(stack, tamper):
    b = Browser()
    login(stack, b)
    pairs = session_cookie_pairs(b)

    # Control: the untouched cookie, replayed from an empty browser, is a session.
    good = Browser()
    seen = echo_json(good.get(stack.url + PROTECTED, headers={"Cookie": cookie_header(pairs)}))
    assert seen["headers"]["x-auth-request-user"] == "alice"

    (name, value), rest = pairs[0], pairs[1:]
    bad_cookie = cookie_header([(name, tamper(value))] + rest)
    assert bad_cookie != cookie_header(pairs)
    evil = Browser()
    r = evil.get(stack.url + PROTECTED, headers={"Cookie": bad_cookie})
    assert_login_redirect(stack, r, evil)


def test_healthz_through_envoy_is_not_open(stack):
    b = Browser()
    r = b.get(stack.url + "/healthz")
    assert r.status_code != 200, "a /healthz check through Envoy was allowed without a session"
    assert_login_redirect(stack, r, b)


# -- sign-out --------------------------------------------------------------------------------
def test_sign_out_clears_the_session(stack):
    b = Browser()
    login(stack, b)
    r = b.get(stack.url + "/oauth2/sign_out")
    assert r.status_code == 302, f"{r.status_code} {r.text[:300]}"
    cleared = [c for c in session_set_cookies(r) if clears(c)]
    assert cleared, f"sign_out did not clear the session cookie: {set_cookies(r)}"
    assert not [c.name for c in b.session.cookies if is_session_cookie(c.name) and c.value], b.cookie_names()

    loc = urljoin(stack.url + "/", r.headers["location"])
    end_session = stack.idp.discovery["end_session_endpoint"]
    if without_query(loc) == end_session:
        q = query(loc)
        assert q["post_logout_redirect_uri"] in stack.client_metadata()["post_logout_redirect_uris"], q
        claims = jwt_claims(q["id_token_hint"])
        assert claims["sub"] == "alice" and claims["aud"] == CLIENT_ID, claims
        # Finish the logout at the IdP: it sends us back to the registered URI.
        done = b.confirm_idp_logout(loc)
        assert done.status_code in (302, 303), done.text[:300]
        back = done.headers["location"]
        assert without_query(back) == q["post_logout_redirect_uri"], back
        if "state" in q:
            assert query(back)["state"] == q["state"]
        idp_logged_out = True
    else:
        assert loc.startswith(stack.url + "/"), f"sign_out redirected off-site: {loc}"
        idp_logged_out = False

    # The protected page wants a login again.
    r = b.get(stack.url + PROTECTED)
    assert_login_redirect(stack, r, b)
    if idp_logged_out:
        # ... and the IdP asks for the password again, its session is over too.
        r = b.get(r.headers["location"])
        assert r.status_code in (302, 303)
        r = b.get(urljoin(r.url, r.headers["location"]))
        assert r.status_code == 200 and 'name="login"' in r.text, r.text[:300]


# -- the callback ----------------------------------------------------------------------------
def test_callback_with_wrong_state_is_403(stack):
    b = Browser()
    callback = finish_at_idp(stack, b, start_login(stack, b))
    q = query(callback)
    bad = with_param(callback, "state", "A" * len(q["state"]))
    assert query(bad)["state"] != q["state"] and query(bad)["code"] == q["code"]
    r = b.get(bad)
    assert r.status_code == 403, f"{r.status_code} {r.text[:300]}"
    assert not [c for c in session_set_cookies(r) if not clears(c)], set_cookies(r)
    assert r.headers.get("content-type", "").startswith("text/html"), r.headers
    # Still no session.
    assert_login_redirect(stack, b.get(stack.url + PROTECTED), b)


def test_callback_without_pending_login_creates_no_session(stack):
    b = Browser()
    callback = finish_at_idp(stack, b, start_login(stack, b))
    fresh = Browser()  # never started a login: no pending-login cookie
    r = fresh.get(callback)
    assert r.status_code == 302 or 400 <= r.status_code < 500, f"{r.status_code} {r.text[:300]}"
    assert not [c for c in session_set_cookies(r) if not clears(c)], set_cookies(r)
    assert_login_redirect(stack, fresh.get(stack.url + PROTECTED), fresh)


def test_two_parallel_logins_both_complete(stack):
    b = Browser()
    auth_a = start_login(stack, b, "/protected/a?n=1")
    auth_b = start_login(stack, b, "/protected/b?n=2")
    assert query(auth_a)["state"] != query(auth_b)["state"]
    callback_a = finish_at_idp(stack, b, auth_a)
    callback_b = finish_at_idp(stack, b, auth_b)  # the IdP session exists: no form this time

    # Finish them in the other order than they started.
    r = b.get(callback_b)
    assert r.status_code == 302, f"{r.status_code} {r.text[:300]}\n{b.trace()}"
    assert urljoin(stack.url + "/", r.headers["location"]) == stack.url + "/protected/b?n=2"
    r = b.get(callback_a)
    assert r.status_code == 302, f"{r.status_code} {r.text[:300]}\n{b.trace()}"
    assert urljoin(stack.url + "/", r.headers["location"]) == stack.url + "/protected/a?n=1"

    for path in ("/protected/a?n=1", "/protected/b?n=2"):
        seen = echo_json(b.get(stack.url + path))
        assert seen["path"] == path and seen["headers"]["x-auth-request-user"] == "alice"


# -- failure ---------------------------------------------------------------------------------
def test_portcullis_down_fails_closed(own_stack):
    s = own_stack
    b = Browser()
    login(s, b)
    cookie = cookie_header(session_cookie_pairs(b))
    errors_before = s.envoy.stats("http.gateway.ext_authz.").get("http.gateway.ext_authz.error", 0)

    s.portcullis.service.kill()
    assert not s.portcullis.service.alive()

    for headers in ({"Cookie": cookie}, {}, {"Cookie": cookie, "Accept": "application/json"}):
        r = Browser().get(s.url + PROTECTED, headers=headers)
        assert r.status_code == 403, f"{headers}: {r.status_code} {r.text[:300]}"
        assert r.headers.get("server") == "envoy" and r.text == "", (r.headers, r.text[:300])
    errors = s.envoy.stats("http.gateway.ext_authz.").get("http.gateway.ext_authz.error", 0)
    assert errors >= errors_before + 3, s.envoy.stats("http.gateway.ext_authz.")
