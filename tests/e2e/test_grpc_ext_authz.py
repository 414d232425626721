"""portcullis behind a real Envoy in gRPC ext_authz mode (config/envoy/envoy-grpc.yaml, configured
as Istio translates `envoyExtAuthzGrpc`: envoy_grpc with authority = the service name, transport
V3, an HTTP/2 cluster) with the real OpenID Provider. The same browser flows as the HTTP-mode
module, with the same helpers: the answers must be the same.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urljoin

import pytest

from browser import Browser
from conftest import _new_stack_dir
from envoy_gateway import GRPC_TEMPLATE, MESH_CONFIG, istio_provider
from harness import REPO_DIR
from parts import Stack
from test_http_ext_authz import (
    PROTECTED,
    assert_login_redirect,
    clears,
    cookie_header,
    echo_json,
    finish_at_idp,
    login,
    session_cookie_pairs,
    session_set_cookies,
    set_cookies,
    start_login,
    with_param,
)
from browser import query

ENVOY_MODE = "grpc"


def test_envoy_really_uses_grpc(stack):
    """The stack under test is the gRPC one: Envoy's ext_authz talks to portcullis's gRPC port."""
    rendered = stack.envoy.config_path.read_text()
    assert "grpc_service:" in rendered and "http_service:" not in rendered
    assert f"port_value: {stack.portcullis.grpc_port}" in rendered
    assert "authority: portcullis.portcullis.svc.cluster.local" in rendered
    Browser().get(stack.url + "/warm-up")
    stats = stack.envoy.stats("cluster.portcullis.")
    assert stats.get("cluster.portcullis.upstream_cx_http2_total", 0) >= 1, stats
    assert stats.get("cluster.portcullis.upstream_cx_http1_total", 0) == 0, stats


def test_full_login_through_grpc(stack):
    b = Browser()
    auth_url = start_login(stack, b)
    callback = finish_at_idp(stack, b, auth_url)
    assert query(callback)["state"] == query(auth_url)["state"]
    r = b.get(callback)
    assert r.status_code == 302, f"{r.status_code} {r.text[:300]}\n{b.trace()}"
    assert urljoin(stack.url + "/", r.headers["location"]) == stack.url + PROTECTED
    new = [c for c in session_set_cookies(r) if not clears(c)]
    assert new, f"callback set no session cookie: {set_cookies(r)}"

    seen = echo_json(b.get(stack.url + PROTECTED))
    assert seen["path"] == PROTECTED
    h = seen["headers"]
    assert h.get("x-auth-request-user") == "alice", h
    assert h.get("x-auth-request-email") == "alice@example.com", h
    assert h.get("x-auth-request-preferred-username") == "alice", h
    assert h.get("x-auth-request-groups") == "admins,devs", h
    assert "x-auth-request-access-token" not in h, h
    assert "authorization" not in h, h


def test_login_redirect_carries_every_cookie_and_html(stack):
    b = Browser()
    b.get(stack.url + "/a")  # one pending login already
    r = b.get(stack.url + PROTECTED)
    assert_login_redirect(stack, r, b)
    cookies = set_cookies(r)
    assert cookies and all("_csrf_" in c for c in cookies), cookies
    assert r.headers.get("content-type", "").startswith("text/html"), r.headers
    assert r.headers.get("cache-control") == "no-store", r.headers


def test_client_sent_identity_headers_are_overwritten_or_removed(stack):
    b = Browser()
    login(stack, b)
    spoof = {
        "X-Auth-Request-Email": "evil@example.com",
        "X-Auth-Request-User": "mallory",
        "X-Auth-Request-Groups": "root",
        "X-Auth-Request-Access-Token": "forged",
    }
    h = echo_json(b.get(stack.url + PROTECTED, headers=spoof))["headers"]
    assert h["x-auth-request-email"] == "alice@example.com", h
    assert h["x-auth-request-user"] == "alice", h
    assert h["x-auth-request-groups"] == "admins,devs", h
    # Not configured (headers.pass_access_token = false): removed, not passed on.
    assert "x-auth-request-access-token" not in h, h


def test_spoofed_identity_without_session_does_not_pass(stack):
    b = Browser()
    r = b.get(stack.url + PROTECTED, headers={"X-Auth-Request-Email": "alice@example.com"})
    assert_login_redirect(stack, r, b)


def test_api_client_without_session_gets_401_json(stack):
    b = Browser(accept="application/json")
    r = b.get(stack.url + "/protected/api")
    assert r.status_code == 401, f"{r.status_code} {r.headers} {r.text[:300]}"
    assert r.headers.get("www-authenticate") == "Bearer", r.headers
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    assert json.loads(r.text)["error"] == "unauthorized"


def test_tampered_cookie_is_no_session(stack):
    b = Browser()
    login(stack, b)
    (name, value), rest = session_cookie_pairs(b)[0], session_cookie_pairs(b)[1:]
    bad = value[:-4]
    evil = Browser()
    r = evil.get(stack.url + PROTECTED, headers={"Cookie": cookie_header([(name, bad)] + rest)})
    assert_login_redirect(stack, r, evil)


def test_callback_with_wrong_state_is_403_html(stack):
    b = Browser()
    callback = finish_at_idp(stack, b, start_login(stack, b))
    bad = with_param(callback, "state", "A" * len(query(callback)["state"]))
    r = b.get(bad)
    assert r.status_code == 403, f"{r.status_code} {r.text[:300]}"
    assert r.headers.get("content-type", "").startswith("text/html"), r.headers
    assert not [c for c in session_set_cookies(r) if not clears(c)], set_cookies(r)


def test_sign_out_clears_the_session(stack):
    b = Browser()
    login(stack, b)
    r = b.get(stack.url + "/oauth2/sign_out")
    assert r.status_code == 302, f"{r.status_code} {r.text[:300]}"
    assert [c for c in session_set_cookies(r) if clears(c)], set_cookies(r)
    assert_login_redirect(stack, b.get(stack.url + PROTECTED), b)


def test_head_without_session_is_a_bodiless_redirect(stack):
    b = Browser()
    r = b.request("HEAD", stack.url + PROTECTED)
    assert r.status_code == 302 and r.content == b"", (r.status_code, r.content[:100])
    assert "location" in r.headers


@pytest.mark.parametrize("mode", ["grpc", "http"])
def test_empty_identity_claim_still_overwrites_a_client_copy(work_dir, mode):
    """A claim the IdP does not send gives an empty identity header; the client's own copy must
    not survive in either mode (gRPC: keep_empty_value + OVERWRITE_IF_EXISTS_OR_ADD)."""
    s = Stack(_new_stack_dir(work_dir, f"empty-claim-{mode}"), mode=mode,
              portcullis_sets=("oidc.email_claim=no_such_claim",))
    s.start()
    try:
        b = Browser()
        login(s, b)
        h = echo_json(b.get(s.url + PROTECTED, headers={"X-Auth-Request-Email": "evil@example.com"}))[
            "headers"]
        assert h.get("x-auth-request-email", "") == "", (mode, h)
        assert h["x-auth-request-user"] == "alice", h
    finally:
        s.stop()


def test_portcullis_down_fails_closed(own_stack):
    s = own_stack
    b = Browser()
    login(s, b)
    cookie = cookie_header(session_cookie_pairs(b))
    before = s.envoy.stats("http.gateway.ext_authz.").get("http.gateway.ext_authz.error", 0)

    s.portcullis.service.kill()
    assert not s.portcullis.service.alive()

    for headers in ({"Cookie": cookie}, {}, {"Cookie": cookie, "Accept": "application/json"}):
        r = Browser().get(s.url + PROTECTED, headers=headers)
        assert r.status_code == 403, f"{headers}: {r.status_code} {r.text[:300]}"
        assert r.headers.get("server") == "envoy", r.headers
    after = s.envoy.stats("http.gateway.ext_authz.").get("http.gateway.ext_authz.error", 0)
    assert after >= before + 3, s.envoy.stats("http.gateway.ext_authz.")


# -- the examples under config/ agree with each other and with the defaults -------------------
def test_config_examples_agree():
    grpc = istio_provider("envoyExtAuthzGrpc")
    example = (REPO_DIR / "config" / "portcullis.example.toml").read_text()
    default_port = re.search(r'^grpc_address = "[^"]*:(\d+)"', example, re.M).group(1)
    assert grpc["port"] == default_port == "4181", (grpc, default_port)
    assert istio_provider("envoyExtAuthzHttp")["port"] == "4180"
    kgw = (REPO_DIR / "config" / "kgateway" / "gateway-extension.yaml").read_text()
    assert re.search(r"port: 4181\n\s+targetPort: 4181\n\s+appProtocol: kubernetes.io/h2c", kgw), kgw
    assert re.search(r"grpcService:\n\s+backendRef:\n\s+name: portcullis\n\s+port: 4181", kgw), kgw
    assert f"authority: {grpc['service']}" in kgw
    assert Path(GRPC_TEMPLATE).is_file() and Path(MESH_CONFIG).is_file()
