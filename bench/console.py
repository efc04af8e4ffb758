#!/usr/bin/env python3
"""The privacy officer's console on a large log (issue 15, "Performance").

For each backend (SQLite, PostgreSQL): a release `ketenpoort serve --demo`,
a log grown to --entries entries (default 1,000,000) by wrk driving a mix of
ordinary exchanges (reads by the ZVHD, by the NLA under 20 named users, and
refused reads), then, signed in as an FG through the demo sign-in, the
server-side time of:

- the overview (`/console/`), for the ZVHD's FG (every entry) and a
  municipality's FG (its own organisation's);
- a filtered search page (`/console/zoeken`, recipient + action; and by
  user);
- the access request (`POST /console/inzage`) for a person with 1,000
  disclosures in the log (a signal about them read 1,000 times), and for
  the one person every other read of the log is about (the worst case:
  nearly every entry carries the pseudonym).

Then, the server stopped, `ketenpoort log verify` over the whole log (its
rate), and the size of a full read's leaf: bench/run takes the 1M-entry
verify rate and entry size of its report from here (one log per backend,
grown once).

Server-side means the `latency_ms` the server itself logs for the request
("request completed", from the first byte in to the last byte out of the
handler); the client's own wall time over loopback is reported beside it.
Each page is requested --samples times in a row after 3 warm-ups; the p95
is of those. Targets: overview and search < 300 ms, access request < 1 s.

Bounded: the log grows in wrk runs of at most 60 s, for at most
--grow-minutes in all; every sample loop is counted. Writes
bench/results/console.md (and console.json).

Usage: python3 bench/console.py [--entries N] [--samples N] [--backends sqlite,postgres]
Needs a release binary (cargo build --release; $CARGO_TARGET_DIR is
honoured, $KP_CONSOLE_BENCH_BIN names another binary), wrk, curl, and for
PostgreSQL psql and $KETENPOORT_BENCH_DATABASE_URL (default
postgres://postgres@127.0.0.1:5432/test).
"""
import argparse
import base64
import http.client
import json
import os
import platform
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
BIN = Path(os.environ.get("KP_CONSOLE_BENCH_BIN", TARGET / "release" / "ketenpoort"))
PG_URL = os.environ.get("KETENPOORT_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
START = time.perf_counter()
USERS = 20


def log(msg):
    print(f"[console bench {time.perf_counter() - START:6.0f} s] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def psql(sql):
    u = urllib.parse.urlparse(PG_URL)
    run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", u.hostname or "127.0.0.1", "-p", str(u.port or 5432),
         "-U", u.username or "postgres", "-d", (u.path or "/test").lstrip("/"), "-c", sql])


class Server:
    """A release ketenpoort in demo mode on an ephemeral port."""

    def __init__(self, backend):
        self.dir = Path(tempfile.mkdtemp(prefix="kp-console-bench-"))
        self.schema = None
        args = [str(BIN), "serve", "--demo", "--data-dir", str(self.dir), "--listen", "127.0.0.1:0"]
        self.db_url = None
        if backend == "postgres":
            self.schema = "kpconsole_" + uuid.uuid4().hex[:12]
            psql(f"CREATE SCHEMA {self.schema}")
            opts = urllib.parse.quote(f"-c search_path={self.schema}")
            self.db_url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options={opts}"
            args += ["--database-url", self.db_url]
        env = dict(os.environ)
        env.update({
            "KETENPOORT_HTTP__RATE_LIMIT_PER_SECOND": "100000000",
            "KETENPOORT_HTTP__RATE_LIMIT_BURST": "100000000",
            "KETENPOORT_POLICY__PATH": str(ROOT / "policies"),
            "KETENPOORT_ADMIN__LISTEN": "127.0.0.1:0",
            "KETENPOORT_PHENOMENA__AUTO_PUBLISH": "false",
            "KETENPOORT_LOGGING__LEVEL": "info",
        })
        self.log_path = self.dir / "server.log"
        self.stderr = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        deadline = time.time() + 60
        self.base = None
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.match(r"ketenpoort listening on (https://\S+)", line.strip())
            if m:
                self.base = m.group(1)
                break
        if not self.base:
            raise SystemExit(f"server did not start; see {self.log_path}")
        u = urllib.parse.urlparse(self.base)
        self.host, self.port = u.hostname, u.port
        self.ctx = ssl.create_default_context(cafile=str(self.dir / "tls" / "ca.pem"))

    def token(self, partner, role):
        return (self.dir / "demo" / "tokens" / f"{partner}.{role}.jwt").read_text().strip()

    def cli(self, *args):
        cmd = [str(BIN), *args, "--data-dir", str(self.dir)]
        if self.db_url:
            cmd += ["--database-url", self.db_url]
        return run(cmd).stdout.strip()

    def conn(self):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=120)

    def request(self, conn, method, path, body=None, headers=None):
        h = dict(headers or {})
        if body is not None and "Content-Type" not in h:
            h["Content-Type"] = "application/json"
        # A kept connection the server closed meanwhile (its idle or
        # header-read bound ran out while the bench grew the log) is
        # opened again, once.
        for attempt in (1, 2):
            try:
                conn.request(method, path, body=body, headers=h)
                res = conn.getresponse()
                return res.status, dict(res.getheaders()), res.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if attempt == 2:
                    raise

    def stop(self):
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if not self.stderr.closed:
            self.stderr.close()

    def cleanup(self):
        if self.schema:
            psql(f"DROP SCHEMA {self.schema} CASCADE")
        shutil.rmtree(self.dir, ignore_errors=True)


def api(s, conn, method, path, token, purpose, body=None):
    h = {"Authorization": f"Bearer {token}"}
    if purpose:
        h["Ketenpoort-Purpose"] = purpose
    return s.request(conn, method, path, body=body, headers=h)


def log_size(s, conn):
    status, _, body = api(s, conn, "POST", "/v1/log/checkpoint", s.token("zvhd", "fg"), None)
    assert status == 200, body
    return int(body.decode().splitlines()[1])


# The person of the 1,000 reads: a BSN of their own (passes the 11-proef).
OTHER_BSN = "111222333"  # not the example signal's 123456782
OTHER_READS = 1000


def other_person(s, conn, muni, kr):
    """A signal about another person, referred to the NLA and read
    OTHER_READS times by it: a person with OTHER_READS disclosures."""
    doc = json.loads((ROOT / "examples" / "signal.json").read_text())
    doc["victims"][0]["bsn"] = OTHER_BSN
    status, _, body = api(s, conn, "POST", "/v1/signals", muni, "signalering", json.dumps(doc).encode())
    assert status == 201, body
    sid = json.loads(body)["id"]
    status, _, body = api(s, conn, "POST", f"/v1/signals/{sid}/referrals", kr, "opsporing",
                          json.dumps({"recipient": "nla", "purpose": "opsporing"}).encode())
    assert status in (200, 201), body
    nla = s.token("nla", "inspecteur")
    for _ in range(OTHER_READS):
        status, _, body = api(s, conn, "GET", f"/v1/signals/{sid}", nla, "opsporing")
        assert status == 200, body


def grow(s, entries, grow_minutes, work):
    """Grows the log to `entries` with a mix of exchanges; bounded in time."""
    conn = s.conn()
    signal_body = (ROOT / "examples" / "signal.json").read_bytes()
    muni = s.token("emmen", "aandachtfunctionaris-sociaal")
    other_person(s, conn, muni, s.token("zvhd", "ketenregisseur"))
    ids = []
    for _ in range(4):
        status, _, body = api(s, conn, "POST", "/v1/signals", muni, "signalering", signal_body)
        assert status == 201, body
        ids.append(json.loads(body)["id"])
    kr = s.token("zvhd", "ketenregisseur")
    for sid in ids:
        status, _, body = api(s, conn, "POST", f"/v1/signals/{sid}/referrals", kr, "opsporing",
                              json.dumps({"recipient": "nla", "purpose": "opsporing"}).encode())
        assert status in (200, 201), body
    users = [s.cli("token", "issue", "--partner", "nla", "--role", "inspecteur", "--user", f"inspecteur-{i}",
                   "--ttl", "4h") for i in range(USERS)]
    # One request in ten by each NLA user (together 60 %), 30 % ZVHD reads,
    # 10 % refused reads (a municipality with a purpose that does not fit).
    script = work / "mix.lua"
    script.write_text(
        "ids = {" + ",".join(f'"{i}"' for i in ids) + "}\n"
        "users = {" + ",".join(f'"{t}"' for t in users) + "}\n"
        f'kr = "{kr}"\nmuni = "{muni}"\nn = 0\n'
        "request = function()\n"
        "  n = n + 1\n"
        "  local id = ids[(n % #ids) + 1]\n"
        "  local k = n % 10\n"
        "  local tok, purpose\n"
        "  if k < 6 then tok = users[(math.floor(n / 10) % #users) + 1]; purpose = \"opsporing\"\n"
        "  elseif k < 9 then tok = kr; purpose = \"drieluik\"\n"
        "  else tok = muni; purpose = \"opsporing\" end\n"
        "  return wrk.format(\"GET\", \"/v1/signals/\" .. id, "
        "{[\"Authorization\"] = \"Bearer \" .. tok, [\"Ketenpoort-Purpose\"] = purpose})\n"
        "end\n")
    deadline = time.time() + grow_minutes * 60
    have = log_size(s, conn)
    while have < entries and time.time() < deadline:
        seconds = int(max(5, min(60, (entries - have) / 2500 + 1)))
        run(["wrk", "-t2", "-c32", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), s.base])
        have = log_size(s, conn)
        log(f"log at {have} entries")
    conn.close()
    return have


def cbor_item_sizes(leaf):
    """The byte length of each item of a v3 leaf's top-level array (its
    items: unsigned integers, byte and text strings, null, arrays of those)."""
    def head(at):
        major, info = leaf[at] >> 5, leaf[at] & 31
        extra = {24: 1, 25: 2, 26: 4, 27: 8}.get(info, 0)
        arg = int.from_bytes(leaf[at + 1:at + 1 + extra], "big") if extra else info
        return major, arg, at + 1 + extra

    def item(at):
        major, arg, at = head(at)
        if major in (2, 3):
            return at + arg
        if major == 4:
            for _ in range(arg):
                at = item(at)
        return at
    major, count, at = head(0)
    assert major == 4, "a v3 leaf is one array"
    sizes = []
    for _ in range(count):
        end = item(at)
        sizes.append(end - at)
        at = end
    return sizes


def full_read_leaf(s, conn, size):
    """The leaf of the full-record read with the most fields among the last
    200 entries (as the FG's API serves it), its projection's size and where
    its bytes go."""
    fg = s.token("zvhd", "fg")
    status, _, body = api(s, conn, "GET", f"/v1/log/entries?start={max(0, size - 200)}&end={size}", fg,
                          "verantwoording")
    assert status == 200, body[:300]
    reads = [e for e in json.loads(body)["entries"] if e.get("entry", {}).get("action") == "read"]
    if not reads:
        return None
    e = max(reads, key=lambda e: len(e["entry"]["fields"]))
    leaf = base64.b64decode(e["leaf"])
    x = e["entry"]
    projection = json.dumps({"policyRevision": x["policyRevision"], "legalBasis": x["legalBasis"],
                             "decision": x["decision"], "fields": x["fields"]},
                            separators=(",", ":"), ensure_ascii=False).encode()

    if x["v"] >= 3:
        # v3: one CBOR array (README, "The disclosure log"); the bytes of each item.
        n = cbor_item_sizes(leaf)
        parts = {
            "the subjects' pseudonyms": n[12],
            "resources": n[11],
            "request id, trace reference, user reference and projection name": n[3] + n[4] + n[7] + n[13],
            "time": n[2],
        }
        rest = "version, index, partner, role, recipient, action, purpose, outcome and CBOR heads"
    else:
        doc = json.loads(leaf)

        def size(v):
            return len(json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode())
        parts = {
            "the subjects' pseudonyms": size(doc.get("subjects", [])),
            "resources": size(doc.get("resources", [])),
            "request id, trace reference, user reference and projection name": sum(
                size(v) for v in [doc.get("requestId"), doc.get("traceId"), (doc.get("actor") or {}).get("user"),
                                  doc.get("projection")]),
            "time": size(doc.get("time")),
        }
        rest = "keys, partner, role, action, purpose, outcome and punctuation"
    parts[rest] = len(leaf) - sum(parts.values())
    return {"leaf_bytes": len(leaf), "fields": len(x["fields"]), "projection_bytes": len(projection),
            "leaf_version": x["v"], "parts": parts}


def latencies_since(s, offset):
    """`latency_ms` of the requests the server logged after byte `offset`."""
    out = []
    with open(s.log_path, "rb") as f:
        f.seek(offset)
        for line in f.read().decode("utf-8", "replace").splitlines():
            if "request completed" not in line:
                continue
            m = re.search(r'latency_ms["=: ]+([\d.]+)', line)
            r = re.search(r'route["=: ]+"?([^",}\s]+)', line)
            if m:
                out.append((r.group(1) if r else "?", float(m.group(1))))
    return out


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def console_session(s, conn, partner):
    status, headers, body = s.request(conn, "GET", "/console/aanmelden")
    cookie = [v for k, v in headers.items() if k.lower() == "set-cookie"][0].split(";")[0]
    csrf = re.search(r'name="csrf" value="([^"]+)"', body.decode()).group(1)
    status, headers, _ = s.request(conn, "POST", "/console/aanmelden/demo",
                                   body=urllib.parse.urlencode({"partner": partner, "csrf": csrf}),
                                   headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303, status
    session = [v for k, v in headers.items() if k.lower() == "set-cookie"][0].split(";")[0]
    status, _, body = s.request(conn, "GET", "/console/inzage", headers={"Cookie": session})
    csrf = re.search(r'name="csrf" value="([^"]+)"', body.decode()).group(1)
    return session, csrf


def measure(s, conn, name, method, path, samples, cookie, body=None, expect=200):
    headers = {"Cookie": cookie}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    for _ in range(3):
        status, _, page = s.request(conn, method, path, body=body, headers=headers)
        assert status == expect, (name, status, page[:500])
    time.sleep(0.3)
    offset = s.log_path.stat().st_size
    wall = []
    for _ in range(samples):
        t0 = time.perf_counter()
        status, _, page = s.request(conn, method, path, body=body, headers=headers)
        wall.append((time.perf_counter() - t0) * 1e3)
        assert status == expect, (name, status)
    time.sleep(0.5)  # the log line is written after the answer
    server = [ms for route, ms in latencies_since(s, offset) if "console" in route or route == "unmatched"]
    server = server[-samples:] if len(server) >= samples else server
    res = {"page": name, "samples": samples,
           "server_p50_ms": pct(server, 0.5), "server_p95_ms": pct(server, 0.95),
           "server_max_ms": max(server) if server else None, "server_samples": len(server),
           "wall_p50_ms": pct(wall, 0.5), "wall_p95_ms": pct(wall, 0.95)}
    log(f"{name}: server p95 {fmt(res['server_p95_ms'])} ms (wall p95 {fmt(res['wall_p95_ms'])} ms)")
    return res


def fmt(v):
    return "–" if v is None else f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def bench_backend(backend, args):
    log(f"{backend}: starting")
    s = Server(backend)
    work = Path(tempfile.mkdtemp(prefix="kp-console-work-"))
    try:
        t0 = time.perf_counter()
        size = grow(s, args.entries, args.grow_minutes, work)
        grow_s = time.perf_counter() - t0
        conn = s.conn()
        entry = full_read_leaf(s, conn, size)
        bsn = json.loads((ROOT / "examples" / "signal.json").read_text())["victims"][0].get("bsn")
        user_ref = s.cli("log", "user-ref", "--partner", "nla", "--user", "inspecteur-3")
        rows = []
        for partner in ["zvhd", "emmen"]:
            cookie, csrf = console_session(s, conn, partner)
            rows.append(measure(s, conn, f"overview ({partner} FG)", "GET", "/console/", args.samples, cookie))
            if partner == "zvhd":
                rows.append(measure(s, conn, "search: recipient=nla, action=read (zvhd FG)", "GET",
                                    "/console/zoeken?recipient=nla&action=read", args.samples, cookie))
                q = urllib.parse.urlencode({"partner": "nla", "user": user_ref})
                rows.append(measure(s, conn, "search: one user (zvhd FG)", "GET", f"/console/zoeken?{q}",
                                    args.samples, cookie))
                rows.append(measure(s, conn, "search: outcome=denied (zvhd FG)", "GET",
                                    "/console/zoeken?outcome=denied", args.samples, cookie))
            body = urllib.parse.urlencode({"csrf": csrf, "bsn": OTHER_BSN})
            rows.append(measure(s, conn, f"access request: {OTHER_READS:,} disclosures ({partner} FG)", "POST",
                                "/console/inzage", args.samples, cookie, body=body))
            if bsn:
                body = urllib.parse.urlencode({"csrf": csrf, "bsn": bsn})
                rows.append(measure(s, conn, f"access request: the person of nearly every entry ({partner} FG)",
                                    "POST", "/console/inzage", min(5, args.samples), cookie, body=body))
        # The control page (no target in issue 15): its rules read the
        # entries of the window (at most 200,000), so it is measured apart,
        # with few samples, and a page that does not answer is reported.
        cookie, _ = console_session(s, conn, "zvhd")
        try:
            rows.append(measure(s, conn, "control (zvhd FG, no target)", "GET", "/console/controle",
                                min(5, args.samples), cookie))
        except AssertionError as e:
            log(f"control page: {e}")
            rows.append({"page": "control (zvhd FG, no target)", "samples": 0, "failed": str(e)[:200],
                         "server_p50_ms": None, "server_p95_ms": None, "server_max_ms": None,
                         "wall_p50_ms": None, "wall_p95_ms": None})
        conn.close()
        # `log verify` over the whole log, the server stopped.
        s.stop()
        cmd = [str(BIN), "log", "verify", "--data-dir", str(s.dir)]
        if s.db_url:
            cmd += ["--database-url", s.db_url]
        t0 = time.perf_counter()
        out = run(cmd).stdout
        took = time.perf_counter() - t0
        n = int(re.search(r"log verified: (\d+) entries", out).group(1))
        verify = {"entries": n, "seconds": took, "entries_per_s": n / took}
        log(f"log verify: {n:,} entries in {took:.1f} s ({n / took:,.0f}/s)")
        return {"backend": backend, "entries": size, "grow_seconds": grow_s, "pages": rows,
                "verify": verify, "entry": entry}
    finally:
        s.stop()
        s.cleanup()
        shutil.rmtree(work, ignore_errors=True)


TARGETS = {"overview": 300, "search": 300, "access request": 1000}


def target_of(page):
    for k, v in TARGETS.items():
        if page.startswith(k):
            return v
    return None


def markdown(results, args):
    lines = [
        "# The console on a large log",
        "",
        f"`python3 bench/console.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.machine()}, {os.cpu_count()} cores; load average (1 min) {args.load[0]:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end"
        + (" (other work ran beside it: the absolute numbers are upper bounds, noisy ones)."
           if max(args.load[0], os.getloadavg()[0]) > 1.5 else " (besides the bench's own server and load generator, nothing ran)."),
        "",
        "The log was grown through the API by wrk (reads by the ZVHD, by the NLA under 20 named users, and "
        "refused reads of a municipality), all within the current week: every entry is inside the overview's "
        "12 weeks and the control window, the worst case for both. The overview reads the weekly counts kept "
        "at append (migration 0020), not the entries. One person has 1,000 disclosures (a signal about them "
        "read 1,000 times by the NLA); every other read is about one other person, whose access request "
        "therefore groups nearly every entry of the log (the worst case; the report is complete, grouped by "
        "recipient, purpose and fields).",
        "",
        "Server-side: the `latency_ms` the server logs for the request; wall: the client's time over "
        f"loopback TLS on a kept-alive connection. {args.samples} requests per page after 3 warm-ups.",
        "",
    ]
    for r in results:
        lines += [f"## {r['backend']}: {r['entries']:,} entries (grown in {r['grow_seconds'] / 60:.0f} min)", "",
                  "| page | target | server p50 | server p95 | server max | wall p95 | met |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for p in r["pages"]:
            t = target_of(p["page"])
            met = "–" if t is None or p["server_p95_ms"] is None else ("yes" if p["server_p95_ms"] < t else "**no**")
            if p.get("failed"):
                lines.append(f"| {p['page']} | – | did not answer: {p['failed']} | | | | |")
                continue
            lines.append(f"| {p['page']} | {t or '–'} ms | {fmt(p['server_p50_ms'])} ms | "
                         f"{fmt(p['server_p95_ms'])} ms | {fmt(p['server_max_ms'])} ms | "
                         f"{fmt(p['wall_p95_ms'])} ms | {met} |")
        v, e = r.get("verify"), r.get("entry")
        if v:
            lines.append(f"`log verify` over this log, the server stopped: {v['entries']:,} entries in "
                         f"{v['seconds']:.1f} s, {v['entries_per_s']:,.0f} entries/s.")
        if e:
            lines.append(f"The leaf of a full read (its projection names {e['fields']} fields): {e['leaf_bytes']} "
                         f"bytes; the projection, stored once: {e['projection_bytes']} bytes.")
        lines.append("")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--grow-minutes", type=float, default=45)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--out", default=str(RESULTS / "console.md"))
    args = ap.parse_args()
    if not BIN.exists():
        raise SystemExit(f"{BIN} is missing: cargo build --release first")
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.load = os.getloadavg()
    results = [bench_backend(b, args) for b in args.backends.split(",") if b]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(results, args))
    out.with_suffix(".json").write_text(json.dumps({"started": started, "backends": results}, indent=2) + "\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
