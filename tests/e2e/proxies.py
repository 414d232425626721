"""nginx and Caddy as the forward-auth gateway, running the example configs of config/nginx/ and
config/caddy/ as they are: only addresses and ports are replaced (and Caddy gets
`default_bind 127.0.0.1` so it listens on loopback only). Each runs as an unprivileged-port
loopback process with its own prefix and temp directories, never the system service.

    client --> nginx (auth_request) or Caddy (forward_auth) --> echo upstream
                 |
                 +--> portcullis (/oauth2/auth, /oauth2/forward, login routes) --> oidc-provider
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sys
from pathlib import Path
from typing import Optional

from harness import REPO_DIR, Service, free_port, tcp_open
from parts import CLIENT_ID, Echo, IdP, Portcullis, portcullis_binary
from policy import AUTHZ_RULES

NGINX_EXAMPLE = REPO_DIR / "config" / "nginx" / "portcullis.conf"
CADDY_EXAMPLE = REPO_DIR / "config" / "caddy" / "Caddyfile"



def _replace_once(text: str, old: str, new: str, what: str) -> str:
    if text.count(old) != 1:
        raise AssertionError(f"{what}: expected exactly one {old!r} in the example config")
    return text.replace(old, new)


def render_nginx_example(portcullis_port: int, app_port: int, listen_port: int) -> str:
    text = NGINX_EXAMPLE.read_text()
    text = _replace_once(text, "server 127.0.0.1:4180;", f"server 127.0.0.1:{portcullis_port};", "portcullis")
    text = _replace_once(text, "server 127.0.0.1:8080;", f"server 127.0.0.1:{app_port};", "app")
    return _replace_once(text, "listen 80;", f"listen 127.0.0.1:{listen_port};", "listen")


def render_caddy_example(portcullis_port: int, app_port: int, listen_port: int) -> str:
    text = CADDY_EXAMPLE.read_text()
    text = _replace_once(text, "reverse_proxy 127.0.0.1:4180 {", f"reverse_proxy 127.0.0.1:{portcullis_port} {{", "portcullis")
    text = _replace_once(text, "reverse_proxy 127.0.0.1:8080", f"reverse_proxy 127.0.0.1:{app_port}", "app")
    text = _replace_once(text, "http://app.example.com {", f"http://127.0.0.1:{listen_port} {{", "site")
    return _replace_once(text, "\tadmin off\n", "\tadmin off\n\tdefault_bind 127.0.0.1\n", "bind")


class Nginx:
    def __init__(self, work_dir: Path, portcullis_port: int, app_port: int, listen_port: int):
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.access(binary, os.X_OK):
            raise RuntimeError("nginx not found: run scripts/install-test-deps.sh (Debian package nginx)")
        self.port = listen_port
        self.prefix = Path(work_dir) / "nginx"
        for d in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi", "logs"):
            (self.prefix / d).mkdir(parents=True, exist_ok=True)
        (self.prefix / "portcullis.conf").write_text(
            render_nginx_example(portcullis_port, app_port, listen_port)
        )
        p = self.prefix
        (p / "nginx.conf").write_text(f"""\
daemon off;
master_process off;
worker_processes 1;
pid {p}/nginx.pid;
error_log stderr info;
events {{ worker_connections 256; }}
http {{
    access_log /dev/stdout;
    client_body_temp_path {p}/tmp/body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    include {p}/portcullis.conf;
}}
""")
        self.service = Service(
            "nginx", [binary, "-p", p, "-c", p / "nginx.conf", "-e", "stderr"], work_dir
        )

    def start(self) -> "Nginx":
        self.service.start()
        self.service.wait_ready(tcp_open(self.port), timeout=10, what=f"tcp {self.port}")
        return self

    def stop(self) -> None:
        self.service.stop()
        self.service.forget()


class Caddy:
    def __init__(self, work_dir: Path, portcullis_port: int, app_port: int, listen_port: int):
        binary = shutil.which("caddy")
        if not binary:
            raise RuntimeError("caddy not found: run scripts/install-test-deps.sh (Debian package caddy)")
        self.port = listen_port
        home = Path(work_dir) / "caddy"
        home.mkdir(parents=True, exist_ok=True)
        caddyfile = home / "Caddyfile"
        caddyfile.write_text(render_caddy_example(portcullis_port, app_port, listen_port))
        env = dict(os.environ, HOME=str(home), XDG_DATA_HOME=str(home / "data"),
                   XDG_CONFIG_HOME=str(home / "config"))
        self.service = Service(
            "caddy", [binary, "run", "--config", caddyfile, "--adapter", "caddyfile"], work_dir, env=env
        )

    def start(self) -> "Caddy":
        self.service.start()
        self.service.wait_ready(tcp_open(self.port), timeout=15, what=f"tcp {self.port}")
        return self

    def stop(self) -> None:
        self.service.stop()
        self.service.forget()


class ForwardStack:
    """IdP + echo upstream + portcullis + nginx or Caddy running the example config."""

    def __init__(self, work_dir: Path, proxy: str, idp_env: Optional[dict] = None,
                 portcullis_sets: tuple = ()):
        if proxy not in ("nginx", "caddy"):
            raise ValueError(proxy)
        self.proxy_kind = proxy
        self.idp_env = idp_env or {}
        self.portcullis_sets = ("server.trusted_proxies=127.0.0.1/32", *portcullis_sets)
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.client_secret = secrets.token_urlsafe(24)
        self.port = free_port()
        self.idp: Optional[IdP] = None
        self.echo: Optional[Echo] = None
        self.portcullis: Optional[Portcullis] = None
        self.proxy = None
        self._started: list = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def callback_url(self) -> str:
        return f"{self.url}/oauth2/callback"

    def start(self) -> "ForwardStack":
        if not portcullis_binary().is_file():
            raise RuntimeError(f"portcullis binary not found at {portcullis_binary()}: cargo build first")
        try:
            self.echo = Echo(self.work_dir)
            self._started.append(self.echo.start())
            self.idp = IdP(self.work_dir, [{
                "client_id": CLIENT_ID,
                "client_secret": self.client_secret,
                "redirect_uris": [self.callback_url],
                "post_logout_redirect_uris": [f"{self.url}/oauth2/signed_out"],
            }], extra_env=self.idp_env)
            self._started.append(self.idp.start())
            self.portcullis = Portcullis(
                self.work_dir, self.idp.issuer, self.client_secret,
                sets=self.portcullis_sets,
                authz_toml=AUTHZ_RULES,
            )
            self._started.append(self.portcullis.start())
            kind = Nginx if self.proxy_kind == "nginx" else Caddy
            self.proxy = kind(self.work_dir, self.portcullis.http_port, self.echo.port, self.port)
            self._started.append(self.proxy.start())
        except BaseException:
            self.stop()
            raise
        return self

    def restart_portcullis(self, *sets: str) -> None:
        """Replace portcullis by one on the same port with the same cookie secret (sessions stay
        valid) and these extra `--set`s, e.g. a stricter policy."""
        old = self.portcullis
        old.stop()
        self._started.remove(old)
        self.portcullis = Portcullis(
            self.work_dir, self.idp.issuer, self.client_secret,
            name="portcullis-restarted",
            sets=(*self.portcullis_sets, *sets),
            authz_toml=AUTHZ_RULES, http_port=old.http_port, cookie_secret=old.cookie_secret,
        )
        self._started.insert(len(self._started) - 1, self.portcullis.start())

    def stop(self) -> None:
        for part in reversed(self._started):
            try:
                part.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others anyway
                print(f"stopping {part}: {exc}", file=sys.stderr)
        self._started.clear()
        for part in (self.proxy, self.portcullis, self.idp, self.echo):
            if part is not None and part.service.proc is not None:
                part.stop()
