"""Envoy bootstrap for bench/envoy.sh, made from the e2e templates tests/e2e/envoy_http.yaml
(the Istio-translated `envoyExtAuthzHttp` provider) and config/envoy/envoy-grpc.yaml
(`envoyExtAuthzGrpc`), so the bench runs what the tests run.

    python3 bench/envoy_config.py MODE ADMIN_PORT LISTEN_PORT UPSTREAM_PORT [AUTHZ_PORT] > envoy.yaml

MODE: `authz` keeps the RBAC shadow filter and HTTP ext_authz (pointing at AUTHZ_PORT),
`grpc` is the gRPC template (ext_authz grpc_service at AUTHZ_PORT), `none` removes both (the same Envoy without ext_authz). The stdout access log is dropped in both: it
is not part of what ext_authz costs.
"""

import pathlib
import string
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "tests/e2e/envoy_http.yaml"
GRPC_TEMPLATE = ROOT / "config/envoy/envoy-grpc.yaml"


def cut(text: str, start: str, end: str) -> str:
    """Remove from the line holding `start` up to (not including) the line holding `end`."""
    i = text.index(start)
    i = text.rindex("\n", 0, i) + 1
    j = text.index(end, i)
    j = text.rindex("\n", 0, j) + 1
    return text[:i] + text[j:]


def main() -> None:
    mode, admin, listen, upstream = sys.argv[1:5]
    authz = sys.argv[5] if len(sys.argv) > 5 else "1"
    template = GRPC_TEMPLATE if mode == "grpc" else TEMPLATE
    text = string.Template(template.read_text()).substitute(
        AUTHZ_AUTHORITY="portcullis.auth.svc.cluster.local",
        ADMIN_PORT=admin,
        LISTEN_PORT=listen,
        UPSTREAM_PORT=upstream,
        AUTHZ_PORT=authz,
        PATH_PREFIX="",
        AUTHZ_TIMEOUT="10s",
    )
    text = cut(text, "access_log:", "route_config:")
    if mode == "none":
        text = cut(text, "- name: envoy.filters.http.rbac", "- name: envoy.filters.http.router")
    elif mode not in ("authz", "grpc"):
        sys.exit(f"unknown mode {mode!r}")
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
