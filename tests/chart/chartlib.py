"""Shared values and helpers for the chart checks (fixtures are in conftest.py): render
helm/portcullis with Helm's own Go SDK (helm-python-sdk, no helm binary) and index the
manifests by kind and name."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

try:
    import helm_python as helm
except ImportError as e:  # a skip here would hide the whole suite
    raise ImportError("helm-python-sdk is missing: run scripts/chart-test.sh, which installs "
                      "tests/chart/requirements.txt into the project venv") from e

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "helm" / "portcullis"
RELEASE = "portcullis"
NAMESPACE = "auth"

# Two syntactically valid cookie keys (32 bytes, base64), made for the tests only.
COOKIE_SECRET = "dGVzdC1jb29raWUta2V5LTMyLWJ5dGVzLWxvbmctISE="
OLD_COOKIE_SECRET = "b2xkLWNvb2tpZS1rZXktMzItYnl0ZXMtbG9uZy0hISE="
ADMIN_TOKEN = "admin-token-for-the-chart-tests-0123456789"
CLIENT_SECRET = "client-s3cret-for-chart-tests"

MINIMAL = {
    "config": {"oidc": {"issuer_url": "https://idp.example.com/realms/main", "client_id": "portcullis"}},
    "secrets": {"clientSecret": CLIENT_SECRET, "cookieSecret": COOKIE_SECRET},
}

# Every optional object on, every pass-through filled.
FULL = {
    "config": {
        "server": {"proxy_prefix": "/auth", "path_prefix": "/ext-authz", "grpc_address": "0.0.0.0:4181",
                   "trusted_proxies": ["10.0.0.0/8", "fd00::/8", "192.168.1.10"],
                   "grpc_max_message_bytes": 8388608, "max_header_bytes": 131072,
                   "max_body_bytes": 65536, "max_connections": 5000, "max_concurrent_streams": 64},
        "oidc": {
            "issuer_url": "https://idp.example.com/realms/main",
            "client_id": "portcullis",
            "redirect_url": "https://app.example.com/auth/callback",
            "scopes": ["openid", "email", "profile", "groups"],
            "user_claim": "sub",
            "email_claim": "email",
            "groups_claim": "roles",
            "extra_auth_params": {"prompt": "login", "acr_values": 'urn:"quoted"\\value'},
            "http_timeout": "5s",
            "allow_unverified_email": False,
        },
        "cookie": {"name": "_sso", "expire": "12h", "csrf_expire": "10m", "max_pending_logins": 7,
                   "domain": ".example.com", "path": "/", "secure": True, "same_site": "strict",
                   "refresh": "2m", "refresh_interval": "1h", "store_refresh_token": True,
                   "keep_after_token_expiry": False},
        "authz": {"email_domains": ["example.com", ".example.org"], "allowed_groups": ["admins", "devs"],
                  "redirect_domains": [".example.com", "grafana.example.net:8443"],
                  "rules": [
                      {"paths": ["/healthz", "/public/*"], "action": "public"},
                      {"hosts": ["admin.example.com", "*.internal.example.com"],
                       "paths": ["/admin/*", "re:^/v[0-9]+/admin$"], "methods": ["GET", "POST"],
                       "action": "require", "groups": ["admins"], "emails": ["root@example.com"],
                       "email_domains": ["example.com"],
                       "claims": {"department": ["eng", "ops"], "level": [3], "staff": [True]}},
                      {"paths": ["/api/*"], "action": "authenticated", "api": True},
                      {"paths": ["/headers"], "action": "header",
                       "header": {"name": "x-ext-authz", "value": "allow"}},
                      {"paths": ["/internal/*"], "action": "deny"},
                  ]},
        "headers": {"set_xauthrequest": True, "pass_access_token": True, "set_authorization_header": True},
        "pages": {"templates_dir": "", "provider_name": "Example SSO",
                  "footer": "Example Corp — <b>internal</b>", "signed_in_page": False,
                  "title": "Example Tools", "logo": "data:image/png;base64,iVBORw0KGgo=",
                  "accent_color": "#0a7", "login_mode": "page"},
        "log": {"level": "portcullis=debug,info", "format": "json", "include_user": True},
        "forward": {"auth_status": 200, "catch_all": False},
        # A binary without the otlp feature refuses an endpoint: see test_tracing_endpoint_*.
        "tracing": {"otlp_endpoint": "", "service_name": "portcullis-prod"},
        "compat": {"istio_sample": False, "istio_sample_allow_service_account": "a"},
        "bearer": {"enabled": True, "accept_login_issuer": True, "fallback_to_cookie": False,
                   "ignore_opaque_tokens": True, "leeway": "45s", "refetch_interval": "20s",
                   "refresh_interval": "15m", "cache_size": 5000, "jwks_max_bytes": 262144,
                   "issuers": [{"issuer": "https://login.partner.example",
                                "jwks_uri": "https://login.partner.example/keys",
                                "audiences": ["api://portcullis", "partner"],
                                "algorithms": ["RS256", "ES256"], "user_claim": "sub",
                                "email_claim": "mail", "groups_claim": "roles"}]},
        # Files left empty: the binary check below reads named files, which the test has not.
        "session": {"store": "redis", "redis": {
            "url": "rediss://redis.example.com:6380/0", "sentinel_urls": [], "sentinel_master": "",
            "cluster_urls": [], "password_file": "", "ca_file": "", "timeout": "500ms",
            "key_prefix": "sso:"}},
        "admin": {"token_file": ""},
    },
    "secrets": {"clientSecret": CLIENT_SECRET, "cookieSecret": COOKIE_SECRET,
                "previousCookieSecrets": [OLD_COOKIE_SECRET], "adminToken": ADMIN_TOKEN},
    "image": {"repository": "registry.example.com/portcullis", "tag": "0.1.0",
              "digest": "sha256:" + "ab" * 32, "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"create": True, "name": "portcullis-sa", "annotations": {"example.com/role": "x"}},
    "podAnnotations": {"example.com/team": "platform"},
    "podLabels": {"team": "platform"},
    "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
    "extraEnvFrom": [{"configMapRef": {"name": "portcullis-extra", "optional": True}}],
    "extraVolumes": [{"name": "templates", "configMap": {"name": "portcullis-templates"}}],
    "extraVolumeMounts": [{"name": "templates", "mountPath": "/etc/portcullis-templates", "readOnly": True}],
    "extraArgs": ["--set", "pages.signed_in_page=false"],
    "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "auth", "effect": "NoSchedule"}],
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {
            "matchLabels": {"app.kubernetes.io/name": "portcullis"}}}}]}},
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                   "whenUnsatisfiable": "ScheduleAnyway",
                                   "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "portcullis"}}}],
    "priorityClassName": "auth-critical",
    "service": {"annotations": {"example.com/svc": "yes"}, "labels": {"tier": "auth"}},
    "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 9, "targetCPUUtilizationPercentage": 60,
                    "targetMemoryUtilizationPercentage": 80,
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}},
    "podDisruptionBudget": {"enabled": True, "minAvailable": None, "maxUnavailable": 1},
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}, "interval": "15s",
                       "scrapeTimeout": "5s",
                       "metricRelabelings": [{"action": "drop", "sourceLabels": ["__name__"], "regex": "go_.*"}]},
    "networkPolicy": {"enabled": True, "meshNamespaces": ["istio-system", "istio-ingress"],
                      "extraCheckPeers": [{"podSelector": {"matchLabels": {"app": "nginx"}}}],
                      "monitoringNamespaces": ["monitoring"],
                      "extraAdminPeers": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
}


def merged(base: dict, override: dict) -> dict:
    """base with override deep-merged in (override wins), neither modified."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class Rendered:
    """The manifests of one render, by (kind, name), plus NOTES.txt."""

    def __init__(self, files: dict[str, str]):
        self.files = files
        self.notes = next((v for k, v in files.items() if k.endswith("NOTES.txt")), "")
        self.docs: list[dict] = []
        for path, text in sorted(files.items()):
            if path.endswith(".txt"):
                continue
            self.docs.extend(d for d in yaml.safe_load_all(text) if d)

    def kinds(self) -> set[str]:
        return {d["kind"] for d in self.docs}

    def get(self, kind: str) -> dict:
        found = [d for d in self.docs if d["kind"] == kind]
        assert len(found) == 1, f"expected one {kind}, found {len(found)}"
        return found[0]

    def has(self, kind: str) -> bool:
        return any(d["kind"] == kind for d in self.docs)

    @property
    def deployment(self) -> dict:
        return self.get("Deployment")

    @property
    def container(self) -> dict:
        (c,) = self.deployment["spec"]["template"]["spec"]["containers"]
        return c

    @property
    def toml_text(self) -> str:
        return self.get("ConfigMap")["data"]["portcullis.toml"]
