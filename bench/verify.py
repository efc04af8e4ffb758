#!/usr/bin/env python3
"""Entry size and `log verify` throughput on a log of N signal reads.

Grows a fresh log (demo server, release build) with full-record signal
reads (GET /v1/signals/{id} by the ZVHD ketenregisseur, purpose drieluik,
as bench.py's verify measure does), reports the size of such an entry's
leaf and of the projection it names, stops the server and times one
`ketenpoort log verify` over the whole log. On SQLite and/or PostgreSQL
(KETENPOORT_BENCH_DATABASE_URL). Writes bench/results/verify.json and
prints a markdown table.

Usage: python3 bench/verify.py [--entries N] [--backend sqlite|postgres|both]
                              [--bin target/release/ketenpoort]
"""
import argparse
import base64
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
from bench import RESULTS, Server, log, run, submit_signal, wrk  # noqa: E402



def leaf_sizes(s, size):
    """Leaf bytes of the last signal reads (as the FG's API serves them)."""
    fg = s.token("zvhd", "fg")
    page = json.loads(s.curl(f"/v1/log/entries?start={max(0, size - 50)}&end={size}",
                             "-H", f"Authorization: Bearer {fg}", "-H", "Ketenpoort-Purpose: verantwoording"))
    reads = [e for e in page["entries"] if e.get("entry", {}).get("action") == "read"]
    if not reads:
        return None
    e = reads[-1]
    leaf = base64.b64decode(e["leaf"])
    fields = e["entry"]["fields"]
    projection = json.dumps({"policyRevision": e["entry"]["policyRevision"], "legalBasis": e["entry"]["legalBasis"],
                             "decision": e["entry"]["decision"], "fields": fields},
                            separators=(",", ":"), ensure_ascii=False).encode()
    return {"leaf_bytes": len(leaf), "fields": len(fields), "projection_bytes": len(projection),
            "leaf_version": e["entry"]["v"]}


def measure(backend, entries):
    s = Server(backend)
    try:
        sid = submit_signal(s)
        kr = s.token("zvhd", "ketenregisseur")
        t0 = time.perf_counter()
        while True:
            have = s.log_size()
            if have >= entries:
                break
            wrk(f"{s.base}/v1/signals/{sid}", max(2, min(60, (entries - have) // 4000 + 1)),
                [f"Authorization: Bearer {kr}", "Ketenpoort-Purpose: drieluik"])
            log(f"{backend}: {s.log_size():,} entries")
        grown = time.perf_counter() - t0
        sizes = leaf_sizes(s, s.log_size())
        s.stop()
        t0 = time.perf_counter()
        out = run(s.cli("log", "verify")).stdout
        took = time.perf_counter() - t0
        n = int(re.search(r"log verified: (\d+) entries", out).group(1))
        return {"entries": n, "seconds": took, "entries_per_s": n / took, "grow_seconds": grown, "entry": sizes}
    finally:
        try:
            s.stop()
        except Exception:
            pass
        s.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--bin", help="the binary (default target/release/ketenpoort)")
    args = ap.parse_args()
    if args.bin:
        bench.BIN = Path(args.bin).resolve()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    result = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "backends": {}}
    for b in backends:
        log(f"{b}: growing the log to {args.entries:,} entries")
        result["backends"][b] = measure(b, args.entries)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "verify.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| backend | entries | `log verify` | entries/s | leaf of a full read | its projection (stored once) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for b, r in result["backends"].items():
        e = r["entry"] or {}
        print(f"| {b} | {r['entries']:,} | {r['seconds']:.1f} s | {r['entries_per_s']:,.0f} | "
              f"{e.get('leaf_bytes', '?')} bytes (v{e.get('leaf_version', '?')}, {e.get('fields', '?')} fields) | "
              f"{e.get('projection_bytes', '?')} bytes |")


if __name__ == "__main__":
    main()
