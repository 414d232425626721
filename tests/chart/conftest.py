"""Fixtures for the chart checks; the helpers live in chartlib.py."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from chartlib import NAMESPACE, RELEASE, ROOT, CHART_DIR, Rendered, helm


@pytest.fixture(scope="session")
def chart():
    c = helm.Chart.load(str(CHART_DIR))
    yield c
    c.close()


@pytest.fixture(scope="session")
def render(chart):
    def _render(values: dict, name: str = RELEASE, namespace: str = NAMESPACE) -> Rendered:
        return Rendered(chart.render(copy.deepcopy(values), name=name, namespace=namespace))

    return _render


@pytest.fixture(scope="session")
def portcullis_bin() -> Path | None:
    path = Path(os.environ.get("PORTCULLIS_BIN", ROOT / "target" / "debug" / "portcullis"))
    return path if path.is_file() and os.access(path, os.X_OK) else None
