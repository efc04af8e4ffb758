#!/usr/bin/env python3
"""Decision latency of the official OPA engine (Go, via the PyPI bridge) on
the same policies and corpus that `ketenpoort policy eval --timing` uses.

Prints JSON: the latency of a decision through the bridge, the latency of a
trivial rule through the bridge with the same input (the bridge's own cost:
ctypes, JSON in and out, the Go call), and the difference (OPA's evaluation
alone, estimated per input as decision minus trivial).
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts" / "opa"))
from opa_test import import_opa, load_engine  # noqa: E402


def pct(values, p):
    values = sorted(values)
    return values[round((len(values) - 1) * p)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    opa = import_opa()
    engine = load_engine(ROOT / "policies", include_tests=False)
    engine.add_policy("bench_noop.rego", "package bench\n\nnoop := true\n")
    cases = [json.loads(line) for line in Path(args.corpus).read_text().splitlines() if line.strip()]
    full, trivial, alone = [], [], []
    for _ in range(args.rounds):
        for case in cases:
            path = case["entrypoint"].removeprefix("data.")
            t0 = time.perf_counter()
            try:
                engine.eval_document(path, case["input"])
            except opa.OpaError:
                pass
            t1 = time.perf_counter()
            engine.eval_document("bench.noop", case["input"])
            t2 = time.perf_counter()
            full.append((t1 - t0) * 1e6)
            trivial.append((t2 - t1) * 1e6)
            alone.append(max(0.0, (t1 - t0) - (t2 - t1)) * 1e6)
    out = {
        "count": len(full),
        "p50_us": pct(full, 0.5),
        "p99_us": pct(full, 0.99),
        "mean_us": statistics.fmean(full),
        "bridge_p50_us": pct(trivial, 0.5),
        "bridge_p99_us": pct(trivial, 0.99),
        "eval_only_p50_us": pct(alone, 0.5),
        "eval_only_p99_us": pct(alone, 0.99),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
