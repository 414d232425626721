"""Operations through real Envoy: the Prometheus scrape moves as the traffic says it should, and
JSON logs parse, carry request ids and never contain cookies, tokens, codes or secrets."""

from __future__ import annotations

import json

import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from browser import Browser
from parts import Stack
from test_http_ext_authz import COOKIE, PROTECTED, finish_at_idp, login, start_login, with_param


@pytest.fixture(scope="module")
def json_stack(work_dir):
    s = Stack(work_dir / "metrics-and-logs", portcullis_toml='format = "json"\n')
    s.start()
    yield s
    s.stop()


def scrape(stack) -> dict[tuple[str, tuple], float]:
    r = requests.get(f"{stack.portcullis.admin_url}/metrics", timeout=5)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_scrape_counts_what_the_traffic_did(json_stack):
    before = scrape(json_stack)
    b = Browser()
    login(json_stack, b)  # redirect, IdP, callback, then the allowed request
    Browser(accept="application/json").get(json_stack.url + "/api/x")  # 401
    after = scrape(json_stack)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    d = "portcullis_decisions_total"
    assert moved(d, adapter="http", outcome="login", reason="redirect") == 1
    assert moved(d, adapter="http", outcome="route", reason="callback") == 1
    assert moved(d, adapter="http", outcome="allow", reason="session") == 1
    assert moved(d, adapter="http", outcome="login", reason="api") == 1
    assert moved("portcullis_logins_total", result="started") == 1
    assert moved("portcullis_logins_total", result="succeeded") == 1
    assert moved("portcullis_idp_requests_total", endpoint="token", status="ok") == 1
    assert moved("portcullis_idp_requests_total", endpoint="userinfo", status="ok") == 1
    assert moved("portcullis_check_duration_seconds_count", adapter="http") == 4
    s = "portcullis_session_operations_total"
    assert moved(s, store="cookie", op="save", result="ok") == 1  # the callback
    assert moved(s, store="cookie", op="load", result="valid") == 1  # the allowed request
    assert moved(s, store="cookie", op="load", result="absent") >= 2  # before login, the API call
    assert moved(s, store="cookie", op="load", result="invalid") == 0
    assert value(after, "portcullis_build_info", version="0.1.0") == 1
    assert value(after, "portcullis_idp_requests_total", endpoint="discovery", status="ok") >= 1


def test_json_logs_parse_and_hold_no_secrets(json_stack):
    b = Browser()
    auth_url = start_login(json_stack, b)
    callback = finish_at_idp(json_stack, b, auth_url)
    code = dict(p.split("=", 1) for p in callback.split("?", 1)[1].split("&"))["code"]
    b.get(callback)
    session = next(c.value for c in b.session.cookies if c.name == COOKIE)
    echoed = b.get(json_stack.url + PROTECTED).json()
    id_token_hint = None
    r = b.get(json_stack.url + "/oauth2/sign_out")
    if "id_token_hint=" in r.headers.get("location", ""):
        id_token_hint = r.headers["location"].split("id_token_hint=", 1)[1].split("&", 1)[0]
    # A denial: a callback whose state matches nothing.
    denied = Browser().get(with_param(callback, "state", "forged-state-value"))
    assert denied.status_code == 403

    # The harness heads each log with a "### <command>" line of its own.
    lines = [
        line
        for line in json_stack.portcullis.service.log_path.read_text().splitlines()
        if line and not line.startswith("### ")
    ]
    assert lines, "portcullis wrote no log"
    records = [json.loads(line) for line in lines]  # every line is JSON
    text = "\n".join(lines)
    secrets = {
        "session cookie": session,
        "authorization code": code,
        "client secret": json_stack.client_secret,
        "cookie secret": json_stack.portcullis.cookie_secret,
    }
    if id_token_hint:
        secrets["id token"] = id_token_hint
    for what, secret in secrets.items():
        assert secret and secret not in text, f"the log contains the {what}"
    assert echoed["headers"]["x-auth-request-user"] == "alice"

    def fields(r):
        return r.get("fields", {})

    signed_in = [r for r in records if fields(r).get("message") == "signed in"]
    assert len(signed_in) >= 1 and all(fields(r).get("request_id") for r in signed_in), signed_in
    # Users appear only as a keyed hash (log.include_user is off), the same one on every line.
    users = {fields(r).get("user") for r in signed_in}
    assert len(users) == 1 and users.pop().startswith("hmac:"), signed_in
    assert "alice" not in text, "the log names the user"
    refused = [r for r in records if "pending login" in fields(r).get("message", "")]
    assert refused and all(fields(r).get("request_id") for r in refused), records[-5:]
    checks = [r for r in records if fields(r).get("message") == "check"]
    assert checks and all({"request_id", "outcome", "reason"} <= set(fields(r)) for r in checks)
