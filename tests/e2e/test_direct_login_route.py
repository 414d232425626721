"""The direct login route in HTTP mode (config/envoy/envoy-http.yaml): Envoy sends portcullis's
own routes (/oauth2/...) straight to its HTTP listener with ext_authz disabled on that route,
so a login route's 502/503 page reaches the browser (test_faults.py); everything else is the
check path of tests/e2e/envoy_http.yaml. Here: the example cannot drift from the Istio
translation, and a whole login through it behaves as through a check, with an HTTP
`path_prefix` on the check too (the route's `prefix_rewrite` adds it).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest
import requests

from browser import Browser
from envoy_gateway import HTTP_TEMPLATE
from harness import REPO_DIR
from parts import Stack
from test_http_ext_authz import PROTECTED, echo_json, finish_at_idp, set_cookies, start_login

DIRECT_TEMPLATE = REPO_DIR / "config" / "envoy" / "envoy-http.yaml"

# What config/envoy/envoy-http.yaml adds to tests/e2e/envoy_http.yaml, comments aside.
DIRECT_ROUTE = """\
              - match: {prefix: "/oauth2/"}
                route:
                  cluster: portcullis
                  prefix_rewrite: "${PATH_PREFIX}/oauth2/"
                  timeout: ${AUTHZ_TIMEOUT}
                typed_per_filter_config:
                  envoy.filters.http.ext_authz:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                    disabled: true
""".splitlines()


def _config_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_the_example_is_the_istio_translation_plus_the_login_route():
    diff = list(difflib.ndiff(_config_lines(HTTP_TEMPLATE), _config_lines(DIRECT_TEMPLATE)))
    removed = [d[2:] for d in diff if d.startswith("- ")]
    added = [d[2:] for d in diff if d.startswith("+ ")]
    assert not removed, removed
    assert added == DIRECT_ROUTE, "\n".join(added)


@pytest.fixture(scope="module")
def dstack(work_dir):
    d = Path(work_dir) / "direct-login-route"
    d.mkdir(parents=True, exist_ok=True)
    s = Stack(d, envoy_template=DIRECT_TEMPLATE, envoy_path_prefix="/check",
              portcullis_sets=("server.path_prefix=/check",))
    s.start()
    yield s
    s.stop()


def _counts(stack) -> tuple[int, int]:
    """(checks Envoy made, requests its router sent to the portcullis cluster)."""
    checks = stack.envoy.stats("http.gateway.ext_authz.")
    cluster = stack.envoy.stats("cluster.portcullis.upstream_rq_total")
    return (sum(v for k, v in checks.items() if k.rsplit(".", 1)[1] in ("ok", "denied", "error")),
            cluster.get("cluster.portcullis.upstream_rq_total", 0))


def test_login_through_the_direct_route_with_a_path_prefix(dstack):
    s = dstack
    b = Browser()
    # The IdP accepts the redirect_uri (built from the Host, as on a check).
    callback = finish_at_idp(s, b, start_login(s, b))
    checks, to_portcullis = _counts(s)
    # The callback: no check, one request to portcullis; its 302 and Set-Cookie reach the
    # browser, and the session opens the protected page.
    r = b.get(callback)
    assert r.status_code == 302, (r.status_code, r.text[:300])
    assert r.headers["location"] == PROTECTED, r.headers
    assert any(c.startswith("_portcullis=") for c in set_cookies(r)), set_cookies(r)
    assert _counts(s) == (checks, to_portcullis + 1), (_counts(s), checks, to_portcullis)
    seen = echo_json(b.get(s.url + PROTECTED))
    assert seen["headers"]["x-auth-request-user"] == "alice", seen
    assert seen["path"] == PROTECTED, seen
    # portcullis saw the check's path_prefix on both paths (the route's prefix_rewrite).
    log = s.portcullis.service.read_log()
    assert "lacks server.path_prefix" not in log, "a request without the prefix reached portcullis"

    # userinfo answers the browser itself (through a check its allow would go to the app).
    r = b.get(s.url + "/oauth2/userinfo", headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.json()["user"] == "alice", r.text

    # The sign-in page and an unknown route under the prefix: portcullis's pages, as on a check.
    r = Browser().get(s.url + "/oauth2/sign_in?rd=/x")
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/html"), r.status_code
    assert Browser().get(s.url + "/oauth2/nope").status_code == 404

    # Sign-out clears the session; the next visit is a login again.
    r = b.get(s.url + "/oauth2/sign_out?rd=/bye")
    assert r.status_code == 302, (r.status_code, r.text[:300])
    r = b.get(s.url + PROTECTED)
    assert r.status_code == 302 and r.headers["location"].startswith(s.idp.issuer), r.status_code


def test_a_client_cannot_reach_the_app_through_the_login_prefix(dstack):
    """The route sends /oauth2/* to portcullis, never to the app: a path under the prefix that
    portcullis does not have is its 404 page, not an unchecked request to the upstream."""
    r = requests.get(dstack.url + "/oauth2/app-path", timeout=10, allow_redirects=False,
                     headers={"Accept": "text/html"})
    assert r.status_code == 404 and '"headers"' not in r.text, (r.status_code, r.text[:200])
    assert not re.search(r'"path":\s*"/oauth2/app-path"', r.text)
