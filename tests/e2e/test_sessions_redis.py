"""Server-side sessions through real Envoy: two portcullis replicas behind one ext_authz
cluster (round robin), a real redis-server, the real oidc-provider (with back-channel logout).

    client --> Envoy --> echo
                 +--> portcullis A ─┐
                 +--> portcullis B ─┴─> redis-server, oidc-provider (--> A: back-channel logout)
"""

from __future__ import annotations

import secrets
import time

import pytest
import requests

from browser import Browser
from parts import CLIENT_ID, Stack
from test_http_ext_authz import (PROTECTED, assert_login_redirect, cookie_header, echo_json, finish_at_idp, login,
                                 session_cookie_pairs, start_login)

ADMIN_TOKEN = secrets.token_urlsafe(24)

TOML = f"""
[session]
store = "redis"

[session.redis]
url = "{{redis_url}}"
timeout = "300ms"

[admin]
token = "{ADMIN_TOKEN}"
"""


@pytest.fixture(scope="module", params=["http", "grpc"])
def rstack(work_dir, request):
    """Envoy's ext_authz in HTTP mode, then in gRPC mode (Redis down → UNAVAILABLE there)."""
    s = Stack(work_dir / f"sessions-redis-{request.param}", mode=request.param, replicas=2,
              redis=True, portcullis_toml=TOML)
    s.start()
    yield s
    s.stop()


def check_at(replica, stack, b: Browser, path: str) -> requests.Response:
    """A check sent straight to one replica, as Envoy would send it (Host = the app's)."""
    return requests.get(
        f"{replica.url}{path}",
        headers={
            "host": f"127.0.0.1:{stack.envoy_port}",
            "cookie": cookie_header(session_cookie_pairs(b)),
            "accept": "text/html",
        },
        allow_redirects=False,
        timeout=10,
    )


def eventually(fn, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last})")


def test_a_session_made_on_one_replica_works_on_the_other(rstack):
    a, b_replica = rstack.replicas
    br = Browser()
    seen = login(rstack, br)
    assert seen["headers"].get("x-auth-request-user") == "alice"
    # The cookie is a ticket, not the session.
    (name, value), = session_cookie_pairs(br)
    assert len(value) < 300, len(value)
    # Each replica, asked directly, knows the session.
    for replica in (a, b_replica):
        r = check_at(replica, rstack, br, PROTECTED)
        assert r.status_code == 200, f"{replica.service.name}: {r.status_code} {r.text[:200]}"
        assert r.headers["x-auth-request-user"] == "alice"
    # Through Envoy, requests spread over both replicas and all pass.
    marker = f"/replicas/{secrets.token_hex(6)}"
    for _ in range(6):
        assert br.get(rstack.url + marker).status_code == 200
    for replica in (a, b_replica):
        assert marker in replica.service.read_log(), f"{replica.service.name} answered no check"


def test_redis_down_is_an_error_never_an_allow_and_recovers(rstack):
    br = Browser()
    login(rstack, br)
    rstack.redis.stop()
    try:
        direct = check_at(rstack.replicas[1], rstack, br, PROTECTED)
        assert direct.status_code == 503, direct.text[:300]
        ready = requests.get(f"{rstack.replicas[0].admin_url}/readyz", timeout=5)
        assert ready.status_code == 503, ready.text
        # Envoy's status_on_error (403 in the Istio-style config) decides what the client sees:
        # neither the upstream nor a login redirect that would drop the session.
        r = br.get(rstack.url + PROTECTED)
        assert r.status_code == 403, f"{r.status_code} {r.text[:200]}"
        assert r.headers.get("server") == "envoy"
    finally:
        rstack.redis.start()
    # Back without restarting portcullis; the session survived Redis's restart.
    eventually(lambda: br.get(rstack.url + PROTECTED).status_code == 200, "service recovers")
    for replica in rstack.replicas:
        assert requests.get(f"{replica.admin_url}/readyz", timeout=5).status_code == 200


def revoke(replica, body: dict, token: str = ADMIN_TOKEN) -> requests.Response:
    return requests.post(
        f"{replica.admin_url}/admin/sessions/revoke",
        json=body,
        headers={"authorization": f"Bearer {token}"},
        timeout=5,
    )


def test_admin_revocation_ends_the_session_on_the_next_request(rstack):
    alice, bob = Browser(), Browser()
    login(rstack, alice)
    callback = finish_at_idp(rstack, bob, start_login(rstack, bob, "/bob"), login="bob")
    assert bob.get(callback).status_code == 302
    bob_seen = echo_json(bob.get(rstack.url + "/bob"))
    assert bob_seen["headers"].get("x-auth-request-user") == "bob"
    assert revoke(rstack.replicas[1], {"subject": "alice"}, token="wrong").status_code == 401
    r = revoke(rstack.replicas[1], {"subject": "alice"})
    assert r.status_code == 200, r.text
    assert r.json()["revoked"] >= 1
    assert_login_redirect(rstack, alice.get(rstack.url + PROTECTED), alice)
    assert bob.get(rstack.url + "/bob").status_code == 200, "nobody else is logged out"


def test_sign_out_on_one_replica_ends_the_session_everywhere(rstack):
    br = Browser()
    login(rstack, br)
    stolen = cookie_header(session_cookie_pairs(br))
    r = br.get(rstack.url + "/oauth2/sign_out")
    assert r.status_code == 302
    for replica in rstack.replicas:
        replay = requests.get(
            f"{replica.url}{PROTECTED}",
            headers={"host": f"127.0.0.1:{rstack.envoy_port}", "cookie": stolen, "accept": "text/html"},
            allow_redirects=False,
            timeout=10,
        )
        assert replay.status_code == 302, f"{replica.service.name}: {replay.status_code}"


def test_back_channel_logout_from_the_idp_ends_the_session(rstack):
    br = Browser()
    login(rstack, br)
    before = rstack.idp.service.log_size()
    # The user ends the session at the IdP (not through portcullis): the IdP calls
    # backchannel_logout_uri with a logout token naming the user's sid.
    end_session = rstack.idp.discovery["end_session_endpoint"]
    done = br.confirm_idp_logout(f"{end_session}?client_id={CLIENT_ID}")
    assert done.status_code in (200, 302, 303), done.text[:300]
    eventually(
        lambda: "EVENT backchannel.success" in rstack.idp.service.read_log(since=before),
        "the IdP reports a successful back-channel logout",
    )
    assert "back-channel logout" in rstack.portcullis.service.read_log()
    # The next check for that browser's session is a login redirect, on every replica.
    assert_login_redirect(rstack, br.get(rstack.url + PROTECTED), br)


def test_forged_or_empty_logout_tokens_are_refused(rstack):
    url = rstack.backchannel_logout_uri
    for data in ({}, {"logout_token": "x.y.z"}, {"logout_token": "not a jwt"}):
        r = requests.post(url, data=data, timeout=5)
        assert r.status_code == 400, f"{data}: {r.status_code} {r.text}"
        assert r.headers.get("cache-control") == "no-store"
        assert r.json()["error"] == "invalid_request"
