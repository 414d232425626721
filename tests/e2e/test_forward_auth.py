"""portcullis behind real nginx (`auth_request`, config/nginx/portcullis.conf) and real Caddy
(`forward_auth` expanded: `reverse_proxy` + `handle_response`, config/caddy/Caddyfile), each running the example config as it is, with the
real OpenID Provider. Every test runs once per proxy.

Spoofing tests also talk to portcullis directly from 127.0.0.2, a loopback address outside
`server.trusted_proxies` (127.0.0.1/32, where nginx and Caddy connect from).
"""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urljoin

import pytest

import requests

from browser import Browser, jwt_claims, query, without_query
from chrome import Chromium
from parts import CLIENT_ID
from proxies import ForwardStack
from test_http_ext_authz import (
    clears, echo_json, is_session_cookie, parse_set_cookie, session_set_cookies, set_cookies,
)

PROTECTED = "/protected/page?x=1"
IDENTITY = (
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
    "x-auth-request-access-token",
)


@pytest.fixture(scope="module", params=["nginx", "caddy"])
def fstack(work_dir, request):
    s = ForwardStack(work_dir / f"forward-{request.param}", request.param)
    s.start()
    yield s
    s.stop()


# -- helpers ---------------------------------------------------------------------------------
def assert_login_redirect(stack, r, b: Browser | None = None) -> dict:
    trace = b.trace() if b else ""
    assert r.status_code == 302, f"expected a login redirect, got {r.status_code}: {r.text[:300]}\n{trace}"
    loc = r.headers.get("location", "")
    assert without_query(loc) == stack.idp.discovery["authorization_endpoint"], loc
    q = query(loc)
    assert q["client_id"] == CLIENT_ID
    assert q["redirect_uri"] == stack.callback_url, q
    return q


def login(stack, b: Browser, path: str = PROTECTED, user: str = "alice") -> dict:
    r = b.get(stack.url + path)
    assert_login_redirect(stack, r, b)
    assert any(c.startswith("_portcullis_csrf_") for c in set_cookies(r)), set_cookies(r)
    callback = b.authorize_at_idp(r.headers["location"], stack.callback_url, login=user)
    r = b.get(callback)
    assert r.status_code == 302, f"callback answered {r.status_code}: {r.text[:300]}\n{b.trace()}"
    assert urljoin(stack.url + "/", r.headers["location"]) == stack.url + path, b.trace()
    return echo_json(b.get(stack.url + path))


def direct(port: int, method: str, target: str, headers: dict[str, str]):
    """A request to portcullis from 127.0.0.2: not a trusted proxy."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=("127.0.0.2", 0))
    try:
        conn.request(method, target, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def normalized(name: str) -> str:
    return name.lower().replace("_", "-")


# -- the login ---------------------------------------------------------------------------------
def test_login_reaches_upstream_with_identity_headers(fstack):
    b = Browser()
    seen = login(fstack, b)
    h = seen["headers"]
    assert seen["path"] == PROTECTED
    assert h["x-auth-request-user"] == "alice"
    assert h["x-auth-request-email"] == "alice@example.com"
    assert h["x-auth-request-preferred-username"] == "alice"
    assert h["x-auth-request-groups"] == "admins,devs"
    assert not h.get("x-auth-request-access-token"), "pass_access_token is off"
    assert "cookie" in h, "the app still gets the browser's cookies"
    # Other pages and methods with the same session; the admin rule lets alice in.
    assert echo_json(b.post(fstack.url + "/admin/x", data="a=1"))["method"] == "POST"


def test_api_call_without_session_is_401(fstack):
    api = Browser(accept="application/json")
    r = api.get(fstack.url + "/api/things")
    assert r.status_code == 401, r.text[:300]
    assert r.headers["content-type"].startswith("application/json")
    assert json.loads(r.text)["error"] == "unauthorized"
    assert "location" not in r.headers
    # An XHR from a page, even with an HTML Accept, is an API call too.
    r = Browser().get(fstack.url + PROTECTED, headers={"X-Requested-With": "XMLHttpRequest"})
    assert r.status_code == 401


def test_public_path_needs_no_session(fstack):
    seen = echo_json(Browser().get(fstack.url + "/public/readme",
                                   headers={"X-Auth-Request-User": "mallory"}))
    assert not seen["headers"].get("x-auth-request-user"), seen["headers"]


def test_policy_refusal_is_403(fstack):
    b = Browser()
    login(fstack, b, "/protected/bob", user="bob")
    r = b.get(fstack.url + "/admin/x")
    assert r.status_code == 403, r.text[:300]


def test_sign_out(fstack):
    b = Browser()
    login(fstack, b)
    r = b.get(fstack.url + "/oauth2/sign_out")
    assert r.status_code == 302, r.text[:300]
    assert [c for c in session_set_cookies(r) if clears(c)], set_cookies(r)
    assert not [c.name for c in b.session.cookies if is_session_cookie(c.name) and c.value]
    loc = r.headers["location"]
    assert without_query(loc) == fstack.idp.discovery["end_session_endpoint"], loc
    q = query(loc)
    assert jwt_claims(q["id_token_hint"])["sub"] == "alice"
    done = b.confirm_idp_logout(loc)
    assert done.status_code in (302, 303)
    back = done.headers["location"]
    assert without_query(back) == f"{fstack.url}/oauth2/signed_out", back
    r = b.get(back)
    assert r.status_code == 401 and "signed out" in r.text.lower(), r.text[:300]
    # Signed out: a browser is sent to log in again, an API call is refused.
    assert_login_redirect(fstack, b.get(fstack.url + PROTECTED), b)
    r = b.get(fstack.url + "/api/x", headers={"Accept": "application/json"})
    assert r.status_code == 401


def test_login_and_sign_out_in_chromium(fstack, work_dir):
    """Headless Chromium through the proxy: a deep link, the IdP's own login and consent
    forms, back to the app (which greets the user from the identity headers), sign-out through
    the IdP's confirmation to our signed-out page, and a login asked for again."""
    deep = "/app/reports/2026?q=north%20east&sort=-date"
    b = Chromium(work_dir, name=f"forward-{fstack.proxy_kind}")
    try:
        b.get(fstack.url + deep)
        assert b.url.startswith(fstack.idp.issuer), f"straight to the IdP: {b.url}"
        b.idp_login("alice")
        b.wait_for("the app page", lambda: b.has("#greeting"))
        assert b.url == fstack.url + deep, b.url
        assert b.find("#greeting").text == "Hello, alice"
        assert b.find("#path").text == deep
        assert b.find("#groups").text == "admins,devs"

        b.find("#sign-out").click()
        b.idp_confirm_logout()
        b.wait_for("the signed-out page", lambda: b.has("main h1") and "signed out" in b.find("h1").text)
        assert b.url == fstack.url + "/oauth2/signed_out", b.url
        b.get(fstack.url + "/app/")
        b.wait_for("the IdP's login form", b.at_idp_login)
    finally:
        b.quit()


# -- spoofing ----------------------------------------------------------------------------------
def test_forwarded_uri_from_the_client_never_opens_a_protected_path(fstack):
    # Through the proxy: it replaces the client's X-Forwarded-Uri with the real one.
    anon = Browser(accept="application/json")
    r = anon.get(fstack.url + "/admin/x", headers={"X-Forwarded-Uri": "/public/x"})
    assert r.status_code == 401, r.text[:300]
    b = Browser()
    login(fstack, b, "/protected/bob", user="bob")
    r = b.get(fstack.url + "/admin/x", headers={"X-Forwarded-Uri": "/public/x",
                                                "X-Original-URI": "/public/x"})
    assert r.status_code == 403, r.text[:300]

    # Directly, from a peer that is not trusted: the header is ignored, the request line decides.
    port = fstack.portcullis.http_port
    for target in ("/oauth2/auth", "/oauth2/forward"):
        status, _, body = direct(port, "GET", target, {
            "Host": f"127.0.0.1:{fstack.port}", "X-Forwarded-Uri": "/public/x",
            "Accept": "application/json"})
        assert status == 401, f"{target}: {status} {body[:200]}"


def test_forwarded_host_from_an_untrusted_peer_changes_nothing(fstack):
    # Through the proxy: the callback stays on the proxy's host.
    r = Browser().get(fstack.url + PROTECTED, headers={"X-Forwarded-Host": "evil.example",
                                                      "X-Forwarded-Proto": "https"})
    q = assert_login_redirect(fstack, r)
    assert "evil.example" not in q["redirect_uri"]

    # Directly from an untrusted peer: the same redirect as without the header.
    port = fstack.portcullis.http_port
    base = {"Host": f"127.0.0.1:{fstack.port}", "Accept": "text/html"}
    spoofed = dict(base, **{"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
                            "X-Forwarded-Uri": "/public/x"})
    status, headers, _ = direct(port, "GET", "/oauth2/forward", spoofed)
    plain_status, plain_headers, _ = direct(port, "GET", "/oauth2/forward", base)
    assert status == plain_status == 302
    assert "evil.example" not in headers["location"]
    assert query(headers["location"])["redirect_uri"] == query(plain_headers["location"])["redirect_uri"] \
        == fstack.callback_url


def test_identity_header_variants_never_reach_the_app(fstack):
    b = Browser()
    login(fstack, b)
    spoof = {
        "X-Auth-Request-User": "mallory",
        "x-auth-request-email": "mallory@evil.example",
        "X-AUTH-REQUEST-GROUPS": "root",
        "X-Auth-Request-Access-Token": "stolen",
    }
    h = echo_json(b.get(fstack.url + PROTECTED, headers=spoof))["headers"]
    assert h["x-auth-request-user"] == "alice"
    assert h["x-auth-request-email"] == "alice@example.com"
    assert h["x-auth-request-groups"] == "admins,devs"
    assert h.get("x-auth-request-access-token", "") == "", h

    for name in ("X_Auth_Request_User", "x_auth_request_groups", "X-Auth-Request_Email"):
        r = b.get(fstack.url + PROTECTED, headers={name: "mallory"})
        if fstack.proxy_kind == "nginx":  # nginx drops headers with "_" before anyone sees them
            h = echo_json(r)["headers"]
            smuggled = {k: v for k, v in h.items() if normalized(k) in IDENTITY and "mallory" in v}
            assert not smuggled, smuggled
            assert h["x-auth-request-user"] == "alice"
        else:  # Caddy passes them on to forward_auth; portcullis refuses the request
            assert r.status_code == 400, f"{name}: {r.status_code} {r.text[:200]}"
            assert "imitates an identity header" in r.text


# -- split session cookies -----------------------------------------------------------------------
def test_split_session_cookies_are_all_cleared_on_a_refusal(work_dir, request):
    """carol's session needs several cookies. Under a stricter policy the auth answer is 403 and
    expires every chunk; nginx keeps only the first Set-Cookie of an auth subrequest, so the
    example copies portcullis's x-portcullis-set-cookie-<n> lines into the response."""
    for kind in ("nginx", "caddy"):
        s = ForwardStack(work_dir / f"forward-split-{kind}", kind)
        s.start()
        try:
            b = Browser()
            seen = login(s, b, user="carol")
            assert seen["headers"]["x-auth-request-user"] == "carol"
            chunks = sorted(c.name for c in b.session.cookies if is_session_cookie(c.name) and c.value)
            assert len(chunks) >= 2 and "_portcullis" not in chunks, chunks

            s.restart_portcullis("authz.allowed_groups=admins")
            r = b.get(s.url + PROTECTED)
            assert r.status_code == 403, f"{kind}: {r.status_code} {r.text[:200]}"
            expired = {c.split("=", 1)[0] for c in set_cookies(r) if clears(c)}
            assert set(chunks) <= expired, f"{kind}: {set_cookies(r)}"
            left = [c.name for c in b.session.cookies if is_session_cookie(c.name) and c.value]
            assert not left, f"{kind}: chunks left in the browser: {left}"
        finally:
            s.stop()


# -- token refresh on an allow -------------------------------------------------------------------
ACCESS_TOKEN_TTL = 4
REFRESH_MARGIN = 2  # cookie.refresh
REFRESHES = 3


def test_refreshed_cookies_reach_the_browser_on_allows(work_dir):
    """The real OpenID Provider issues 4 s access tokens and rotating refresh tokens (a spent one
    replayed revokes the whole grant). portcullis refreshes 2 s before expiry, on an allow, and
    sets the new session cookie(s) there: nginx's example copies them from
    x-portcullis-set-cookie-<n> with add_header, Caddy's from the same slots in its
    handle_response. A browser that did not get them would send the spent refresh token at the
    next refresh and be logged out. alice's session is one cookie, carol's several chunks."""
    stacks = {}
    try:
        for kind in ("nginx", "caddy"):
            stacks[kind] = ForwardStack(
                work_dir / f"forward-refresh-{kind}", kind,
                idp_env={
                    "IDP_ACCESS_TOKEN_TTL": str(ACCESS_TOKEN_TTL),
                    "IDP_ROTATE_REFRESH_TOKENS": "1",
                    "IDP_TEST_HOOKS": "1",
                },
                portcullis_sets=(
                    "oidc.scopes=openid,email,profile,groups,offline_access",
                    "oidc.extra_auth_params.prompt=consent",
                    f"cookie.refresh={REFRESH_MARGIN}s",
                ),
            ).start()

        # (stack, user, browser, when its tokens were issued at the latest)
        sessions = []
        for kind, s in stacks.items():
            for user in ("alice", "carol"):
                b = Browser()
                assert login(s, b, user=user)["headers"]["x-auth-request-user"] == user
                issued = time.monotonic()
                r = b.get(s.url + PROTECTED)
                assert r.status_code == 200 and not session_set_cookies(r), \
                    f"{kind}/{user}: fresh tokens, nothing to refresh: {set_cookies(r)}"
                sessions.append((s, user, b, issued))

        for round_ in range(1, REFRESHES + 1):
            for i, (s, user, b, issued) in enumerate(sessions):
                what = f"{s.proxy_kind}/{user}, refresh {round_}"
                before = jar(b)
                due = issued + ACCESS_TOKEN_TTL - REFRESH_MARGIN + 0.5
                time.sleep(max(0.0, due - time.monotonic()))
                r = b.get(s.url + PROTECTED)
                issued = time.monotonic()
                assert r.status_code == 200, f"{what}: {r.status_code} {r.text[:300]}\n{b.trace()}"
                assert echo_json(r)["headers"]["x-auth-request-user"] == user, what
                lines = session_set_cookies(r)
                names = [parse_set_cookie(c)[0] for c in lines]
                assert len(names) == len(set(names)), f"{what}: a cookie set twice: {names}"
                assert [c for c in lines if not clears(c)], f"{what}: no refreshed cookie: {set_cookies(r)}"
                after = jar(b)
                assert after and after != before, f"{what}: the browser kept its old cookie"
                assert all(not n.startswith("x-portcullis") for n in r.headers), dict(r.headers)
                sessions[i] = (s, user, b, issued)

        # The refreshed cookies are the ones in use: no refresh now, and every refresh token was
        # redeemed once (a replayed one would be a refresh error and a login redirect).
        for s, user, b, _ in sessions:
            r = b.get(s.url + PROTECTED)
            assert r.status_code == 200, f"{s.proxy_kind}/{user}: {r.status_code}"
            assert not session_set_cookies(r)
        for kind, s in stacks.items():
            counts = requests.get(f"{s.idp.issuer}/__test/counts", timeout=5).json()
            assert counts == {"refresh_grants": 2 * REFRESHES, "refresh_errors": 0}, f"{kind}: {counts}"
    finally:
        for s in stacks.values():
            s.stop()


def jar(b: Browser) -> dict[str, str]:
    return {c.name: c.value for c in b.session.cookies if is_session_cookie(c.name) and c.value}
