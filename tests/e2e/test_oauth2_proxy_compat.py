"""Switching from oauth2-proxy, end to end: portcullis is started the way an oauth2-proxy user
runs oauth2-proxy behind Istio — their own oauth2-proxy config file (the OIDC + Istio CUSTOM
setup of oauth2-proxy's docs: provider oidc, skip_provider_button, set_xauthrequest,
reverse_proxy, upstreams = ["static://200"], cookie and email-domain options) and the secrets
as OAUTH2_PROXY_* variables — behind real Envoy configured as Istio translates the
envoyExtAuthzHttp provider, against the real OpenID Provider. Only the listen addresses that
oauth2-proxy has no option for, and the log format, come from portcullis's own flags and env."""

from __future__ import annotations

import base64
import json
import secrets

import pytest
import requests

from browser import Browser
from envoy_gateway import HTTP_TEMPLATE
from parts import Stack
from test_http_ext_authz import PROTECTED, finish_at_idp, login, start_login

# As an oauth2-proxy user has it (secrets are in the environment, as in its Helm chart).
OAUTH2_PROXY_CFG = """\
## oauth2-proxy.cfg: Istio CUSTOM ext_authz with an OpenID Connect provider
provider = "oidc"
provider_display_name = "Corp SSO"
oidc_issuer_url = "{issuer}"
client_id = "portcullis-e2e"
scope = "openid email profile groups"
http_address = "127.0.0.1:{http_port}"
upstreams = ["static://200"]
reverse_proxy = true
skip_provider_button = true
set_xauthrequest = true
pass_access_token = true
email_domains = ["example.com"]
whitelist_domains = ["127.0.0.1:*"]
cookie_name = "_oauth2_proxy"
cookie_secure = false
cookie_httponly = true
cookie_samesite = "lax"
cookie_expire = "4h0m0s"
"""

COOKIE_SECRET = base64.b64encode(secrets.token_bytes(32)).decode()


# The Istio provider of oauth2-proxy's own example forwards only these two request headers;
# portcullis must work behind it unchanged (no Accept reaches it: treated as a browser).
OAUTH2_PROXY_ISTIO_HEADERS = ("cookie", "authorization")


def oauth2_proxy_istio_template(dir_):
    text = HTTP_TEMPLATE.read_text()
    for name in ("accept", "x-requested-with", "sec-fetch-mode"):
        line = f"                - {{exact: {name}, ignore_case: true}}\n"
        assert line in text, f"envoy_http.yaml no longer lists {name} as expected"
        text = text.replace(line, "")
    dir_.mkdir(parents=True, exist_ok=True)
    out = dir_ / "envoy_oauth2_proxy_istio.yaml"
    out.write_text(text)
    return out


@pytest.fixture(scope="module")
def o2p_stack(work_dir):
    s = Stack(
        work_dir / "oauth2-proxy-compat",
        envoy_template=oauth2_proxy_istio_template(work_dir / "oauth2-proxy-compat-envoy"),
        portcullis_oauth2_proxy_cfg=OAUTH2_PROXY_CFG,
        portcullis_env={
            "OAUTH2_PROXY_CLIENT_SECRET": "{client_secret}",
            "OAUTH2_PROXY_COOKIE_SECRET": COOKIE_SECRET,
            "PORTCULLIS_LOG__FORMAT": "json",
            "PORTCULLIS_LOG__LEVEL": "debug",
            "PORTCULLIS_LOG__INCLUDE_USER": "true",
        },
    )
    s.start()
    yield s
    s.stop()


def log_records(stack) -> list[dict]:
    """Every line of portcullis's log, each a JSON object (PORTCULLIS_LOG__FORMAT=json)."""
    lines = [line for line in stack.portcullis.service.log_path.read_text().splitlines()
             if line and not line.startswith("### ")]
    return [json.loads(line) for line in lines]


def fields(record: dict) -> dict:
    return record.get("fields", {})


def test_login_sets_the_oauth2_proxy_cookie_and_the_identity_headers(o2p_stack):
    b = Browser()
    # skip_provider_button: the browser goes straight to the IdP (login() asserts the 302).
    echoed = login(o2p_stack, b)
    h = echoed["headers"]
    assert h["x-auth-request-user"] == "alice"
    assert h["x-auth-request-email"] == "alice@example.com"
    assert h["x-auth-request-preferred-username"] == "alice"
    assert h["x-auth-request-groups"] == "admins,devs"
    assert h.get("x-auth-request-access-token"), "pass_access_token"
    names = {c.name for c in b.session.cookies}
    assert "_oauth2_proxy" in names, names  # cookie_name, so nothing else changes for the app
    assert not any(n.startswith("_portcullis") for n in names), names
    # The session holds on other paths, as oauth2-proxy's did.
    assert b.get(o2p_stack.url + "/other").status_code == 200


def test_without_accept_forwarded_a_browser_is_sent_to_the_login(o2p_stack):
    """Envoy forwards only cookie and authorization (oauth2-proxy's Istio provider): whatever
    the client's Accept, portcullis sees none and answers like oauth2-proxy, with the redirect."""
    for accept in ("text/html,application/xhtml+xml", "application/json"):
        r = requests.get(o2p_stack.url + PROTECTED, headers={"Accept": accept},
                         allow_redirects=False, timeout=10)
        assert r.status_code == 302, (accept, r.status_code, r.text[:200])
        assert r.headers["location"].startswith(o2p_stack.idp.issuer), r.headers["location"]


def test_email_domains_keep_other_domains_out(o2p_stack):
    b = Browser()
    callback = finish_at_idp(o2p_stack, b, start_login(o2p_stack, b), login="bob")  # bob@other.test
    r = b.get(callback)
    assert r.status_code == 403, r.text[:300]
    assert b.get(o2p_stack.url + PROTECTED).status_code == 302, "no session for bob"


def test_the_secrets_came_from_the_environment_and_ignored_options_are_named(o2p_stack):
    records = log_records(o2p_stack)
    warnings = [fields(r).get("message", "") for r in records if r.get("level") == "WARN"]
    # reverse_proxy has no effect here: one warning. What portcullis always does
    # (static://200 upstreams, skip_provider_button, HttpOnly cookies) is not warned about.
    assert sum("reverse_proxy" in w for w in warnings) == 1, warnings
    for quiet in ["upstreams", "skip_provider_button", "cookie_httponly", "set_xauthrequest"]:
        assert not any(quiet in w for w in warnings), (quiet, warnings)
    text = o2p_stack.portcullis.service.log_path.read_text()
    assert COOKIE_SECRET not in text and o2p_stack.client_secret not in text


def test_log_include_user_names_users(o2p_stack):
    # PORTCULLIS_LOG__INCLUDE_USER=true on top of the oauth2-proxy file: users by their id.
    b = Browser()
    login(o2p_stack, b)
    records = log_records(o2p_stack)
    signed_in = [fields(r) for r in records if fields(r).get("message") == "signed in"]
    assert signed_in and all(f.get("user") == "alice" for f in signed_in), signed_in
