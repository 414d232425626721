"""Token refresh through real Envoy with the real OpenID Provider issuing short-lived access
tokens and rotating refresh tokens (a replayed refresh token makes oidc-provider revoke the whole
grant, so a second refresh of the same session would end it).

portcullis asks for `offline_access` with `prompt=consent` (oidc-provider grants refresh tokens
only then) and refreshes 2 s before the 6 s access tokens expire. Run in HTTP and in gRPC mode:
the refreshed cookie must reach the browser on an *allow* (Envoy's
`allowed_client_headers_on_success` / `response_headers_to_add`).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from browser import Browser
from parts import CLIENT_ID, Stack
from test_http_ext_authz import (
    PROTECTED, assert_login_redirect, clears, echo_json, login, parse_set_cookie,
    session_cookie_pairs, cookie_header, session_set_cookies,
)

ACCESS_TOKEN_TTL = 6
REFRESH_MARGIN = 2  # cookie.refresh
CONCURRENT = 50


def start_stack(work_dir, name: str, mode: str) -> Stack:
    s = Stack(
        work_dir / name,
        mode=mode,
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
    )
    s.start()
    return s


@pytest.fixture(params=["http", "grpc"])
def rstack(work_dir, request):
    s = start_stack(work_dir, f"refresh-{request.node.name}", request.param)
    yield s
    s.stop()


def idp_counts(stack) -> dict:
    return requests.get(f"{stack.idp.issuer}/__test/counts", timeout=5).json()


def metric(stack, line_start: str) -> int:
    text = requests.get(f"{stack.portcullis.admin_url}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(line_start):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def signed_in(stack) -> tuple[Browser, float]:
    """A browser signed in as alice, and a time (monotonic) no earlier than its tokens' issue:
    waiting from it can only be late, and a late refresh is still a refresh."""
    b = Browser()
    seen = login(stack, b)
    issued = time.monotonic()
    assert seen["headers"].get("x-auth-request-user") == "alice", seen
    return b, issued


def sleep_until_refresh_time(issued: float) -> None:
    due = issued + ACCESS_TOKEN_TTL - REFRESH_MARGIN + 0.5
    time.sleep(max(0.0, due - time.monotonic()))


def test_refresh_at_expiry_is_one_refresh_and_reaches_the_browser(rstack):
    b, issued = signed_in(rstack)
    r = b.get(rstack.url + PROTECTED)
    assert r.status_code == 200
    assert not session_set_cookies(r), "fresh tokens: nothing to refresh"
    assert idp_counts(rstack)["refresh_grants"] == 0

    old = cookie_header(session_cookie_pairs(b))
    sleep_until_refresh_time(issued)

    def check(_):
        return requests.get(
            rstack.url + PROTECTED,
            headers={"cookie": old, "accept": "text/html"},
            allow_redirects=False,
            timeout=15,
        )

    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        answers = list(pool.map(check, range(CONCURRENT)))
    for a in answers:
        assert a.status_code == 200, (a.status_code, a.text[:300])
        assert a.json()["headers"].get("x-auth-request-user") == "alice"
        new = [c for c in session_set_cookies(a) if not clears(c)]
        assert new, f"the refreshed cookie did not reach the client: {a.raw.headers.getlist('set-cookie')}"
    counts = idp_counts(rstack)
    assert counts == {"refresh_grants": 1, "refresh_errors": 0}, counts
    assert metric(rstack, 'portcullis_idp_requests_total{endpoint="refresh",status="ok"}') == 1

    # The browser keeps one of the refreshed cookies; it works without another refresh.
    line = [c for c in session_set_cookies(answers[-1]) if not clears(c)][0]
    name, value, attrs = parse_set_cookie(line)
    assert "httponly" in attrs and 0 < int(attrs["max-age"]) <= 168 * 3600, attrs
    for c in list(b.session.cookies):
        if c.name.startswith("_portcullis") and "_csrf_" not in c.name:
            b.session.cookies.clear(c.domain, c.path, c.name)
    b.session.cookies.set(name, value, path="/")
    r = b.get(rstack.url + PROTECTED)
    assert r.status_code == 200, b.trace()
    assert echo_json(r)["headers"].get("x-auth-request-groups") == "admins,devs"
    assert not session_set_cookies(r)
    assert idp_counts(rstack)["refresh_grants"] == 1


def test_revoked_refresh_token_ends_the_session(work_dir):
    stack = start_stack(work_dir, "refresh-revoked", "http")
    try:
        b, issued = signed_in(stack)
        tokens = requests.get(
            f"{stack.idp.issuer}/__test/refresh-tokens", params={"account": "alice"}, timeout=5
        ).json()
        assert len(tokens) == 1, tokens
        # RFC 7009 at the IdP's own revocation endpoint, as the client would.
        r = requests.post(
            stack.idp.discovery["revocation_endpoint"],
            data={"token": tokens[0], "token_type_hint": "refresh_token"},
            auth=(CLIENT_ID, stack.client_secret),
            timeout=5,
        )
        assert r.status_code == 200, r.text
        sleep_until_refresh_time(issued)
        r = b.get(stack.url + PROTECTED)
        assert_login_redirect(stack, r, b)
        cleared = [c for c in session_set_cookies(r) if clears(c)]
        assert cleared, f"session cookie not cleared: {r.raw.headers.getlist('set-cookie')}"
        assert not any(c.name == "_portcullis" and c.value for c in b.session.cookies)
        assert idp_counts(stack)["refresh_errors"] == 1
        assert metric(stack, 'portcullis_session_refreshes_total{result="ended"}') == 1
    finally:
        stack.stop()


REDIS_TOML = """
[session]
store = "redis"

[session.redis]
url = "{redis_url}"
timeout = "500ms"
"""


def replica_metric(replica, line_start: str) -> int:
    text = requests.get(f"{replica.admin_url}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(line_start):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def decisions(replica) -> int:
    text = requests.get(f"{replica.admin_url}/metrics", timeout=5).text
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("portcullis_decisions_total"))


def test_two_replicas_on_redis_refresh_once(work_dir):
    """Two replicas behind Envoy's one ext_authz cluster (round robin) sharing Redis: checks at
    refresh time reach both, and the rotating IdP sees exactly one refresh grant — the replica
    that waited for the Redis lock reloads the refreshed session instead of replaying the spent
    refresh token (which oidc-provider would answer by revoking the grant)."""
    stack = Stack(
        work_dir / "refresh-replicas",
        mode="http",
        replicas=2,
        redis=True,
        portcullis_toml=REDIS_TOML,
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
    )
    stack.start()
    try:
        b, issued = signed_in(stack)
        ticket = cookie_header(session_cookie_pairs(b))
        sleep_until_refresh_time(issued)
        before = [decisions(r) for r in stack.replicas]

        def check(_):
            return requests.get(
                stack.url + PROTECTED,
                headers={"cookie": ticket, "accept": "text/html"},
                allow_redirects=False,
                timeout=15,
            )

        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(check, range(20)))
        for a in answers:
            assert a.status_code == 200, (a.status_code, a.text[:300])
            assert a.json()["headers"].get("x-auth-request-user") == "alice"
        counts = idp_counts(stack)
        assert counts == {"refresh_grants": 1, "refresh_errors": 0}, counts
        # Round robin: both replicas decided some of the 20 checks.
        after = [decisions(r) for r in stack.replicas]
        assert all(a > b for a, b in zip(after, before)), (before, after)
        refreshed = sum(
            replica_metric(r, 'portcullis_session_refreshes_total{result="refreshed"}')
            for r in stack.replicas
        )
        ended = sum(
            replica_metric(r, 'portcullis_session_refreshes_total{result="ended"}')
            for r in stack.replicas
        )
        assert (refreshed, ended) == (1, 0)

        # The browser's ticket (unchanged: same session id and key) opens the refreshed record
        # on both replicas; no replica refreshes again.
        for _ in range(4):
            r = b.get(stack.url + PROTECTED)
            assert r.status_code == 200, b.trace()
            assert echo_json(r)["headers"].get("x-auth-request-user") == "alice"
            assert not [c for c in session_set_cookies(r) if not clears(c)]
        assert idp_counts(stack)["refresh_grants"] == 1
    finally:
        stack.stop()
