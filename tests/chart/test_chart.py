"""The Helm chart, rendered by Helm's own Go SDK (helm-python-sdk) and checked like a cluster
would: lint, every manifest against the Kubernetes OpenAPI schemas (kubernetes-validate,
strict), the fields that make it work (ports, probes, security context, secret wiring), the
rendered portcullis.toml against the real binary, and the failures a wrong install must hit.

Run with scripts/chart-test.sh (installs the two packages into the project venv first)."""

from __future__ import annotations

import base64
import copy
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import pytest
import yaml

from chartlib import (
    CHART_DIR,
    ADMIN_TOKEN,
    CLIENT_SECRET,
    COOKIE_SECRET,
    FULL,
    MINIMAL,
    NAMESPACE,
    OLD_COOKIE_SECRET,
    RELEASE,
    ROOT,
    Rendered,
    helm,
    merged,
)

# The oldest Kubernetes the chart claims (Chart.yaml kubeVersion) and the newest the pinned
# kubernetes-validate ships. The full values use lifecycle.preStop.sleep, which needs 1.30.
OLDEST, NEWEST, FULL_OLDEST = "1.25.0", "1.37.0", "1.30.0"
# Custom resources kubernetes-validate has no schema for; checked structurally below.
CRD_KINDS = {"ServiceMonitor"}

EXISTING = merged(
    {k: v for k, v in MINIMAL.items() if k != "secrets"},
    {"existingSecret": {"name": "sso-creds", "clientSecretKey": "oidc", "cookieSecretKey": "cookie",
                        "previousCookieSecretsKey": "cookie-old", "adminTokenKey": "admin"}},
)
VARIANTS = {"minimal": MINIMAL, "full": FULL, "existing-secret": EXISTING}
SECRET_STRINGS = [CLIENT_SECRET, COOKIE_SECRET, OLD_COOKIE_SECRET, ADMIN_TOKEN]


def toml_of(r: Rendered) -> dict:
    return tomllib.loads(r.toml_text)


def env_by_name(r: Rendered) -> dict[str, dict]:
    return {e["name"]: e for e in r.container.get("env", [])}


def render_error(render, values) -> str:
    with pytest.raises(helm.HelmError) as info:
        render(values)
    return str(info.value)


# --- lint -----------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["minimal", "full"])
def test_lint_passes_strict(variant):
    report = helm.lint(str(CHART_DIR), copy.deepcopy(VARIANTS[variant]), strict=True,
                       namespace=NAMESPACE, kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


def test_lint_without_required_values_names_them():
    report = helm.lint(str(CHART_DIR))
    text = "\n".join(report["errors"])
    assert "/config/oidc/issuer_url" in text and "/config/oidc/client_id" in text, report


# --- every manifest is a valid Kubernetes object ---------------------------------------------

@pytest.mark.parametrize("variant, k8s", [
    ("minimal", OLDEST), ("minimal", NEWEST), ("existing-secret", OLDEST), ("existing-secret", NEWEST),
    ("full", FULL_OLDEST), ("full", NEWEST),
])
def test_manifests_validate_against_kubernetes_schemas(render, variant, k8s):
    r = render(VARIANTS[variant])
    assert r.docs
    for doc in r.docs:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, k8s, strict=True)
        except kv_utils.SchemaNotFoundError:
            assert doc["kind"] in CRD_KINDS, f"no schema for {where}"
        except kv_utils.ValidationError as e:
            pytest.fail(f"{where} invalid for Kubernetes {k8s}: {'.'.join(map(str, e.path))}: {e.message}")
        assert doc["metadata"]["name"]
        if doc["kind"] != "ServiceMonitor":
            assert doc["metadata"]["namespace"] == NAMESPACE, where
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "portcullis"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "portcullis-0.1.0"


def test_default_render_has_only_the_core_objects(render):
    assert render(MINIMAL).kinds() == {"ConfigMap", "Deployment", "Secret", "Service", "ServiceAccount"}


def test_full_render_has_every_optional_object(render):
    assert render(FULL).kinds() == {
        "ConfigMap", "Deployment", "Secret", "Service", "ServiceAccount",
        "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor", "NetworkPolicy",
    }


# --- Service, ports, probes --------------------------------------------------------------------

@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_service_ports(render, variant):
    r = render(VARIANTS[variant])
    svc = r.get("Service")
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert list(ports) == ["http", "grpc", "admin"]
    assert (ports["http"]["port"], ports["grpc"]["port"], ports["admin"]["port"]) == (4180, 4181, 4182)
    assert ports["grpc"]["appProtocol"] == "grpc"
    assert all(p["targetPort"] == name and p["protocol"] == "TCP" for name, p in ports.items())
    container_ports = {p["name"]: p["containerPort"] for p in r.container["ports"]}
    assert container_ports == {"http": 4180, "grpc": 4181, "admin": 4182}
    # The Service selects exactly the pods of this release.
    pod_labels = r.deployment["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert r.deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert svc["metadata"]["name"] == RELEASE


def test_custom_ports_reach_service_container_and_config(render):
    r = render(merged(MINIMAL, {"ports": {"http": 8080, "grpc": 8081, "admin": 9090}}))
    assert {p["name"]: p["port"] for p in r.get("Service")["spec"]["ports"]} == \
        {"http": 8080, "grpc": 8081, "admin": 9090}
    assert {p["name"]: p["containerPort"] for p in r.container["ports"]} == \
        {"http": 8080, "grpc": 8081, "admin": 9090}
    server = toml_of(r)["server"]
    assert server["http_address"] == "0.0.0.0:8080" and server["admin_address"] == "0.0.0.0:9090"
    assert "port: 8080" in r.notes and "port: 8081" in r.notes


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_probes_use_the_admin_port(render, variant):
    c = render(VARIANTS[variant]).container
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}


def test_deployment_runs_serve_with_the_mounted_config(render):
    r = render(MINIMAL)
    c = r.container
    assert c["args"][:3] == ["serve", "--config", "/etc/portcullis/portcullis.toml"]
    assert "command" not in c  # the image's ENTRYPOINT is the binary
    assert c["image"] == "portcullis:0.1.0"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["config"]["mountPath"] == "/etc/portcullis" and mounts["config"]["readOnly"] is True
    volumes = {v["name"]: v for v in r.deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == r.get("ConfigMap")["metadata"]["name"]
    strategy = r.deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert r.deployment["spec"]["replicas"] == 2
    res = c["resources"]
    assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]


def test_full_values_reach_the_pod(render):
    r = render(FULL)
    pod = r.deployment["spec"]["template"]["spec"]
    c = r.container
    assert c["image"] == "registry.example.com/portcullis@sha256:" + "ab" * 32
    assert c["imagePullPolicy"] == "Always"
    assert c["args"][3:] == ["--set", "pages.signed_in_page=false"]
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    assert env_by_name(r)["RUST_BACKTRACE"]["value"] == "1"
    assert c["envFrom"] == FULL["extraEnvFrom"]
    assert {m["name"] for m in c["volumeMounts"]} == {"config", "tmp", "templates"}
    assert pod["serviceAccountName"] == "portcullis-sa"
    assert r.get("ServiceAccount")["metadata"]["name"] == "portcullis-sa"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["priorityClassName"] == "auth-critical"
    assert pod["nodeSelector"] and pod["tolerations"] and pod["affinity"] and pod["topologySpreadConstraints"]
    meta = r.deployment["spec"]["template"]["metadata"]
    assert meta["annotations"]["example.com/team"] == "platform" and meta["labels"]["team"] == "platform"
    assert "replicas" not in r.deployment["spec"]  # the HPA owns it


# --- security ---------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_security_context(render, variant):
    r = render(VARIANTS[variant])
    pod = r.deployment["spec"]["template"]["spec"]
    psc, csc = pod["securityContext"], r.container["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert csc["runAsNonRoot"] is True and csc["runAsUser"] == 65532
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["privileged"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}
    # No API access needed; no service-link variables (PORTCULLIS_SERVICE_HOST, ... would be
    # read as configuration keys and stop the binary: see test_service_link_env_would_break_the_binary).
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False


# --- secrets ----------------------------------------------------------------------------------

def test_chart_secret_is_wired_into_the_env(render):
    r = render(FULL)
    secret = r.get("Secret")
    name = secret["metadata"]["name"]
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {"client-secret": CLIENT_SECRET, "cookie-secret": COOKIE_SECRET,
                    "previous-cookie-secrets": OLD_COOKIE_SECRET, "admin-token": ADMIN_TOKEN}
    env = env_by_name(r)
    for var, key in [("PORTCULLIS_OIDC__CLIENT_SECRET", "client-secret"),
                     ("PORTCULLIS_COOKIE__SECRET", "cookie-secret"),
                     ("PORTCULLIS_COOKIE__PREVIOUS_SECRETS", "previous-cookie-secrets"),
                     ("PORTCULLIS_ADMIN__TOKEN", "admin-token")]:
        assert env[var] == {"name": var, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}


def test_previous_cookie_secrets_are_optional(render):
    r = render(MINIMAL)
    assert set(r.get("Secret")["data"]) == {"client-secret", "cookie-secret"}
    assert "PORTCULLIS_COOKIE__PREVIOUS_SECRETS" not in env_by_name(r)
    assert "PORTCULLIS_ADMIN__TOKEN" not in env_by_name(r), "no token: the admin API stays off"


def test_existing_secret_is_honoured(render):
    r = render(EXISTING)
    assert not r.has("Secret")
    env = env_by_name(r)
    assert env["PORTCULLIS_OIDC__CLIENT_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "sso-creds", "key": "oidc"}
    assert env["PORTCULLIS_COOKIE__SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "sso-creds", "key": "cookie"}
    assert env["PORTCULLIS_COOKIE__PREVIOUS_SECRETS"]["valueFrom"]["secretKeyRef"] == \
        {"name": "sso-creds", "key": "cookie-old"}
    assert env["PORTCULLIS_ADMIN__TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "sso-creds", "key": "admin"}
    annotations = r.deployment["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/config" in annotations and "checksum/secret" not in annotations
    # Values given under secrets.* are ignored when existingSecret is set, and never rendered.
    r2 = render(merged(EXISTING, {"secrets": {"clientSecret": CLIENT_SECRET, "cookieSecret": COOKIE_SECRET}}))
    assert not r2.has("Secret")
    assert CLIENT_SECRET not in "".join(r2.files.values())


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_no_secret_outside_the_secret(render, variant):
    r = render(VARIANTS[variant])
    encoded = [base64.b64encode(s.encode()).decode() for s in SECRET_STRINGS]
    for doc in r.docs:
        if doc["kind"] == "Secret":
            continue
        text = yaml.safe_dump(doc)
        for s in SECRET_STRINGS + encoded:
            assert s not in text, f"a secret leaked into {doc['kind']}"
    assert not any(s in r.notes for s in SECRET_STRINGS)
    # Secrets reach the container only by reference.
    for e in r.container.get("env", []):
        if e["name"].startswith("PORTCULLIS_"):
            assert "value" not in e and "secretKeyRef" in e["valueFrom"]
    config = toml_of(r)
    assert not {"client_secret", "client_secret_file"} & set(config["oidc"])
    assert not {"secret", "secret_file", "previous_secrets"} & set(config.get("cookie", {}))


# --- the rendered configuration ----------------------------------------------------------------

def test_minimal_toml_parses_with_the_expected_keys(render):
    config = toml_of(render(MINIMAL))
    assert list(config) == ["server", "oidc", "cookie", "authz", "headers", "pages", "log", "tracing", "bearer"]
    assert config["server"] == {"http_address": "0.0.0.0:4180", "admin_address": "0.0.0.0:4182",
                                "proxy_prefix": "/oauth2", "path_prefix": ""}
    assert config["oidc"]["issuer_url"] == "https://idp.example.com/realms/main"
    assert config["oidc"]["client_id"] == "portcullis"
    assert config["oidc"]["scopes"] == ["openid", "email", "profile"]
    assert config["oidc"]["extra_auth_params"] == {}
    assert config["cookie"]["max_pending_logins"] == 5 and isinstance(config["cookie"]["max_pending_logins"], int)
    assert config["cookie"]["secure"] is True and config["cookie"]["same_site"] == "lax"
    assert config["authz"]["email_domains"] == ["*"]
    assert config["log"] == {"level": "info", "format": "json", "include_user": False}


def test_full_toml_keeps_every_value_and_type(render):
    config = toml_of(render(FULL))
    want = FULL["config"]
    assert config["server"]["grpc_address"] == "0.0.0.0:4181"
    assert config["server"]["path_prefix"] == "/ext-authz"
    for section, body in want.items():
        for key, value in body.items():
            assert config[section][key] == value, f"{section}.{key}"
    assert type(config["cookie"]["max_pending_logins"]) is int
    assert config["oidc"]["extra_auth_params"]["acr_values"] == 'urn:"quoted"\\value'
    assert config["pages"]["footer"] == "Example Corp — <b>internal</b>"


def test_grpc_address_is_rendered_only_when_set(render):
    assert "grpc_address" not in toml_of(render(MINIMAL))["server"]
    assert toml_of(render(FULL))["server"]["grpc_address"] == "0.0.0.0:4181"
    moved = merged(MINIMAL, {"ports": {"grpc": 9000}, "config": {"server": {"grpc_address": "0.0.0.0:9000"}}})
    assert toml_of(render(moved))["server"]["grpc_address"] == "0.0.0.0:9000"


def test_null_drops_a_key_so_the_binary_default_applies(render):
    config = toml_of(render(merged(MINIMAL, {"config": {"oidc": {"redirect_url": None}, "pages": None}})))
    assert "redirect_url" not in config["oidc"]
    assert "pages" not in config


def test_checksum_follows_the_config(render):
    def checksum(values):
        return render(values).deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = checksum(MINIMAL)
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert checksum(MINIMAL) == base
    assert checksum(merged(MINIMAL, {"config": {"log": {"level": "debug"}}})) != base
    assert checksum(merged(MINIMAL, {"config": {"authz": {"allowed_groups": ["admins"]}}})) != base
    assert checksum(merged(MINIMAL, {"ports": {"http": 8080}})) != base
    assert checksum(merged(MINIMAL, {"replicaCount": 5})) == base


def test_secret_checksum_follows_the_chart_secret(render):
    def checksum(values):
        return render(values).deployment["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]

    assert checksum(merged(MINIMAL, {"secrets": {"clientSecret": "rotated"}})) != checksum(MINIMAL)


# --- wrong installs fail, and say why -----------------------------------------------------------

@pytest.mark.parametrize("values, message", [
    (merged(MINIMAL, {"secrets": {"clientSecret": ""}}), "set secrets.clientSecret, or existingSecret.name"),
    (merged(MINIMAL, {"secrets": {"cookieSecret": ""}}), "openssl rand -base64 32"),
    ({"secrets": MINIMAL["secrets"]}, "/config/oidc/issuer_url"),
    (merged(MINIMAL, {"config": {"oidc": {"client_id": ""}}}), "/config/oidc/client_id"),
    (merged(MINIMAL, {"config": {"server": {"grpc_address": "0.0.0.0:9000"}}}),
     'config.server.grpc_address must be "0.0.0.0:4181"'),
    (merged(MINIMAL, {"podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1}}),
     "minAvailable or maxUnavailable, not both"),
], ids=["no-client-secret", "no-cookie-secret", "no-issuer", "no-client-id", "grpc-port-mismatch",
        "pdb-both"])
def test_missing_or_conflicting_values_fail_clearly(render, values, message):
    assert message in render_error(render, values)


@pytest.mark.parametrize("override, where", [
    ({"config": {"cookie": {"same_site": "sometimes"}}}, "/config/cookie/same_site"),
    ({"config": {"log": {"format": "xml"}}}, "/config/log/format"),
    ({"config": {"cookie": {"max_pending_logins": 50}}}, "/config/cookie/max_pending_logins"),
    ({"config": {"cookie": {"expire": "a week"}}}, "/config/cookie/expire"),
    ({"config": {"cookie": {"refresh": "soon"}}}, "/config/cookie/refresh"),
    ({"config": {"cookie": {"store_refresh_token": "yes"}}}, "/config/cookie/store_refresh_token"),
    ({"config": {"oidc": {"issuer_url": "idp.example.com"}}}, "/config/oidc/issuer_url"),
    ({"config": {"oidc": {"scopes": ["email"]}}}, "/config/oidc/scopes"),
    ({"config": {"oidc": {"client_secret": "x"}}}, "'client_secret' not allowed"),
    ({"config": {"cookie": {"secret": COOKIE_SECRET}}}, "'secret' not allowed"),
    ({"config": {"server": {"http_address": "0.0.0.0:80"}}}, "'http_address' not allowed"),
    ({"config": {"sever": {"proxy_prefix": "/x"}}}, "'sever' not allowed"),
    ({"config": {"server": {"proxy_prefix": "oauth2"}}}, "/config/server/proxy_prefix"),
    ({"secrets": {"cookieSecret": "tooshort"}}, "/secrets/cookieSecret"),
    ({"ports": {"http": 70000}}, "/ports/http"),
    ({"ports": {"admin": 0}}, "/ports/admin"),
    ({"ports": {"grpc": "4181"}}, "/ports/grpc"),
    ({"replicaCount": "two"}, "/replicaCount"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"service": {"type": "ExternalName"}}, "/service/type"),
    ({"replicas": 3}, "'replicas' not allowed"),
    ({"config": {"authz": {"rules": [{"paths": ["/x"], "action": "allow"}]}}}, "/config/authz/rules/0/action"),
    ({"config": {"authz": {"rules": [{"paths": ["/x"]}]}}}, "/config/authz/rules/0': missing property 'action'"),
    ({"config": {"authz": {"rules": [{"path": ["/x"], "action": "public"}]}}}, "additional properties 'path' not allowed"),
    ({"config": {"authz": {"rules": [{"action": "header", "header": {"name": "x"}}]}}}, "/config/authz/rules/0/header': missing property 'value'"),
    ({"config": {"bearer": {"issuers": [{"issuer": "https://b.example"}]}}}, "/config/bearer/issuers/0': missing property 'audiences'"),
    ({"config": {"bearer": {"issuers": [{"issuer": "https://b.example", "audiences": ["a"],
                                         "algorithms": ["HS256"]}]}}}, "/config/bearer/issuers/0/algorithms/0"),
    ({"config": {"bearer": {"leeway": "soon"}}}, "/config/bearer/leeway"),
    ({"config": {"bearer": {"enable": True}}}, "additional properties 'enable' not allowed"),
    ({"config": {"tracing": {"otlp_endpoint": "collector:4318"}}}, "/config/tracing/otlp_endpoint"),
    ({"config": {"pages": {"login_mode": "popup"}}}, "/config/pages/login_mode"),
    ({"config": {"pages": {"accent_color": "blue"}}}, "/config/pages/accent_color"),
])
def test_schema_rejects_bad_values(chart, render, override, where):
    values = merged(MINIMAL, override)
    with pytest.raises(helm.HelmValuesError) as info:
        chart.validate_schema(copy.deepcopy(values))
    assert where in str(info.value)
    assert where in render_error(render, values)  # install and template enforce it too


@pytest.mark.parametrize("override, message", [
    ({"config": {"oidc": {"client_secret": "x"}}}, "config.oidc.client_secret must not be set"),
    ({"config": {"cookie": {"previous_secrets": [COOKIE_SECRET]}}}, "config.cookie.previous_secrets must not be set"),
    ({"config": {"server": {"admin_address": "0.0.0.0:1"}}}, "config.server.admin_address is set by the chart"),
])
def test_templates_guard_even_without_the_schema(tmp_path, override, message):
    """`helm install --skip-schema-validation` still cannot put a secret in the ConfigMap."""
    copy_dir = tmp_path / "portcullis"
    shutil.copytree(CHART_DIR, copy_dir)
    (copy_dir / "values.schema.json").unlink()
    with helm.Chart.load(str(copy_dir)) as schemaless:
        with pytest.raises(helm.HelmRenderError) as info:
            schemaless.render(merged(MINIMAL, override), name=RELEASE, namespace=NAMESPACE)
    assert message in str(info.value)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_schema_accepts_the_test_values(chart, variant):
    chart.validate_schema(copy.deepcopy(VARIANTS[variant]))


# --- optional objects ---------------------------------------------------------------------------

def test_hpa(render):
    r = render(FULL)
    hpa = r.get("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": r.deployment["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 9)
    targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["spec"]["metrics"]}
    assert targets == {"cpu": 60, "memory": 80}


def test_pdb(render):
    r = render(FULL)
    pdb = r.get("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= \
        r.deployment["spec"]["template"]["metadata"]["labels"].items()
    r2 = render(merged(MINIMAL, {"podDisruptionBudget": {"enabled": True}}))
    assert r2.get("PodDisruptionBudget")["spec"] == {
        "minAvailable": 1, "selector": r2.deployment["spec"]["selector"]}


def test_service_monitor(render):
    r = render(FULL)
    sm = r.get("ServiceMonitor")
    # Structural check (no CRD schema in kubernetes-validate).
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["namespace"] == NAMESPACE
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"].items() <= r.get("Service")["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == "admin" and ep["path"] == "/metrics" and ep["scheme"] == "http"
    assert (ep["interval"], ep["scrapeTimeout"]) == ("15s", "5s")
    assert ep["metricRelabelings"][0]["action"] == "drop"
    assert set(ep) <= {"port", "path", "scheme", "interval", "scrapeTimeout", "relabelings", "metricRelabelings"}


def test_network_policy(render):
    r = render(FULL)
    np = r.get("NetworkPolicy")
    assert np["spec"]["podSelector"]["matchLabels"].items() <= \
        r.deployment["spec"]["template"]["metadata"]["labels"].items()
    assert np["spec"]["policyTypes"] == ["Ingress"]
    checks, admin = np["spec"]["ingress"]
    assert [p["port"] for p in checks["ports"]] == ["http", "grpc"]
    mesh = checks["from"][0]["namespaceSelector"]["matchExpressions"][0]
    assert mesh == {"key": "kubernetes.io/metadata.name", "operator": "In",
                    "values": ["istio-system", "istio-ingress"]}
    assert checks["from"][1] == {"podSelector": {"matchLabels": {"app": "nginx"}}}
    assert [p["port"] for p in admin["ports"]] == ["admin"]
    assert admin["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["monitoring"]
    assert admin["from"][1] == {"ipBlock": {"cidr": "10.0.0.0/8"}}


# --- NOTES.txt: what to paste into Istio ----------------------------------------------------------

def _yaml_block(text: str, start: str, end_pattern: str) -> dict:
    lines = text.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith(start))
    block = []
    for line in lines[i:]:
        if block and re.match(end_pattern, line):
            break
        block.append(line)
    return yaml.safe_load("\n".join(block))


def test_notes_print_the_istio_providers_and_policy(render):
    r = render(merged(FULL, {"config": {"server": {"proxy_prefix": "/oauth2"}}}), name="sso", namespace="auth")
    fqdn = "sso-portcullis.auth.svc.cluster.local"
    providers = {p["name"]: p for p in _yaml_block(r.notes, "meshConfig:", r"^\d\.")["meshConfig"]["extensionProviders"]}
    http = providers["sso-portcullis"]["envoyExtAuthzHttp"]
    grpc = providers["sso-portcullis-grpc"]["envoyExtAuthzGrpc"]
    assert (http["service"], http["port"], http["pathPrefix"]) == (fqdn, 4180, "/ext-authz")
    assert (grpc["service"], grpc["port"]) == (fqdn, 4181)
    (doc_grpc,) = [p["envoyExtAuthzGrpc"] for p in yaml.safe_load((ROOT / "config/istio/mesh-config.yaml")
                   .read_text())["spec"]["meshConfig"]["extensionProviders"] if "envoyExtAuthzGrpc" in p]
    assert grpc["statusOnError"] == doc_grpc["statusOnError"]
    # The header lists are exactly those of the documented Istio registration.
    documented = yaml.safe_load((ROOT / "config/istio/mesh-config.yaml").read_text())
    (doc_http,) = [p["envoyExtAuthzHttp"] for p in documented["spec"]["meshConfig"]["extensionProviders"]
                   if "envoyExtAuthzHttp" in p]
    for key in ["includeRequestHeadersInCheck", "headersToUpstreamOnAllow", "headersToDownstreamOnDeny",
                "headersToDownstreamOnAllow", "timeout", "statusOnError"]:
        assert http[key] == doc_http[key], key
    policy = _yaml_block(r.notes, "apiVersion: security.istio.io/v1", r"^\s*$")
    assert policy["kind"] == "AuthorizationPolicy" and policy["spec"]["action"] == "CUSTOM"
    assert policy["spec"]["provider"]["name"] == "sso-portcullis"
    assert r.get("Service")["metadata"]["name"] == "sso-portcullis"


def test_notes_without_path_prefix_omit_it(render):
    r = render(MINIMAL)
    provider = _yaml_block(r.notes, "meshConfig:", r"^\d\.")["meshConfig"]["extensionProviders"][0]
    assert "pathPrefix" not in provider["envoyExtAuthzHttp"]
    assert provider["envoyExtAuthzHttp"]["service"] == f"{RELEASE}.{NAMESPACE}.svc.cluster.local"


# --- drift between the chart and the binary ------------------------------------------------------

def _example_keys() -> dict[str, set[str]]:
    """Every key of portcullis.example.toml by section; `bearer.issuers` and `authz.rules` hold
    the keys of their tables, which the example shows in comments."""
    text = (ROOT / "config/portcullis.example.toml").read_text()
    example = tomllib.loads(text)
    keys = {section: set(body) for section, body in example.items()}
    section = None
    for line in text.splitlines():
        if m := re.match(r"^\[(\w+)\]", line):
            section = m[1]
        elif m := re.match(r"^# \[\[(\w+)\.(\w+)\]\]", line):
            section = f"{m[1]}.{m[2]}"
        elif section and (m := re.match(r"^# ([a-z_]+) = ", line)):
            keys.setdefault(section, set()).add(m[1])
        elif section == "authz" and (m := re.match(r"^#   ([a-z_ /]+?)\s*= ", line)):
            # The rule keys, e.g. "#   groups / emails / email_domains / claims = ..."
            keys.setdefault("authz.rules", set()).update(k.strip() for k in m[1].split("/"))
    return keys


def _schema_sections(chart) -> dict[str, dict]:
    """The chart's config schema by section, tables of lists (`authz.rules`) included."""
    config = chart.schema["properties"]["config"]["properties"]
    out = {section: body["properties"] for section, body in config.items()}
    out["authz.rules"] = config["authz"]["properties"]["rules"]["items"]["properties"]
    out["bearer.issuers"] = config["bearer"]["properties"]["issuers"]["items"]["properties"]
    return out


def test_chart_config_keys_exist_in_the_example_config(chart):
    schema = _schema_sections(chart)
    example = _example_keys()
    assert {"authz.rules", "bearer.issuers"} <= set(example), sorted(example)
    for section, props in schema.items():
        assert section in example, f"config.{section} is not a section of portcullis.example.toml"
        for key in props:
            assert key in example[section], f"config.{section}.{key} unknown"


def test_chart_exposes_every_config_key(chart):
    """Every key the binary reads can be set through the chart, except the ones it owns
    (listen addresses from `ports`) and secrets (from the Secret)."""
    schema = _schema_sections(chart)
    chart_owned = {"server": {"http_address", "admin_address"}}
    secret_keys = {"oidc": {"client_secret", "client_secret_file"},
                   "cookie": {"secret", "secret_file", "previous_secrets"},
                   "admin": {"token"}}
    missing = sorted(f"{s}.{k}" for s, keys in _example_keys().items() for k in keys
                     if k not in schema.get(s, {})
                     and k not in chart_owned.get(s, set()) and k not in secret_keys.get(s, set()))
    assert not missing, f"portcullis.example.toml keys the chart does not expose: {', '.join(missing)}"


def test_full_values_cover_every_config_key(chart):
    """So the binary check below sees every key the chart can render."""
    config = FULL["config"]
    for section, props in _schema_sections(chart).items():
        if "." in section:
            parent, child = section.split(".")
            items = config[parent][child]
            for key in props:
                assert any(key in item for item in items), f"add a {section} entry with {key} to FULL"
            continue
        for key in props:
            assert key in config.get(section, {}), f"add config.{section}.{key} to FULL"


def test_rules_and_bearer_issuers_render_as_tables_the_binary_reads(render):
    config = toml_of(render(FULL))
    rules = config["authz"]["rules"]
    assert [r["action"] for r in rules] == ["public", "require", "authenticated", "header", "deny"]
    assert rules[1]["claims"] == {"department": ["eng", "ops"], "level": [3], "staff": [True]}
    assert type(rules[1]["claims"]["level"][0]) is int
    assert rules[2]["api"] is True
    assert rules[3]["header"] == {"name": "x-ext-authz", "value": "allow"}
    (issuer,) = config["bearer"]["issuers"]
    assert issuer["audiences"] == ["api://portcullis", "partner"]
    assert config["bearer"]["cache_size"] == 5000 and type(config["bearer"]["cache_size"]) is int
    # Defaults: no rules, bearer off, no trace export.
    minimal = toml_of(render(MINIMAL))
    assert minimal["authz"]["rules"] == []
    assert minimal["bearer"]["enabled"] is False and minimal["bearer"]["issuers"] == []
    assert minimal["tracing"]["otlp_endpoint"] == ""


def _pod_env(r: Rendered, existing: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    """The PORTCULLIS_* environment the pod would get, secretKeyRefs resolved."""
    secrets = dict(existing or {})
    for doc in r.docs:
        if doc["kind"] == "Secret":
            secrets[doc["metadata"]["name"]] = {k: base64.b64decode(v).decode() for k, v in doc["data"].items()}
    env = {}
    for e in r.container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def _check_config(binary: Path, r: Rendered, tmp_path: Path, extra_env=None, existing=None):
    config = tmp_path / "portcullis.toml"
    config.write_text(r.toml_text)
    # A clean environment: a stray PORTCULLIS_* (e.g. PORTCULLIS_BIN) would be read as config.
    env = {"PATH": "/usr/bin:/bin", **_pod_env(r, existing), **(extra_env or {})}
    args = [str(binary), "check-config", "--config", str(config)] + r.container["args"][3:]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=30)


def _without_grpc_address(values: dict) -> dict:
    out = copy.deepcopy(values)
    out["config"]["server"].pop("grpc_address", None)
    return out


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_binary_accepts_the_rendered_config(render, portcullis_bin, tmp_path, variant):
    if portcullis_bin is None:
        pytest.skip("no portcullis binary (cargo build, or set PORTCULLIS_BIN)")
    values = VARIANTS[variant]
    if "server" in values["config"]:
        values = _without_grpc_address(values)  # covered by the next test
    existing = {"sso-creds": {"oidc": CLIENT_SECRET, "cookie": COOKIE_SECRET, "cookie-old": OLD_COOKIE_SECRET,
                                "admin": ADMIN_TOKEN}}
    result = _check_config(portcullis_bin, render(values), tmp_path, existing=existing)
    assert result.returncode == 0, result.stderr


def test_binary_accepts_grpc_address(render, portcullis_bin, tmp_path):
    if portcullis_bin is None:
        pytest.skip("no portcullis binary (cargo build, or set PORTCULLIS_BIN)")
    result = _check_config(portcullis_bin, render(FULL), tmp_path)
    if result.returncode == 64 and "grpc_address" in result.stderr and "unknown field" in result.stderr:
        pytest.skip("this portcullis binary has no server.grpc_address yet")
    assert result.returncode == 0, result.stderr


def test_binary_rejects_what_the_schema_rejects(render, portcullis_bin, tmp_path):
    """The chart's schema is not laxer than the binary on a key both check."""
    if portcullis_bin is None:
        pytest.skip("no portcullis binary (cargo build, or set PORTCULLIS_BIN)")
    result = _check_config(portcullis_bin, render(MINIMAL), tmp_path,
                           extra_env={"PORTCULLIS_COOKIE__SAME_SITE": "sometimes"})
    assert result.returncode == 64 and "cookie.same_site" in result.stderr


def test_tracing_endpoint_reaches_the_binary(render, portcullis_bin, tmp_path):
    """The endpoint is rendered where the binary reads it: a binary built with the otlp
    feature (the Dockerfile's) accepts it; one without refuses it, naming the key, rather than
    ignoring it."""
    if portcullis_bin is None:
        pytest.skip("no portcullis binary (cargo build, or set PORTCULLIS_BIN)")
    values = merged(MINIMAL, {"config": {"tracing": {"otlp_endpoint": "http://otel-collector.observability:4318"}}})
    r = render(values)
    assert toml_of(r)["tracing"]["otlp_endpoint"] == "http://otel-collector.observability:4318"
    result = _check_config(portcullis_bin, r, tmp_path)
    if result.returncode == 64:
        assert "tracing.otlp_endpoint" in result.stderr and "--features otlp" in result.stderr, result.stderr
    else:
        assert result.returncode == 0, result.stderr


def test_service_link_env_does_not_break_the_binary(render, portcullis_bin, tmp_path):
    """Kubernetes injects PORTCULLIS_SERVICE_HOST, PORTCULLIS_PORT... for a Service named
    portcullis; the binary reads only SECTION__KEY names, so they are harmless (the chart still
    sets enableServiceLinks: false, as hygiene)."""
    if portcullis_bin is None:
        pytest.skip("no portcullis binary (cargo build, or set PORTCULLIS_BIN)")
    result = _check_config(portcullis_bin, render(MINIMAL), tmp_path,
                           extra_env={"PORTCULLIS_SERVICE_HOST": "10.0.0.1", "PORTCULLIS_PORT": "tcp://10.0.0.1:4180"})
    assert result.returncode == 0, result.stderr
