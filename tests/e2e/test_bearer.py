"""Bearer JWTs (issue 4) through real Envoy, in HTTP and in gRPC ext_authz mode, with tokens from
the real OpenID Provider: a client-credentials grant with a resource indicator gets an RS256 JWT
access token (aud = the API resource), which portcullis verifies against the provider's JWKS.
"""

from __future__ import annotations

import base64
import json
import secrets

import pytest
import requests

from browser import jwt_claims

from conftest import _new_stack_dir
from parts import Stack

API = "urn:portcullis:e2e-api"
SERVICE_ID = "e2e-service"
SERVICE_SECRET = secrets.token_urlsafe(24)

BEARER_TOML = f"""
[headers]
pass_access_token = true

[bearer]
enabled = true

[[bearer.issuers]]
issuer = "{{issuer}}"
audiences = ["{API}"]
"""


def bearer_stack(work_dir, label: str, mode: str = "http") -> Stack:
    return Stack(
        _new_stack_dir(work_dir, label),
        mode=mode,
        extra_clients=[{
            "client_id": SERVICE_ID,
            "client_secret": SERVICE_SECRET,
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
        }],
        idp_env={"IDP_API_RESOURCE": API},
        portcullis_toml=BEARER_TOML,
    )


@pytest.fixture(scope="module", params=["http", "grpc"])
def bstack(work_dir, request):
    """The same tests through Envoy in HTTP and in gRPC ext_authz mode."""
    s = bearer_stack(work_dir, f"bearer-{request.param}", mode=request.param)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def own_bstack(work_dir, request):
    s = bearer_stack(work_dir, request.node.name)
    s.start()
    yield s
    s.stop()


def service_token(stack: Stack) -> str:
    r = requests.post(
        stack.idp.discovery["token_endpoint"],
        data={"grant_type": "client_credentials", "resource": API, "scope": "api:read"},
        auth=(SERVICE_ID, SERVICE_SECRET),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert token.count(".") == 2, f"expected a JWT access token, got {token[:20]}..."
    return token


def api_get(stack: Stack, token: str, path: str = "/api/things") -> requests.Response:
    return requests.get(
        stack.url + path,
        headers={"authorization": f"Bearer {token}", "accept": "application/json"},
        allow_redirects=False,
        timeout=10,
    )


def test_client_credentials_token_reaches_the_upstream_with_identity(bstack):
    token = service_token(bstack)
    r = api_get(bstack, token)
    assert r.status_code == 200, r.text[:300]
    seen = json.loads(r.text)["headers"]
    assert seen["x-auth-request-user"] == SERVICE_ID
    assert seen["x-auth-request-groups"] == "services"
    assert seen["x-auth-request-access-token"] == token, "the caller's own token"
    # Repeated: served from the verified-token cache, same answer.
    assert api_get(bstack, token).status_code == 200


def test_invalid_tokens_get_401_invalid_token_never_a_redirect(bstack):
    token = service_token(bstack)
    h, p, s = token.split(".")
    flipped = s[:-2] + ("A" if s[-2] != "A" else "B") + s[-1]
    for name, bad in [
        ("bit flip", f"{h}.{p}.{flipped}"),
        ("alg none", "eyJhbGciOiJub25lIn0." + p + "."),
        ("JWE-shaped", f"{h}.{p}.{s}.{p}.{s}"),
        ("opaque", "opaque-token"),
    ]:
        r = requests.get(
            bstack.url + "/api/things",
            headers={"authorization": f"Bearer {bad}", "accept": "text/html"},
            allow_redirects=False,
            timeout=10,
        )
        assert r.status_code == 401, f"{name}: {r.status_code} {r.text[:200]}"
        assert "location" not in r.headers, name
        assert r.headers.get("www-authenticate", "").startswith('Bearer error="invalid_token"'), name


def test_jwks_endpoint_down_does_not_break_tokens_with_cached_keys(own_bstack):
    first, second = service_token(own_bstack), service_token(own_bstack)
    assert first != second
    assert api_get(own_bstack, first).status_code == 200
    own_bstack.idp.stop()  # the IdP (and its JWKS endpoint) is gone
    r = api_get(own_bstack, second)  # not in the token cache: verified with the cached keys
    assert r.status_code == 200, r.text[:300]
    assert json.loads(r.text)["headers"]["x-auth-request-user"] == SERVICE_ID
    # A token naming a key we do not have makes portcullis refetch the JWKS, which fails:
    # readiness reports that, but stays up (the cached keys still work); nothing else changes.
    header = base64.urlsafe_b64encode(b'{"alg":"RS256","kid":"rotated-away"}').rstrip(b"=").decode()
    claims = dict(jwt_claims(second))
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    r = api_get(own_bstack, f"{header}.{body}.c2ln")
    assert r.status_code == 401, r.text[:300]
    ready = requests.get(own_bstack.portcullis.admin_url + "/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert "degraded" in ready.text and claims["iss"] in ready.text, ready.text
    assert api_get(own_bstack, second).status_code == 200
