"""The test OpenID Provider alone: the facts the portcullis tests rely on.

If one of these fails, the other e2e failures are about the harness, not about portcullis."""

from __future__ import annotations

import secrets

import pytest
import requests

from browser import Browser, jwt_claims, pkce_pair, query, without_query
from harness import free_port
from parts import IdP


@pytest.fixture(scope="module", params=["", "/oidc"], ids=["issuer-origin", "issuer-with-path"])
def idp(work_dir, request):
    rp = f"http://127.0.0.1:{free_port()}"
    client = {
        "client_id": "idp-selftest",
        "client_secret": secrets.token_urlsafe(16),
        "redirect_uris": [f"{rp}/cb"],
        "post_logout_redirect_uris": [f"{rp}/bye"],
    }
    d = work_dir / f"idp-selftest{request.param.replace('/', '-')}"
    d.mkdir(exist_ok=True)
    p = IdP(d, [client], name="idp-selftest", issuer_path=request.param).start()
    p.client = client
    p.rp = rp
    yield p
    p.stop()


def code_flow(idp, scope="openid email profile groups", extra=None):
    """Authorization code flow with PKCE straight against the IdP; returns (browser, tokens)."""
    disc = idp.discovery
    b = Browser()
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    params = {
        "response_type": "code",
        "client_id": idp.client["client_id"],
        "redirect_uri": idp.client["redirect_uris"][0],
        "scope": scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **(extra or {}),
    }
    auth_url = requests.Request("GET", disc["authorization_endpoint"], params=params).prepare().url
    back = b.authorize_at_idp(auth_url, idp.client["redirect_uris"][0])
    q = query(back)
    assert without_query(back) == idp.client["redirect_uris"][0]
    assert q["state"] == state
    assert q["iss"] == idp.issuer  # RFC 9207 iss parameter on the authorization response
    r = requests.post(
        disc["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": q["code"],
            "redirect_uri": idp.client["redirect_uris"][0],
            "code_verifier": verifier,
        },
        auth=(idp.client["client_id"], idp.client["client_secret"]),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert jwt_claims(tokens["id_token"])["nonce"] == nonce
    return b, tokens


def test_discovery_and_jwks(idp):
    d = idp.discovery
    assert d["issuer"] == idp.issuer
    assert d["code_challenge_methods_supported"] == ["S256"]
    assert {"openid", "email", "profile", "groups"} <= set(d["scopes_supported"])
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint",
                "end_session_endpoint", "jwks_uri"):
        assert d[key].startswith(idp.issuer + "/"), key
    keys = requests.get(d["jwks_uri"], timeout=5).json()["keys"]
    assert keys and keys[0]["kty"] == "RSA" and "d" not in keys[0]  # public part only


def test_code_flow_claims_come_from_userinfo(idp):
    _, tokens = code_flow(idp)
    id_claims = jwt_claims(tokens["id_token"])
    assert id_claims["sub"] == "alice"
    assert id_claims["iss"] == idp.issuer
    assert id_claims["aud"] == idp.client["client_id"]
    # Scope-requested claims are NOT in the ID token (conformIdTokenClaims): a relying party
    # has to call userinfo for them.
    assert "email" not in id_claims and "groups" not in id_claims
    r = requests.get(
        idp.discovery["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=5,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "sub": "alice",
        "email": "alice@example.com",
        "email_verified": True,
        "preferred_username": "alice",
        "name": "Alice Example",
        "given_name": "Alice",
        "family_name": "Example",
        "groups": ["admins", "devs"],
    }


def test_groups_only_with_groups_scope(idp):
    _, tokens = code_flow(idp, scope="openid email")
    info = requests.get(
        idp.discovery["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=5,
    ).json()
    assert info == {"sub": "alice", "email": "alice@example.com", "email_verified": True}


def test_refresh_token_needs_offline_access_and_prompt_consent(idp):
    # oidc-provider drops offline_access unless prompt=consent is sent (OIDC Core 11).
    _, tokens = code_flow(idp, scope="openid offline_access")
    assert "refresh_token" not in tokens
    _, tokens = code_flow(idp, scope="openid offline_access", extra={"prompt": "consent"})
    assert "refresh_token" in tokens
    r = requests.post(
        idp.discovery["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(idp.client["client_id"], idp.client["client_secret"]),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.json()["access_token"] != tokens["access_token"]


def test_wrong_pkce_verifier_is_rejected(idp):
    disc = idp.discovery
    b = Browser()
    _, challenge = pkce_pair()
    params = {
        "response_type": "code", "client_id": idp.client["client_id"],
        "redirect_uri": idp.client["redirect_uris"][0], "scope": "openid",
        "state": "s", "nonce": "n", "code_challenge": challenge, "code_challenge_method": "S256",
    }
    auth_url = requests.Request("GET", disc["authorization_endpoint"], params=params).prepare().url
    back = b.authorize_at_idp(auth_url, idp.client["redirect_uris"][0])
    r = requests.post(
        disc["token_endpoint"],
        data={"grant_type": "authorization_code", "code": query(back)["code"],
              "redirect_uri": idp.client["redirect_uris"][0], "code_verifier": "x" * 43},
        auth=(idp.client["client_id"], idp.client["client_secret"]),
        timeout=10,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text


def test_rp_initiated_logout(idp):
    b, tokens = code_flow(idp)
    bye = idp.client["post_logout_redirect_uris"][0]
    url = requests.Request(
        "GET", idp.discovery["end_session_endpoint"],
        params={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": bye, "state": "st"},
    ).prepare().url
    r = b.confirm_idp_logout(url)
    assert r.status_code in (302, 303), r.text
    assert r.headers["location"] == f"{bye}?state=st"
    # The IdP session is gone: a new authorization request asks for the login again.
    disc = idp.discovery
    _, challenge = pkce_pair()
    auth_url = requests.Request("GET", disc["authorization_endpoint"], params={
        "response_type": "code", "client_id": idp.client["client_id"],
        "redirect_uri": idp.client["redirect_uris"][0], "scope": "openid", "state": "s",
        "code_challenge": challenge, "code_challenge_method": "S256",
    }).prepare().url
    r = b.get(auth_url)
    assert r.status_code in (302, 303)
    r = b.get(requests.compat.urljoin(r.url, r.headers["location"]))
    assert r.status_code == 200 and 'name="login"' in r.text


def test_authorization_request_without_pkce_is_refused(idp):
    b = Browser()
    auth_url = requests.Request("GET", idp.discovery["authorization_endpoint"], params={
        "response_type": "code", "client_id": idp.client["client_id"],
        "redirect_uri": idp.client["redirect_uris"][0], "scope": "openid", "state": "s",
    }).prepare().url
    r = b.get(auth_url)
    # The error goes back to the client's redirect_uri.
    assert r.status_code in (302, 303), r.text[:300]
    q = query(r.headers["location"])
    assert q["error"] == "invalid_request" and "PKCE" in q["error_description"], q
