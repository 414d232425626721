"""Scripted browser logins for bench/login.sh (row 7) and bench/peer.sh (row 9).

A login is what a browser without any cookie does against a relying party (portcullis, or
Apache with mod_auth_openidc) in front of the e2e OpenID Provider (tests/e2e/idp, oidc-provider):

  1. start     GET <url> with a browser Accept header at the relying party -> 302 to the IdP
  2. idp       the IdP's authorize endpoint, its login form and its consent form (the
               devInteractions pages, filled by tests/e2e/browser.py) -> 303 to the callback
  3. callback  GET <callback>?code&state&iss at the relying party: code exchange (and userinfo)
               at the IdP, the session cookie set -> 302 back to <url>
  4. check     GET <url> with the session cookie -> 200 (the first allowed check)

Every login is a fresh browser (empty cookie jar, new connections), so the IdP shows both
forms each time.

  login.py cookie --url U --callback C --cookie-prefix P
      one login; prints the Cookie header value the browser sent on step 4, only the
      cookies whose names start with P (the relying party's session)
  login.py run --url U --callback C --n N --concurrency 1 10 --pid portcullis=PID --pid idp=PID
      N logins at each concurrency (threads), after a warm-up; a Markdown table with logins/s,
      p50/p99 wall time, CPU per login of every named process and of this client (utime +
      stime of all threads from /proc before and after); then N more logins one at a time
      with each named server's CPU read around every step (/proc/PID/task/*/schedstat:
      nanoseconds, live threads only); then p50/p99 of each step at each concurrency
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urljoin

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from browser import Browser  # noqa: E402  (the e2e tests' scripted browser)

TICK = os.sysconf("SC_CLK_TCK")
STEPS = ("start", "idp", "callback", "check")


def login(url: str, callback: str, user: str = "alice",
          probe: Optional[Callable[[], dict]] = None) -> tuple[dict, Browser, object]:
    """One full login; returns the seconds spent in each step, the browser and the final answer.
    With `probe` (a function returning CPU seconds per server), also the CPU each server spent
    in each step, as t["cpu"][step][server]."""
    b = Browser()
    marks = []

    def mark():
        marks.append((time.perf_counter(), probe() if probe else None))

    mark()
    r = b.get(url)
    if r.status_code != 302:
        raise RuntimeError(f"start: {url} answered {r.status_code}, not 302\n{b.trace()}")
    auth = urljoin(r.url, r.headers["location"])
    mark()
    cb = b.authorize_at_idp(auth, callback, login=user)
    mark()
    r = b.get(cb)
    if r.status_code not in (302, 303):
        raise RuntimeError(f"callback answered {r.status_code}: {r.text[:300]}\n{b.trace()}")
    back = urljoin(r.url, r.headers["location"])
    mark()
    r = b.get(back)
    mark()
    if r.status_code != 200:
        raise RuntimeError(f"first check answered {r.status_code}, not 200\n{b.trace()}")
    t: dict = {s: marks[i + 1][0] - marks[i][0] for i, s in enumerate(STEPS)}
    t["total"] = marks[-1][0] - marks[0][0]
    if probe:
        t["cpu"] = {
            s: {n: marks[i + 1][1][n] - marks[i][1][n] for n in marks[i][1]}
            for i, s in enumerate(STEPS)
        }
    return t, b, r


def proc_ticks(pid: int) -> int:
    """utime + stime of a process (all threads) and of its children, live and reaped."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    total = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    try:
        kids = set()
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids.update(int(k) for k in f.read().split())
        for k in kids:
            total += proc_ticks(k)
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


def sched_seconds(pid: int) -> float:
    """CPU time of a process's live threads in nanosecond resolution (/proc/PID/task/*/schedstat,
    first field), for per-step figures where clock ticks are too coarse."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass
    return total / 1e9


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(p / 100 * len(v)) - 1))]


def ms(s: float) -> str:
    return f"{s * 1000:.1f} ms"


def us(s: float) -> str:
    return f"{s * 1e6:,.0f} µs".replace(",", " ")


def run(args) -> None:
    pids = dict(kv.split("=", 1) for kv in args.pid)
    pids = {name: int(pid) for name, pid in pids.items()}
    for _ in range(args.warmup):
        login(args.url, args.callback)
    names = list(pids) + ["client (this script)"]
    print(f"load before: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    print()
    print("| concurrency | logins | logins/s | p50 | p99 | "
          + " | ".join(f"{n} CPU/login" for n in names) + " |")
    print("|---|---|---|---|---|" + "---|" * len(names))
    step_rows = []
    for conc in args.concurrency:
        before = {n: proc_ticks(p) for n, p in pids.items()}
        me = self_cpu()
        times: list[dict] = []
        lock = threading.Lock()

        def one(_):
            t, _b, _r = login(args.url, args.callback)
            with lock:
                times.append(t)

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=conc) as pool:
            list(pool.map(one, range(args.n)))
        wall = time.perf_counter() - start
        cpu = {n: (proc_ticks(p) - before[n]) / TICK for n, p in pids.items()}
        cpu["client (this script)"] = self_cpu() - me
        totals = [t["total"] for t in times]
        print(f"| {conc} | {len(times)} | {len(times) / wall:.1f} | {ms(pct(totals, 50))} | "
              f"{ms(pct(totals, 99))} | "
              + " | ".join(ms(cpu[n] / len(times)) for n in names) + " |")
        step_rows.append((conc, times))
    if pids:
        # One at a time again, with the servers' CPU read around every step.
        probe = lambda: {n: sched_seconds(p) for n, p in pids.items()}  # noqa: E731
        per_step = [login(args.url, args.callback, probe=probe)[0] for _ in range(args.n)]
        print()
        print(f"Per step, one login at a time ({len(per_step)} logins; server CPU from "
              "/proc/PID/task/*/schedstat, mean per login):")
        print()
        print("| step | p50 | p99 | " + " | ".join(f"{n} CPU" for n in pids) + " |")
        print("|---|---|---|" + "---|" * len(pids))
        for s in STEPS:
            wall = [t[s] for t in per_step]
            cpu = [us(statistics.fmean(t["cpu"][s][n] for t in per_step)) for n in pids]
            print(f"| {s} | {ms(pct(wall, 50))} | {ms(pct(wall, 99))} | " + " | ".join(cpu) + " |")
        tot = [us(statistics.fmean(sum(t["cpu"][s][n] for s in STEPS) for t in per_step)) for n in pids]
        print(f"| whole login | {ms(pct([t['total'] for t in per_step], 50))} | "
              f"{ms(pct([t['total'] for t in per_step], 99))} | " + " | ".join(tot) + " |")
    print()
    print("Wall time per step at each concurrency:")
    print()
    print("| concurrency | " + " | ".join(f"{s} p50 / p99" for s in STEPS) + " |")
    print("|---|" + "---|" * len(STEPS))
    for conc, times in step_rows:
        cells = []
        for s in STEPS:
            v = [t[s] for t in times]
            cells.append(f"{ms(pct(v, 50))} / {ms(pct(v, 99))}")
        print(f"| {conc} | " + " | ".join(cells) + " |")


def cookie(args) -> None:
    _t, _b, r = login(args.url, args.callback)
    sent = r.request.headers.get("Cookie", "")
    mine = [c.strip() for c in sent.split(";") if c.strip().startswith(args.cookie_prefix)]
    if not mine:
        raise SystemExit(f"no cookie starting with {args.cookie_prefix!r} in: {sent[:200]}")
    print("; ".join(mine))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("cookie", "run"):
        p = sub.add_parser(name)
        p.add_argument("--url", required=True, help="a protected URL at the relying party")
        p.add_argument("--callback", required=True, help="the relying party's redirect URI")
        if name == "cookie":
            p.add_argument("--cookie-prefix", required=True)
        else:
            p.add_argument("--n", type=int, default=200, help="logins per concurrency level")
            p.add_argument("--concurrency", type=int, nargs="+", default=[1, 10])
            p.add_argument("--warmup", type=int, default=10)
            p.add_argument("--pid", action="append", default=[], metavar="NAME=PID",
                           help="a server whose CPU per login is reported (repeatable)")
    args = ap.parse_args()
    (run if args.cmd == "run" else cookie)(args)


if __name__ == "__main__":
    main()
