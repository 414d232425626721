#!/usr/bin/env python3
"""Soak: mixed traffic at N connections against a real portcullis (release build) with a real
OpenID Provider, for a bounded time, sampling portcullis's RSS and open file descriptors every
10 s. Fails (exit 1) on any 5xx from portcullis, any unexpected allow, any other wrong answer,
or memory that keeps growing.

    cargo build --release
    .venv/bin/python bench/soak/soak.py                  # 600 s, 50 connections
    .venv/bin/python bench/soak/soak.py --seconds 60     # a short run

Traffic (each connection picks a kind per request, round robin over the mix):
  session   a signed-in browser's cookie                  -> 200 with x-auth-request-user
  bearer    a JWT access token from the IdP               -> 200 with the service's identity
  browser   no credentials, Accept: text/html             -> 302 to the IdP
  garbage   random / truncated / tampered session cookies -> 302, never 200
  spoofed   x-auth-request-user / x-forwarded-* / forged Bearer, no credentials -> 302/401, never 200

Requests go straight to portcullis's check listener (as Envoy would send them), so the figures
are portcullis's own, not Envoy's. Prints a Markdown table (the one in bench/README.md).
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import requests  # noqa: E402

from browser import Browser  # noqa: E402
from parts import Stack  # noqa: E402

API = "urn:portcullis:e2e-api"
SERVICE_ID = "soak-service"
SERVICE_SECRET = base64.urlsafe_b64encode(os.urandom(18)).decode()
BEARER_TOML = f"""
[bearer]
enabled = true

[[bearer.issuers]]
issuer = "{{issuer}}"
audiences = ["{API}"]
"""
KINDS = ["session", "bearer", "browser", "garbage", "spoofed"]


def rss_and_fds(pid: int) -> tuple[int, int]:
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])  # kB
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--sample", type=int, default=10)
    args = ap.parse_args()
    os.environ.setdefault("PORTCULLIS_BIN", str(REPO / "target" / "release" / "portcullis"))
    os.environ.setdefault("E2E_PORTCULLIS_LOG", "warn")

    work = Path(tempfile.mkdtemp(prefix="portcullis-soak-"))
    stack = Stack(
        work, name="soak",
        extra_clients=[{
            "client_id": SERVICE_ID, "client_secret": SERVICE_SECRET,
            "grant_types": ["client_credentials"], "response_types": [], "redirect_uris": [],
        }],
        idp_env={"IDP_API_RESOURCE": API},
        portcullis_toml=BEARER_TOML,
    )
    stack.start()
    try:
        return run(stack, args)
    finally:
        stack.stop()


def login_cookie(stack: Stack) -> dict[str, str]:
    b = Browser()
    r = b.get(stack.url + "/soak")
    assert r.status_code == 302, r.status_code
    cb = b.authorize_at_idp(r.headers["location"], stack.callback_url, login="alice")
    r = b.get(cb)
    assert r.status_code == 302, (r.status_code, r.text[:200])
    return {c.name: c.value for c in b.session.cookies
            if c.name.startswith("_portcullis") and "_csrf_" not in c.name}


def bearer_token(stack: Stack) -> str:
    r = requests.post(
        stack.idp.discovery["token_endpoint"],
        data={"grant_type": "client_credentials", "resource": API, "scope": ""},
        auth=(SERVICE_ID, SERVICE_SECRET), timeout=10,
    )
    r.raise_for_status()
    return r.json()["access_token"]


def run(stack: Stack, args) -> int:
    pc = stack.portcullis
    pid = pc.service.pid
    cookies = login_cookie(stack)
    token = bearer_token(stack)
    session_cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    sealed = next(iter(cookies.values()))
    host = stack.url.split("//")[1]
    target = pc.url

    counts = {k: 0 for k in KINDS}
    wrong: list[str] = []
    latencies: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def garbage_cookie(rng: random.Random) -> str:
        choice = rng.randrange(4)
        if choice == 0:
            v = base64.urlsafe_b64encode(rng.randbytes(rng.randrange(1, 300))).decode().rstrip("=")
        elif choice == 1:
            v = sealed[: rng.randrange(len(sealed))]
        elif choice == 2:
            i = rng.randrange(len(sealed))
            v = sealed[:i] + ("A" if sealed[i] != "A" else "B") + sealed[i + 1:]
        else:
            v = "x" * rng.randrange(1, 5000)
        return f"_portcullis={v}"

    def worker(n: int):
        rng = random.Random(n)
        s = requests.Session()
        i = n
        while not stop.is_set():
            kind = KINDS[i % len(KINDS)]
            i += 1
            headers = {"Host": host}
            path = "/app/page"
            if kind == "session":
                headers.update(Accept="text/html", Cookie=session_cookie)
            elif kind == "bearer":
                headers.update(Accept="application/json", Authorization=f"Bearer {token}")
                path = "/api/things"
            elif kind == "browser":
                headers.update(Accept="text/html")
            elif kind == "garbage":
                headers.update(Accept="text/html", Cookie=garbage_cookie(rng))
            else:
                headers.update({
                    "Accept": "text/html", "x-auth-request-user": "admin",
                    "x-auth-request-email": "admin@example.com", "x-forwarded-user": "admin",
                    "x-forwarded-email": "admin@example.com",
                })
                if rng.random() < 0.5:
                    headers["Authorization"] = "Bearer " + token[:-4] + "AAAA"
            t0 = time.perf_counter()
            try:
                r = s.get(target + path, headers=headers, timeout=10, allow_redirects=False)
            except requests.RequestException as exc:
                with lock:
                    wrong.append(f"{kind}: {exc}")
                continue
            took = time.perf_counter() - t0
            user = r.headers.get("x-auth-request-user", "")
            if kind == "session":
                ok = r.status_code == 200 and user == "alice"
            elif kind == "bearer":
                ok = r.status_code == 200 and user == SERVICE_ID
            elif kind in ("browser", "garbage"):
                ok = r.status_code == 302
            else:
                ok = r.status_code in (302, 401) and r.status_code != 200
            with lock:
                counts[kind] += 1
                if r.status_code >= 500:
                    nonlocal_5xx[0] += 1
                if not ok:
                    wrong.append(f"{kind}: {r.status_code} user={user!r}")
                if len(latencies) < 200_000:
                    latencies.append(took)

    nonlocal_5xx = [0]
    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(args.connections)]
    samples: list[tuple[int, int, int, int]] = []  # (t, rss kB, fds, total requests)
    t_start = time.monotonic()
    samples.append((0, *rss_and_fds(pid), 0))
    for t in threads:
        t.start()
    next_sample = args.sample
    while time.monotonic() - t_start < args.seconds:
        time.sleep(0.25)
        now = time.monotonic() - t_start
        if now >= next_sample:
            with lock:
                total = sum(counts.values())
            samples.append((int(round(now)), *rss_and_fds(pid), total))
            next_sample += args.sample
    stop.set()
    for t in threads:
        t.join(15)
    elapsed = time.monotonic() - t_start
    five_xx = nonlocal_5xx[0]
    total = sum(counts.values())

    print(f"\n## Soak: {args.seconds} s, {args.connections} connections, {total} requests "
          f"({total / elapsed:.0f}/s)\n")
    print("| t (s) | RSS (MiB) | open fds | requests so far |")
    print("|---:|---:|---:|---:|")
    for t, rss, fds, n in samples:
        print(f"| {t} | {rss / 1024:.1f} | {fds} | {n} |")
    print()
    print("| traffic | requests | wrong answers |")
    print("|---|---:|---:|")
    for k in KINDS:
        print(f"| {k} | {counts[k]} | {sum(1 for w in wrong if w.startswith(k + ':'))} |")
    lat = sorted(latencies)
    if lat:
        print(f"\nlatency (client side, Python): p50 {statistics.median(lat) * 1000:.1f} ms, "
              f"p99 {lat[int(len(lat) * 0.99) - 1] * 1000:.1f} ms")
    print(f"5xx from portcullis: {five_xx}; wrong answers: {len(wrong)}")
    if wrong:
        print("first wrong answers:", wrong[:10])
    # Flat memory: the last third of the run may not sit much above the first third's peak
    # (allocator warm-up and caches fill early).
    rss = [s[1] for s in samples[1:]]
    grew = False
    if len(rss) >= 6:
        third = len(rss) // 3
        early, late = max(rss[:third]), max(rss[-third:])
        grew = late > early * 1.10 + 4096
        print(f"RSS early peak {early / 1024:.1f} MiB, late peak {late / 1024:.1f} MiB: "
              f"{'GROWING' if grew else 'flat'}")
    fds = [s[2] for s in samples[1:]]
    if fds:
        print(f"fds min {min(fds)} max {max(fds)}")
    return 1 if (five_xx or wrong or grew) else 0


if __name__ == "__main__":
    sys.exit(main())
