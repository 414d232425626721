"""The Istio examples under config/istio/ agree with each other: the direct login route for the
HTTP provider (http-login-route.yaml) sends exactly the paths its policy leaves out to the
HTTP provider's Service and port, and its policy is the documented one plus that exclusion.
(No Istio here: the route itself is exercised through plain Envoy, config/envoy/envoy-http.yaml,
by tests/e2e/test_direct_login_route.py and test_faults.py.)"""

from __future__ import annotations

import copy

import yaml

from chartlib import ROOT

ISTIO = ROOT / "config" / "istio"


def _http_provider() -> dict:
    mesh = yaml.safe_load((ISTIO / "mesh-config.yaml").read_text())
    (p,) = [p for p in mesh["spec"]["meshConfig"]["extensionProviders"] if "envoyExtAuthzHttp" in p]
    return p


def test_login_route_and_policy_exclusion_match_the_http_provider():
    docs = {d["kind"]: d for d in yaml.safe_load_all((ISTIO / "http-login-route.yaml").read_text())}
    vs, policy = docs["VirtualService"], docs["AuthorizationPolicy"]
    provider = _http_provider()
    login, *rest = vs["spec"]["http"]
    assert rest, "the application's own route follows the login route"
    (match,) = login["match"]
    prefix = match["uri"]["prefix"]
    assert prefix == "/oauth2/"
    (dest,) = login["route"]
    assert dest["destination"]["host"] == provider["envoyExtAuthzHttp"]["service"]
    assert dest["destination"]["port"]["number"] == provider["envoyExtAuthzHttp"]["port"]

    (rule,) = policy["spec"]["rules"]
    (to,) = rule["to"]
    assert to["operation"]["notPaths"] == [prefix + "*"]
    assert set(to["operation"]["hosts"]) <= set(vs["spec"]["hosts"])
    assert policy["spec"]["provider"]["name"] == provider["name"]

    # Otherwise the documented policy, unchanged.
    documented = yaml.safe_load((ISTIO / "authorization-policy.yaml").read_text())
    narrowed = copy.deepcopy(policy)
    del narrowed["spec"]["rules"][0]["to"][0]["operation"]["notPaths"]
    assert narrowed == documented


def test_both_providers_answer_errors_with_503():
    mesh = yaml.safe_load((ISTIO / "mesh-config.yaml").read_text())
    for p in mesh["spec"]["meshConfig"]["extensionProviders"]:
        (body,) = [v for k, v in p.items() if k.startswith("envoyExtAuthz")]
        assert body.get("statusOnError") == "503", p["name"]
        assert body.get("failOpen", False) is False, p["name"]
