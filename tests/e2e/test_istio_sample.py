"""The Istio ext-authz task, verbatim, with portcullis standing in for the sample server
(`compat.istio_sample = true`) behind real Envoy configured as Istio translates the task's
providers, HTTP (envoy_istio_sample.yaml) and gRPC (envoy_istio_sample_grpc.yaml): /headers is
checked on `x-ext-authz`, /ip is not checked."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from parts import Stack

DENY_BODY = "denied by ext_authz for not found header `x-ext-authz: allow` in the request"


TEMPLATES = {
    "http": Path(__file__).parent / "envoy_istio_sample.yaml",
    "grpc": Path(__file__).parent / "envoy_istio_sample_grpc.yaml",
}


@pytest.fixture(scope="module", params=["http", "grpc"])
def sample_stack(work_dir, request):
    s = Stack(
        work_dir / f"istio-sample-{request.param}",
        mode=request.param,
        portcullis_toml="[compat]\nistio_sample = true\n",
        envoy_template=TEMPLATES[request.param],
    )
    s.start()
    yield s
    s.stop()


def test_allow_header_passes_and_the_upstream_sees_the_result(sample_stack):
    r = requests.get(f"{sample_stack.url}/headers", headers={"x-ext-authz": "allow"}, timeout=5)
    assert r.status_code == 200, r.text[:300]
    seen = r.json()["headers"]
    assert seen["x-ext-authz-check-result"] == "allowed"
    if sample_stack.mode == "http":
        # Envoy's headers_to_add overrides the client's value before the check sees it.
        assert seen["x-ext-authz-additional-header-override"] == "additional-header-override-value"
    else:
        assert seen["x-ext-authz-additional-header-override"] == "grpc-additional-header-override-value"
    assert seen["x-ext-authz-check-received"].startswith("GET ")


def test_other_values_are_denied_with_the_samples_body(sample_stack):
    for value in ("deny", "Allow", None):
        headers = {"x-ext-authz": value} if value else {}
        r = requests.get(f"{sample_stack.url}/headers", headers=headers, timeout=5)
        assert r.status_code == 403, (value, r.status_code)
        assert r.text == DENY_BODY
        assert r.headers["x-ext-authz-check-result"] == "denied"


def test_paths_outside_the_custom_rule_are_never_checked(sample_stack):
    r = requests.get(f"{sample_stack.url}/ip", headers={"x-ext-authz": "deny"}, timeout=5)
    assert r.status_code == 200
    assert "x-ext-authz-check-result" not in r.json()["headers"]


def test_each_decision_is_logged_like_the_sample(sample_stack):
    requests.get(f"{sample_stack.url}/headers", headers={"x-ext-authz": "allow"}, timeout=5)
    requests.get(f"{sample_stack.url}/headers", headers={"x-ext-authz": "no"}, timeout=5)
    log = sample_stack.portcullis.service.log_path.read_text()
    tag = "HTTP" if sample_stack.mode == "http" else "gRPCv3"
    assert f"[{tag}][allowed]: GET 127.0.0.1:" in log
    assert f"[{tag}][denied]: GET 127.0.0.1:" in log
