"""The real parts of the end-to-end tests and how to start them.

    client --> Envoy (ext_authz, HTTP mode, Istio-style) --> echo upstream
                 |
                 +--> portcullis (check + login routes) --> OpenID Provider (oidc-provider)
                      [× replicas, round robin]   +--> redis-server (optional)

`Stack` starts them on free loopback ports and stops them by PID.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import sys
from pathlib import Path
from typing import Optional

import requests

from envoy_gateway import GRPC_TEMPLATE, Envoy, istio_provider
from harness import E2E_DIR, REPO_DIR, Service, free_port, http_ok, tcp_open

CLIENT_ID = "portcullis-e2e"


def portcullis_binary() -> Path:
    return Path(os.environ.get("PORTCULLIS_BIN") or REPO_DIR / "target" / "debug" / "portcullis")


class Echo:
    def __init__(self, work_dir: Path, name: str = "echo"):
        self.port = free_port()
        self.service = Service(name, [sys.executable, E2E_DIR / "echo.py", self.port], work_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Echo":
        self.service.start()
        self.service.wait_ready(http_ok(f"{self.url}/__ready"), timeout=10, what="GET /__ready")
        return self

    def stop(self) -> None:
        self.service.stop()
        self.service.forget()


class Redis:
    """Debian's redis-server on a free loopback port, its data in the work dir. A stop (SIGTERM)
    saves the data and a later start() loads it, like a restarted production Redis."""

    def __init__(self, work_dir: Path, name: str = "redis"):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is missing: run scripts/install-test-deps.sh")
        self.port = free_port()
        data = Path(work_dir) / f"{name}-data"
        data.mkdir(parents=True, exist_ok=True)
        self.service = Service(
            name,
            [binary, "--port", self.port, "--bind", "127.0.0.1", "--dir", data,
             "--save", "3600 1", "--appendonly", "no", "--protected-mode", "no"],
            work_dir,
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def start(self) -> "Redis":
        self.service.start()
        self.service.wait_ready(tcp_open(self.port), timeout=10, what="listening")
        self.service.wait_ready(self.ping, timeout=10, what="PING")
        return self

    def stop(self) -> None:
        """SIGTERM: redis saves its data and exits. start() again brings it back."""
        self.service.stop()


class IdP:
    """oidc-provider 8.x (tests/e2e/idp/server.mjs) with one confidential client."""

    def __init__(self, work_dir: Path, clients: list[dict], name: str = "idp",
                 issuer_path: Optional[str] = None, extra_env: Optional[dict] = None):
        idp_dir = E2E_DIR / "idp"
        if not (idp_dir / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(
                f"{idp_dir}/node_modules is missing: run scripts/install-test-deps.sh"
            )
        self.port = free_port()
        self.clients = clients
        if issuer_path is None:
            issuer_path = os.environ.get("E2E_IDP_ISSUER_PATH", "")
        self.issuer_path = issuer_path.rstrip("/")
        node = os.environ.get("E2E_NODE") or shutil.which("node") or "node"
        env = dict(os.environ)
        env["IDP_CLIENT"] = json.dumps(clients)
        env["IDP_PORT"] = str(self.port)
        env["IDP_ISSUER_PATH"] = self.issuer_path
        env.update(extra_env or {})
        self.service = Service(name, [node, idp_dir / "server.mjs"], work_dir, env=env, cwd=idp_dir)
        self._discovery: Optional[dict] = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.issuer_path}"

    @property
    def discovery(self) -> dict:
        if self._discovery is None:
            self._discovery = requests.get(
                f"{self.issuer}/.well-known/openid-configuration", timeout=5
            ).json()
        return self._discovery

    def start(self) -> "IdP":
        self.service.start()
        self.service.wait_ready(
            http_ok(f"{self.issuer}/.well-known/openid-configuration"),
            timeout=20,
            what="discovery",
        )
        return self

    def stop(self) -> None:
        self.service.stop()
        self.service.forget()


class Portcullis:
    """portcullis on free loopback ports, configured by a portcullis.toml written here, or, with
    `oauth2_proxy_cfg`, the way an oauth2-proxy user starts it: their oauth2-proxy config file
    (`{http_port}` and `{issuer}` filled in) plus `OAUTH2_PROXY_*` variables in `extra_env`."""

    def __init__(self, work_dir: Path, issuer: str, client_secret: str, name: str = "portcullis",
                 extra_toml: str = "", sets: tuple[str, ...] = (), authz_toml: str = "",
                 http_port: Optional[int] = None, cookie_secret: Optional[str] = None,
                 oauth2_proxy_cfg: str = "", extra_env: Optional[dict] = None):
        binary = portcullis_binary()
        if not binary.is_file():
            raise RuntimeError(
                f"portcullis binary not found at {binary}: build it first (cargo build) "
                "or set PORTCULLIS_BIN"
            )
        self.http_port = http_port or free_port()
        self.grpc_port = free_port()
        self.admin_port = free_port()
        # Replicas share one secret: a cookie made by one opens on every other.
        self.cookie_secret = cookie_secret or base64.b64encode(secrets.token_bytes(32)).decode()
        self.config_path = Path(work_dir) / f"{name}.toml"
        self.config_path.write_text(
            f"""\
[server]
http_address = "127.0.0.1:{self.http_port}"
grpc_address = "127.0.0.1:{self.grpc_port}"
admin_address = "127.0.0.1:{self.admin_port}"

[oidc]
issuer_url = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{client_secret}"
scopes = ["openid", "email", "profile", "groups"]

[cookie]
secret = "{self.cookie_secret}"
secure = false

[authz]
redirect_domains = ["127.0.0.1:*"]
{authz_toml}

[log]
level = "{os.environ.get('E2E_PORTCULLIS_LOG', 'debug')}"
{extra_toml}"""
        )
        # The environment overrides the file: keep a developer's own settings out of the tests.
        env = {
            k: v
            for k, v in os.environ.items()
            if not (k.startswith("PORTCULLIS_") or k.startswith("OAUTH2_PROXY_"))
        }
        env.setdefault("RUST_BACKTRACE", "1")
        env.update(extra_env or {})
        config_args = ["--config", self.config_path]
        if oauth2_proxy_cfg:
            self.config_path = Path(work_dir) / f"{name}-oauth2-proxy.cfg"
            self.config_path.write_text(
                oauth2_proxy_cfg.replace("{http_port}", str(self.http_port)).replace("{issuer}", issuer)
            )
            # Only what oauth2-proxy has no option for comes from our own flags.
            config_args = ["--oauth2-proxy-config", self.config_path,
                           "--grpc-address", f"127.0.0.1:{self.grpc_port}",
                           "--admin-address", f"127.0.0.1:{self.admin_port}"]
        self.service = Service(
            name,
            [binary, "serve", *config_args,
             *[arg for kv in sets for arg in ("--set", kv)]],
            work_dir,
            env=env,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> "Portcullis":
        self.service.start()
        self.service.wait_ready(http_ok(f"{self.admin_url}/readyz"), timeout=30, what="GET /readyz")
        return self

    def stop(self) -> None:
        self.service.stop()
        self.service.forget()


class Stack:
    """IdP + echo upstream + portcullis + Envoy, all on free loopback ports.

    `mode` is the ext_authz protocol Envoy uses: "http" (tests/e2e/envoy_http.yaml, or
    `envoy_template`) or "grpc" (config/envoy/envoy-grpc.yaml with config/istio/mesh-config.yaml's
    gRPC provider)."""

    def __init__(self, work_dir: Path, name: str = "stack", mode: str = "http",
                 portcullis_sets: tuple[str, ...] = (), portcullis_toml: str = "",
                 envoy_template: Optional[Path] = None, extra_clients: Optional[list] = None,
                 idp_env: Optional[dict] = None, authz_toml: str = "",
                 portcullis_oauth2_proxy_cfg: str = "", portcullis_env: Optional[dict] = None,
                 replicas: int = 1, redis: bool = False, envoy_path_prefix: str = ""):
        if mode not in ("http", "grpc"):
            raise ValueError(f"mode must be http or grpc, not {mode!r}")
        self.mode = mode
        self.portcullis_sets = tuple(portcullis_sets)
        self.envoy_template = envoy_template  # HTTP mode; default: envoy_gateway.HTTP_TEMPLATE
        # HTTP mode: Envoy's http_service.path_prefix (set server.path_prefix in portcullis_sets).
        self.envoy_path_prefix = envoy_path_prefix
        # Appended to portcullis's config (after [log]); "{issuer}" is replaced by the IdP's.
        self.portcullis_toml = portcullis_toml
        self.authz_toml = authz_toml  # lines added to its [authz] table
        # An oauth2-proxy config file to start portcullis with instead of its own (see
        # Portcullis), and environment variables for it ("{client_secret}" is filled in).
        self.portcullis_oauth2_proxy_cfg = portcullis_oauth2_proxy_cfg
        self.portcullis_env = portcullis_env or {}
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.client_secret = secrets.token_urlsafe(24)
        self.envoy_port = free_port()  # the IdP must know the callback before Envoy starts
        self.idp: Optional[IdP] = None
        self.echo: Optional[Echo] = None
        self.portcullis: Optional[Portcullis] = None
        self.envoy: Optional[Envoy] = None
        self._started: list = []
        self.extra_clients = extra_clients or []
        self.idp_env = idp_env or {}
        # `replicas` portcullis processes behind Envoy's one cluster (round robin), sharing the
        # cookie secret; with `redis`, a redis-server and "{redis_url}" in `portcullis_toml`.
        self.replica_count = replicas
        self.replicas: list[Portcullis] = []
        self.with_redis = redis
        self.redis: Optional[Redis] = None
        # Known before the IdP starts, so its client can name the back-channel logout URI.
        self.portcullis_http_port = free_port()

    @property
    def url(self) -> str:
        """Where clients talk: Envoy's listener."""
        return f"http://127.0.0.1:{self.envoy_port}"

    @property
    def callback_url(self) -> str:
        return f"{self.url}/oauth2/callback"

    @property
    def backchannel_logout_uri(self) -> str:
        """Replica A directly: the IdP calls it server to server, not through the gateway."""
        return f"http://127.0.0.1:{self.portcullis_http_port}/oauth2/backchannel_logout"

    def client_metadata(self) -> dict:
        extra = {}
        if self.with_redis:
            extra = {
                "backchannel_logout_uri": self.backchannel_logout_uri,
                "backchannel_logout_session_required": True,
            }
        return {
            **extra,
            "client_id": CLIENT_ID,
            "client_secret": self.client_secret,
            "redirect_uris": [self.callback_url],
            "post_logout_redirect_uris": [
                f"{self.url}/",
                f"{self.url}/signed-out",
                f"{self.url}/oauth2/signed_out",
            ],
        }

    def start(self) -> "Stack":
        if not portcullis_binary().is_file():
            raise RuntimeError(
                f"portcullis binary not found at {portcullis_binary()}: build it first "
                "(cargo build) or set PORTCULLIS_BIN"
            )
        try:
            self.echo = Echo(self.work_dir)
            self._started.append(self.echo.start())
            self.idp = IdP(self.work_dir, [self.client_metadata(), *self.extra_clients],
                           extra_env=self.idp_env)
            self._started.append(self.idp.start())
            if self.with_redis:
                self.redis = Redis(self.work_dir)
                self._started.append(self.redis.start())
            toml = self.portcullis_toml.replace("{issuer}", self.idp.issuer)
            if self.redis is not None:
                toml = toml.replace("{redis_url}", self.redis.url)
            secret = None
            for i in range(self.replica_count):
                p = Portcullis(self.work_dir, self.idp.issuer, self.client_secret,
                               name="portcullis" if i == 0 else f"portcullis-{i}",
                               sets=self.portcullis_sets, extra_toml=toml,
                               authz_toml=self.authz_toml, cookie_secret=secret,
                               http_port=self.portcullis_http_port if i == 0 else None,
                               oauth2_proxy_cfg=self.portcullis_oauth2_proxy_cfg,
                               extra_env={k: v.replace("{client_secret}", self.client_secret)
                                          for k, v in self.portcullis_env.items()})
                secret = p.cookie_secret
                self.replicas.append(p)
                self._started.append(p.start())
            self.portcullis = self.replicas[0]
            if self.mode == "grpc":
                provider = istio_provider("envoyExtAuthzGrpc")
                self.envoy = Envoy(
                    self.work_dir,
                    upstream_port=self.echo.port,
                    authz_port=self.portcullis.grpc_port,
                    listen_port=self.envoy_port,
                    template=self.envoy_template or GRPC_TEMPLATE,
                    authz_authority=provider["service"],
                    authz_timeout=provider.get("timeout", "600s"),
                    more_authz_ports=[p.grpc_port for p in self.replicas[1:]],
                )
            else:
                self.envoy = Envoy(
                    self.work_dir,
                    upstream_port=self.echo.port,
                    authz_port=self.portcullis.http_port,
                    listen_port=self.envoy_port,
                    more_authz_ports=[p.http_port for p in self.replicas[1:]],
                    path_prefix=self.envoy_path_prefix,
                    **({"template": self.envoy_template} if self.envoy_template else {}),
                )
            self._started.append(self.envoy.start())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for part in reversed(self._started):
            try:
                part.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others anyway
                print(f"stopping {part}: {exc}", file=sys.stderr)
        self._started.clear()
        # A part whose start() failed is not in _started but may still run.
        for part in (self.envoy, *self.replicas, self.portcullis, self.redis, self.idp, self.echo):
            if part is not None and part.service.proc is not None:
                part.stop()
