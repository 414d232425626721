"""Process handling for the end-to-end tests: free loopback ports, child processes with a log
file each, readiness polling, stop by PID.

Every service binds 127.0.0.1 only. A service's log is a file in the run's work directory; the
conftest attaches the part of each log written during a failing test to the pytest report.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional

import requests

E2E_DIR = Path(__file__).resolve().parent
REPO_DIR = E2E_DIR.parent.parent

_handed_out: set[int] = set()


def _child_setup() -> None:  # runs in the child between fork and exec
    os.setsid()  # a Ctrl-C in the terminal reaches pytest (which stops us), not the children
    try:  # Linux: die with pytest even if it is SIGKILLed and cannot run its teardown
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort
        pass


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (never the same one twice per run)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free loopback port found")


class ServiceError(RuntimeError):
    pass


# Services whose logs belong in a failure report: added on start, removed by forget().
_live: list["Service"] = []


def live_services() -> list["Service"]:
    return list(_live)


class Service:
    """One child process with its output in ``<log_dir>/<name>.log``."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_dir: Path,
        env: Optional[dict] = None,
        cwd: Optional[Path] = None,
    ):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_dir) / f"{name}.log"
        self.env = env
        self.cwd = cwd
        self.proc: Optional[subprocess.Popen] = None
        self._log_file = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Service":
        self._log_file = open(self.log_path, "ab", buffering=0)
        self._log_file.write(f"### {' '.join(self.argv)}\n".encode())
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            preexec_fn=_child_setup,
        )
        _live.append(self)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
        """Poll ``probe`` until it returns True; fail early if the process exits."""
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServiceError(
                    f"{self.name} exited with code {self.proc.returncode} before it was ready"
                    f"\n--- {self.log_path} ---\n{self.tail()}"
                )
            try:
                if probe():
                    return
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                last_error = exc
            time.sleep(0.05)
        raise ServiceError(
            f"{self.name} not ready after {timeout}s ({what}; last error: {last_error})"
            f"\n--- {self.log_path} ---\n{self.tail()}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM by PID, then SIGKILL by PID if it is still there after ``timeout``."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        """SIGKILL by PID (a crash, not a shutdown) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def forget(self) -> None:
        if self in _live:
            _live.remove(self)

    # -- logs ------------------------------------------------------------------------------
    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def read_log(self, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def tail(self, max_chars: int = 20000, since: int = 0) -> str:
        text = self.read_log(since)
        if len(text) > max_chars:
            text = "[... cut ...]\n" + text[-max_chars:]
        return text


def http_ok(url: str, expect: int = 200) -> Callable[[], bool]:
    def probe() -> bool:
        return requests.get(url, timeout=1).status_code == expect

    return probe


def tcp_open(port: int) -> Callable[[], bool]:
    def probe() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    return probe
