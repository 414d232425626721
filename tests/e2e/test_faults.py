"""Fault injection against real processes through real Envoy (issue #11): the IdP down or hung,
a replica of portcullis killed and restarted under load. Nothing may be let through that should
not be, and nothing that should pass may fail.

Every test builds its own stack (it breaks parts of it). Redis cases (the Redis session store)
go here too once that store lands: 503 while Redis is down, never an allow, sessions back after
a restart.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from browser import Browser
from envoy_gateway import Envoy
from harness import REPO_DIR, http_ok, tcp_open
from parts import Portcullis, Stack
from test_http_ext_authz import PROTECTED, echo_json, finish_at_idp, login, start_login

HA_TEMPLATE = REPO_DIR / "config" / "envoy" / "envoy-ha.yaml"
IDP_TIMEOUT_S = 2  # oidc.http_timeout in these stacks


def _stack(work_dir: Path, name: str, **kw) -> Stack:
    d = Path(work_dir) / name
    d.mkdir(parents=True, exist_ok=True)
    return Stack(d, **kw)


# How Envoy talks to portcullis in the IdP tests:
#   http-check  tests/e2e/envoy_http.yaml: Istio's envoyExtAuthzHttp translation, the login
#               routes arrive as checks; a 5xx from portcullis is an authz error there, so the
#               browser gets Envoy's status_on_error (403, empty) instead of the 502 page;
#   http        config/envoy/envoy-http.yaml: the same plus the direct route for /oauth2/
#               (ext_authz disabled on it): the 502 page reaches the browser;
#   grpc        config/envoy/envoy-grpc.yaml: the 502 page travels as a denied_response.
HTTP_DIRECT_TEMPLATE = REPO_DIR / "config" / "envoy" / "envoy-http.yaml"
IDP_ERROR_TITLE = "The identity provider did not answer as expected"


def _idp_stack(work_dir: Path, name: str, mode: str) -> Stack:
    return _stack(
        work_dir, name,
        mode="grpc" if mode == "grpc" else "http",
        envoy_template=HTTP_DIRECT_TEMPLATE if mode == "http" else None,
        portcullis_sets=(f"oidc.http_timeout={IDP_TIMEOUT_S}s",),
    )


def _callback_direct(stack, callback_url: str, b: Browser) -> requests.Response:
    """The callback as portcullis's own check listener answers it (what Envoy is told)."""
    path = callback_url[len(stack.url):]
    return b.get(stack.portcullis.url + path, headers={"Host": stack.url.split("//")[1]})


def _timed(f):
    t0 = time.monotonic()
    r = f()
    return r, time.monotonic() - t0


def _has_session(b: Browser) -> bool:
    return any(c.startswith("_portcullis") and "_csrf_" not in c for c in b.cookie_names())


def _assert_error_page(r: requests.Response, status: int = 502, title: str = IDP_ERROR_TITLE):
    assert r.status_code == status, (r.status_code, r.headers, r.text[:300])
    assert r.headers.get("content-type", "").startswith("text/html"), r.headers
    assert title in r.text, r.text[:500]
    assert "request id" in r.text.lower() or "request-id" in r.text.lower(), r.text[:500]
    # The page's own security headers came along (denied_response headers / a plain route).
    assert "content-security-policy" in r.headers, r.headers


@pytest.mark.parametrize("mode,fault", [
    ("http-check", "down"), ("http", "down"), ("http", "hung"), ("grpc", "down"), ("grpc", "hung"),
])
def test_idp_failure_keeps_sessions_fails_logins_fast_and_recovers(work_dir, request, mode, fault):
    s = _idp_stack(work_dir, request.node.name, mode)
    s.start()
    try:
        _idp_failure(s, mode, fault)
    finally:
        # A test may leave the IdP stopped (SIGSTOP): let it go before stopping everything.
        if s.idp is not None and s.idp.service.alive():
            os.kill(s.idp.service.pid, signal.SIGCONT)
        s.stop()


def _idp_failure(s: Stack, mode: str, fault: str):
    alice = Browser()
    login(s, alice)
    # Logins half done: the IdP has sent the browser back with a code, but portcullis has not
    # exchanged it yet when the IdP fails. The token request is the first thing the callback
    # sends to the IdP, so each of these really waits on it.
    through_envoy, direct = Browser(), Browser()
    cb_envoy = finish_at_idp(s, through_envoy, start_login(s, through_envoy))
    cb_direct = finish_at_idp(s, direct, start_login(s, direct))
    chrome_login = None
    if mode == "grpc" and fault == "down":
        b = Browser()
        chrome_login = (b, finish_at_idp(s, b, start_login(s, b)))

    if fault == "down":
        s.idp.service.stop()
    else:  # accepts connections (the kernel does) but never answers
        os.kill(s.idp.service.pid, signal.SIGSTOP)

    # An existing session keeps working: its checks never touch the IdP.
    for _ in range(5):
        seen = echo_json(alice.get(s.url + PROTECTED))
        assert seen["headers"].get("x-auth-request-user"), seen
    # A new browser is still sent to the IdP (discovery is cached), not refused.
    r = Browser().get(s.url + PROTECTED)
    assert r.status_code == 302 and r.headers["location"].startswith(s.idp.issuer), r.status_code

    # The code exchange fails within oidc.http_timeout, with a clear 502 page from portcullis
    # (its HTTP listener, asked directly) ...
    r, took_direct = _timed(lambda: _callback_direct(s, cb_direct, direct))
    _assert_error_page(r)
    assert took_direct < IDP_TIMEOUT_S + 3, f"callback took {took_direct:.1f}s (oidc.http_timeout={IDP_TIMEOUT_S}s)"
    assert not _has_session(direct), direct.cookie_names()

    # ... and through Envoy, as the browser sees it.
    r, took = _timed(lambda: through_envoy.get(cb_envoy))
    print(f"{mode}/{fault}: callback failed after {took_direct:.2f}s at portcullis, "
          f"{took:.2f}s through Envoy (oidc.http_timeout={IDP_TIMEOUT_S}s)")
    assert took < IDP_TIMEOUT_S + 3, f"callback through Envoy took {took:.1f}s"
    assert not _has_session(through_envoy), through_envoy.cookie_names()
    assert "x-auth-request-user" not in r.text
    if mode == "http-check":
        # Without the direct route, Envoy's HTTP ext_authz turns the 502 (an authz error) into
        # its status_on_error: 403, empty body. Closed, never an allow, but no page.
        assert r.status_code == 403, (r.status_code, r.text[:300])
        assert r.text == "" and r.headers.get("server") == "envoy", (r.headers, r.text[:300])
    else:
        _assert_error_page(r)
    if chrome_login is not None:
        _error_page_in_chromium(s, *chrome_login)
    # Readiness stays up (the IdP was discovered; sessions still work): not dead.
    assert requests.get(s.portcullis.admin_url + "/readyz", timeout=5).status_code == 200

    # The IdP comes back: a fresh login works without restarting portcullis, and so does the
    # browser whose callback failed (its "Try again" is a new login).
    if fault == "down":
        s.idp.start()
    else:
        os.kill(s.idp.service.pid, signal.SIGCONT)
    bob = Browser()
    seen = login(s, bob)
    assert seen["headers"].get("x-auth-request-user"), seen
    seen = login(s, through_envoy)
    assert seen["headers"].get("x-auth-request-user"), seen
    assert echo_json(alice.get(s.url + PROTECTED))["headers"].get("x-auth-request-user")


def _error_page_in_chromium(s: Stack, b: Browser, callback: str):
    """The same failed callback in headless Chromium: the page is rendered and readable. The
    login was walked by `b` (scripted); Chromium gets its pending-login cookie."""
    from chrome import Chromium

    c = Chromium(s.work_dir, name="chromium-idp-down")
    try:
        c.get(s.url + "/oauth2/sign_in")  # any page of the origin, to be allowed to set cookies
        for cookie in b.session.cookies:
            if "_csrf_" in cookie.name:
                c.driver.add_cookie({"name": cookie.name, "value": cookie.value,
                                     "path": cookie.path or "/"})
        c.get(callback)
        c.wait_for("the error page", lambda: c.has("h1"))
        heading = c.find("h1")
        assert heading.is_displayed() and heading.text == IDP_ERROR_TITLE, c.text()[:500]
        assert "request id" in c.text().lower(), c.text()[:500]
        c.screenshot("idp-down-callback-grpc")
    finally:
        c.quit()


@pytest.mark.parametrize("mode", ["http", "grpc"])
def test_idp_down_at_start_up_gives_the_sign_in_503_page_and_recovers(work_dir, request, mode):
    """portcullis (re)starts while the IdP is down, so discovery cannot complete: an existing
    session still opens the app, starting a login is a 503 page at the browser, an app path
    without a session is an ordinary check (the gateway's status_on_error), and once the IdP
    is back discovery completes by itself and logins work, without another restart."""
    s = _idp_stack(work_dir, request.node.name, mode)
    s.start()
    try:
        alice = Browser()
        login(s, alice)
        s.idp.service.stop()
        p = s.portcullis
        p.service.stop()
        p.service.forget()
        p.service.start()
        p.service.wait_ready(tcp_open(p.grpc_port if mode == "grpc" else p.http_port),
                             timeout=15, what="listening")
        assert requests.get(p.admin_url + "/readyz", timeout=5).status_code == 503

        seen = echo_json(alice.get(s.url + PROTECTED))
        assert seen["headers"].get("x-auth-request-user") == "alice", seen
        r, took = _timed(lambda: Browser().get(s.url + "/oauth2/start?rd=%2Fprotected%2Fpage"))
        _assert_error_page(r, 503, title="Sign-in is temporarily unavailable")
        assert took < 5, f"the sign-in page took {took:.1f}s"
        r = Browser().get(s.url + PROTECTED)
        assert r.status_code == 403 and r.text == "" and r.headers.get("server") == "envoy", (
            r.status_code, r.text[:300])

        s.idp.start()
        p.service.wait_ready(http_ok(p.admin_url + "/readyz"), timeout=40, what="discovery")
        seen = login(s, Browser())
        assert seen["headers"].get("x-auth-request-user"), seen
    finally:
        s.stop()


def test_login_route_failure_is_a_denial_even_with_failure_mode_allow(work_dir, request):
    """gRPC mode with Envoy's failure_mode_allow (Istio failOpen: true): the callback's 502 page
    is a denial, so it reaches the browser and the request never goes to the application (an
    RPC error would have been let through)."""
    from envoy_gateway import GRPC_TEMPLATE

    template = Path(work_dir) / f"{request.node.name}-envoy-grpc-fail-open.yaml"
    text = GRPC_TEMPLATE.read_text()
    assert text.count("failure_mode_allow: false") == 1
    template.write_text(text.replace("failure_mode_allow: false", "failure_mode_allow: true"))
    s = _stack(work_dir, request.node.name, mode="grpc", envoy_template=template,
               portcullis_sets=(f"oidc.http_timeout={IDP_TIMEOUT_S}s",))
    s.start()
    try:
        b = Browser()
        callback = finish_at_idp(s, b, start_login(s, b))
        s.idp.service.stop()
        r = b.get(callback)
        _assert_error_page(r)
        assert '"headers"' not in r.text, "the request reached the application"
        assert not _has_session(b), b.cookie_names()
        assert s.envoy.stats("http.gateway.ext_authz.").get("http.gateway.ext_authz.denied", 0) >= 1
    finally:
        s.stop()


# -- two replicas behind Envoy ---------------------------------------------------------------
class Load:
    """Threads sending signed-in checks through Envoy as fast as they can, recording every
    answer that is not the upstream's 200 with the user's identity."""

    def __init__(self, url: str, cookies, threads: int = 6):
        self.url = url
        self.cookies = cookies
        self.stop_flag = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        s = requests.Session()
        s.cookies.update(self.cookies)
        s.headers["Accept"] = "text/html"
        while not self.stop_flag.is_set():
            try:
                r = s.get(self.url, timeout=10, allow_redirects=False)
                good = r.status_code == 200 and '"x-auth-request-user"' in r.text
                what = f"{r.status_code} {r.headers.get('server', '')} {r.text[:80]!r}"
            except requests.RequestException as exc:
                good, what = False, f"exception {exc}"
            with self.lock:
                if good:
                    self.ok += 1
                else:
                    self.failures.append(what)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(15)


def _wait_healthy(envoy: Envoy, n: int, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = requests.get(f"{envoy.admin_url}/clusters", timeout=5).text
        healthy = [line for line in text.splitlines()
                   if line.startswith("portcullis::") and "::health_flags::healthy" in line]
        if len(healthy) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} healthy portcullis hosts in Envoy:\n{text}")


def test_replica_killed_and_restarted_under_load_loses_no_request(work_dir, request):
    s = _stack(work_dir, request.node.name)
    s.start()
    b_replica = None
    envoy = None
    try:
        # A second replica: same IdP, client and cookie key, its own ports.
        a = s.portcullis
        b_replica = Portcullis(s.work_dir, s.idp.issuer, s.client_secret, name="portcullis-2",
                               sets=(f"cookie.secret={a.cookie_secret}",))
        b_replica.start()
        # Replace the stack's Envoy with the two-replica example configuration.
        s.envoy.stop()
        s._started.remove(s.envoy)
        envoy = Envoy(
            s.work_dir, upstream_port=s.echo.port, authz_port=a.http_port,
            listen_port=s.envoy_port, template=HA_TEMPLATE, name="envoy-ha",
            extra={"AUTHZ_PORT_2": b_replica.http_port, "AUTHZ_ADMIN_PORT": a.admin_port,
                   "AUTHZ_ADMIN_PORT_2": b_replica.admin_port},
        )
        envoy.start()
        s.envoy = envoy
        _wait_healthy(envoy, 2)

        alice = Browser()
        login(s, alice)
        cookies = {c.name: c.value for c in alice.session.cookies
                   if c.name.startswith("_portcullis") and "_csrf_" not in c.name}
        with Load(s.url + PROTECTED, cookies) as load:
            time.sleep(1.5)
            a.service.kill()                      # a crash: SIGKILL mid-traffic
            time.sleep(2)
            a.service.forget()
            a.start()                             # comes back on the same ports
            _wait_healthy(envoy, 2)
            time.sleep(1.5)
            b_replica.service.stop()              # a rolling update: SIGTERM, drain
            b_replica.service.forget()
            time.sleep(1.5)
            b_replica.start()
            _wait_healthy(envoy, 2)
            time.sleep(1.5)
        assert load.ok > 100, f"only {load.ok} requests went through"
        assert not load.failures, (
            f"{len(load.failures)} failed of {load.ok + len(load.failures)}: {load.failures[:10]}"
        )
        stats = envoy.stats("cluster.portcullis.")
        print(f"{load.ok} requests, none failed; envoy portcullis cluster: "
              f"upstream_rq_retry={stats.get('cluster.portcullis.upstream_rq_retry')} "
              f"upstream_cx_connect_fail={stats.get('cluster.portcullis.upstream_cx_connect_fail')}")
    finally:
        if envoy is not None:
            envoy.stop()
        if b_replica is not None:
            b_replica.stop()
        s.stop()


# -- clock skew between the IdP and portcullis -----------------------------------------------
FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def _skewed_stack(work_dir, name: str, skew_s: int) -> Stack:
    from test_bearer import API, BEARER_TOML, SERVICE_ID, SERVICE_SECRET

    return _stack(
        work_dir, name,
        extra_clients=[{
            "client_id": SERVICE_ID, "client_secret": SERVICE_SECRET,
            "grant_types": ["client_credentials"], "response_types": [], "redirect_uris": [],
        }],
        idp_env={"IDP_API_RESOURCE": API},
        portcullis_toml=BEARER_TOML,
        # libfaketime shifts portcullis's wall clock only (not the IdP's, not monotonic time).
        portcullis_env={"LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME": f"{skew_s:+d}",
                        "FAKETIME_DONT_FAKE_MONOTONIC": "1"},
    )


def _portcullis_clock_offset(stack) -> float:
    """How far portcullis's clock is from ours, read from the `Date` header it sends."""
    from email.utils import parsedate_to_datetime

    r = requests.get(stack.portcullis.url + "/x", headers={"Accept": "application/json"}, timeout=5)
    date = r.headers.get("date")
    assert date, r.headers
    return parsedate_to_datetime(date).timestamp() - time.time()


@pytest.mark.skipif(not FAKETIME_LIB.is_file(), reason="libfaketime (Debian faketime) not installed")
@pytest.mark.parametrize("skew_s", [-20, 20])
def test_clock_skew_within_leeway_changes_nothing(work_dir, request, skew_s):
    from test_bearer import SERVICE_ID, api_get, service_token

    s = _skewed_stack(work_dir, request.node.name, skew_s)
    s.start()
    try:
        offset = _portcullis_clock_offset(s)
        assert abs(offset - skew_s) < 3, f"portcullis clock offset {offset:.1f}s, wanted {skew_s}s"
        # A browser login (ID token iat/exp from the IdP's clock) and the session after it.
        seen = login(s, Browser())
        assert seen["headers"].get("x-auth-request-user"), seen
        # A bearer token just issued by the IdP (bearer.leeway = 30s by default).
        r = api_get(s, service_token(s))
        assert r.status_code == 200, r.text[:300]
        assert echo_json(r)["headers"]["x-auth-request-user"] == SERVICE_ID
    finally:
        s.stop()


@pytest.mark.skipif(not FAKETIME_LIB.is_file(), reason="libfaketime (Debian faketime) not installed")
def test_clock_skew_beyond_token_lifetimes_fails_closed(work_dir, request):
    from test_bearer import api_get, service_token

    s = _skewed_stack(work_dir, request.node.name, 3 * 3600)  # portcullis 3 h ahead
    s.start()
    try:
        r = api_get(s, service_token(s))
        assert r.status_code == 401, r.text[:300]
        assert 'error="invalid_token"' in r.headers.get("www-authenticate", ""), r.headers
        b = Browser()
        cb = finish_at_idp(s, b, start_login(s, b))
        r = b.get(cb)
        assert r.status_code == 403, (r.status_code, r.text[:300])
        assert not any(c == "_portcullis" or c.startswith("_portcullis_") and "_csrf_" not in c
                       for c in b.cookie_names()), b.cookie_names()
    finally:
        s.stop()
