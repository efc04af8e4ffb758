#!/usr/bin/env python3
"""Witnessing and incremental verification (issue 19), on SQLite and PostgreSQL:

1. `log verify --since FILE` after 10k new entries on a 1M-entry log
   (target: under 1 s), with the number of entries it read;
2. the time from signing a checkpoint to its two cosignatures by the demo's
   two local witnesses (`serve --demo` runs them in-process).

Usage: bench/witness.py [--entries N] [--new N] [--backend sqlite|postgres|both]
(after `cargo build --release`; needs wrk, as bench/run). Prints JSON.
"""
import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the Server, wrk and CLI helpers of bench/run)


def grow_to(s, sid, entries):
    """Grows the log to at least `entries` with signal reads (one entry each)."""
    kr = s.token("zvhd", "ketenregisseur")
    while True:
        have = s.log_size()
        if have >= entries:
            return have
        bench.wrk(f"{s.base}/v1/signals/{sid}", max(2, min(60, (entries - have) // 4000 + 1)),
                  [f"Authorization: Bearer {kr}", "Ketenpoort-Purpose: drieluik"])


def cosign_latency(s, rounds=5):
    """Seconds from POST /v1/log/checkpoint to a note with two cosignatures."""
    fg = s.token("zvhd", "fg")
    auth = ["-H", f"Authorization: Bearer {fg}"]
    out = []
    for _ in range(rounds):
        # One more entry, so the checkpoint is new.
        s.curl("/v1/log/search?partner=zvhd&limit=1", *auth, "-H", "Ketenpoort-Purpose: verantwoording")
        t0 = time.perf_counter()
        size = s.curl("/v1/log/checkpoint", "-X", "POST", *auth).splitlines()[1]
        while True:
            note = s.curl("/v1/log/checkpoint", *auth)
            lines = note.splitlines()
            if lines[1] == size and sum(1 for x in lines if x.startswith("\u2014 witness-")) >= 2:
                out.append(time.perf_counter() - t0)
                break
            if time.perf_counter() - t0 > 30:
                raise SystemExit("no two cosignatures within 30 s")
            time.sleep(0.01)
    out.sort()
    return {"median_s": out[len(out) // 2], "max_s": out[-1], "rounds": rounds}


def measure(backend, entries, new):
    s = bench.Server(backend)
    try:
        sid = bench.submit_signal(s)
        bench.log(f"{backend}: growing the log to {entries}")
        grow_to(s, sid, entries)
        kept = s.dir / "verified.note"
        full = bench.run(s.cli("log", "verify", "--since", str(kept))).stdout
        old = int(kept.read_text().splitlines()[1])
        bench.log(f"{backend}: {new} more entries after the verified checkpoint of {old}")
        grow_to(s, sid, old + new)
        latency = cosign_latency(s)
        t0 = time.perf_counter()
        out = bench.run(s.cli("log", "verify", "--since", str(kept))).stdout
        took = time.perf_counter() - t0
        read = int(re.search(r"read (\d+) entries", out).group(1))
        return {
            "log_entries": int(re.search(r"log verified: (\d+) entries", out).group(1)),
            "full_read": int(re.search(r"read (\d+) entries", full).group(1)),
            "incremental_read": read,
            "incremental_seconds": took,
            "cosignatures_2_of_2": latency,
        }
    finally:
        s.stop()
        s.cleanup()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--new", type=int, default=10_000)
    p.add_argument("--backend", default="both", choices=["sqlite", "postgres", "both"])
    a = p.parse_args()
    backends = ["sqlite", "postgres"] if a.backend == "both" else [a.backend]
    print(json.dumps({b: measure(b, a.entries, a.new) for b in backends}, indent=2))


if __name__ == "__main__":
    main()
