"""Per-route rules through real Envoy with two users of the real OpenID Provider: alice (groups
admins, devs) reaches /admin, bob (devs) gets 403; /public passes without login; /api/* answers
401 instead of a redirect; path tricks into /admin do not get around the rule."""

from __future__ import annotations

import pytest

from browser import Browser
from parts import Stack
from policy import AUTHZ_RULES as RULES
from test_http_ext_authz import echo_json, login



@pytest.fixture(scope="module")
def rules_stack(work_dir):
    s = Stack(work_dir / "rules", portcullis_toml=RULES)
    s.start()
    yield s
    s.stop()


def signed_in(stack, user: str) -> Browser:
    b = Browser()
    auth_url = b.get(stack.url + "/start-here").headers["location"]
    callback = b.authorize_at_idp(auth_url, stack.callback_url, login=user)
    assert b.get(callback).status_code == 302
    return b


def test_public_needs_no_login_and_never_carries_a_spoofed_identity(rules_stack):
    r = Browser().get(rules_stack.url + "/public/page", headers={"x-auth-request-email": "evil@example.com"})
    seen = echo_json(r)
    assert seen["headers"].get("x-auth-request-email", "") == ""


def test_api_routes_answer_401_even_to_browsers(rules_stack):
    r = Browser().get(rules_stack.url + "/api/items")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/json")


def test_admins_reach_admin_and_others_get_403(rules_stack):
    alice = signed_in(rules_stack, "alice")
    seen = echo_json(alice.get(rules_stack.url + "/admin/panel"))
    assert seen["headers"]["x-auth-request-groups"] == "admins,devs"

    bob = signed_in(rules_stack, "bob")
    assert bob.get(rules_stack.url + "/admin/panel").status_code == 403
    assert bob.get(rules_stack.url + "/admin").status_code == 403
    # bob keeps his session for the rest of the site.
    assert echo_json(bob.get(rules_stack.url + "/elsewhere"))["headers"]["x-auth-request-user"] == "bob"


@pytest.mark.parametrize(
    "path,status",
    [
        ("//admin/panel", 403),
        ("/public/../admin/panel", 403),
        ("/admin;x/panel", 403),
        ("/public%2f..%2fadmin/panel", 400),
        ("/public/%2e%2e/admin/panel", 400),
        ("/admin%00", 400),
        # Envoy's normalize_path leaves %3B alone; a server that decodes it reads /admin. (It
        # does resolve `/admin/..;x/public/x` to `/public/x` for portcullis and the app alike,
        # as seen with Envoy 1.40.0 here: that one is a bypass only without normalize_path.)
        ("/admin%3B", 400),
    ],
)
def test_path_tricks_do_not_get_around_the_admin_rule(rules_stack, path, status):
    bob = signed_in(rules_stack, "bob")
    # requests would normalise some of these; send the raw target.
    import requests

    s = requests.Session()
    s.cookies = bob.session.cookies
    req = requests.Request("GET", rules_stack.url + "/x", headers={"accept": "text/html"})
    prepared = s.prepare_request(req)
    prepared.url = rules_stack.url + path
    r = s.send(prepared, allow_redirects=False)
    # Envoy or the client library may normalise a target before portcullis sees it (then the
    # admin rule answers 403) or refuse it (400/404): never a 200 for bob.
    assert r.status_code in {status, 400, 403, 404}, (path, r.status_code, r.text[:200])
