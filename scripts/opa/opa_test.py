#!/usr/bin/env python3
"""Run every Rego test of policies/ in the official OPA engine.

    python3 scripts/opa/opa_test.py [--policies DIR] [-v] [--run SUBSTRING]

Loads every *.rego file under the policies directory (tests included) and
data.json (at the root of `data`, as ketenpoort does), then evaluates every
rule named test_* in every package. A test passes when its rule evaluates to
true; false, undefined or an evaluation error is a failure. Prints one line
per failure, then "N passed, N failed"; exits non-zero on any failure or when
no test was found.

The engine is the opa-golib-python-bindings wheel installed by
scripts/opa/install into .venv-opa/ (run that first). This module also serves
conformance.py: load_engine() and the engine helpers live here.
"""

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPA_LIB = ROOT / ".venv-opa" / "lib"

PACKAGE_RE = re.compile(r"^package\s+([A-Za-z0-9_.]+)\s*$", re.MULTILINE)
TEST_RE = re.compile(r"^(test_[A-Za-z0-9_]+)\b", re.MULTILINE)


def import_opa():
    """Import opa_bindings from .venv-opa/lib (see scripts/opa/install)."""
    if str(OPA_LIB) not in sys.path:
        sys.path.insert(0, str(OPA_LIB))
    try:
        import opa_bindings  # noqa: F401
    except ImportError as err:
        sys.exit(f"opa_bindings not importable ({err}); run scripts/opa/install first")
    return opa_bindings


def policy_files(policies: Path, include_tests: bool = True):
    files = sorted(p for p in policies.rglob("*.rego") if p.is_file())
    if not include_tests:
        files = [p for p in files if not p.name.endswith("_test.rego")]
    return files


def load_engine(policies: Path, include_tests: bool = True):
    """An OpaEngine with every policy module and data.json loaded."""
    opa = import_opa()
    engine = opa.OpaEngine()
    files = policy_files(policies, include_tests)
    if not files:
        sys.exit(f"no .rego files under {policies}")
    for path in files:
        engine.add_policy(str(path.relative_to(policies)), path.read_text(encoding="utf-8"))
    data_file = policies / "data.json"
    if data_file.exists():
        engine.add_data(json.loads(data_file.read_text(encoding="utf-8")))
    return engine


def discover_tests(policies: Path):
    """(package, rule) for every test_* rule, in file order, without repeats."""
    seen = set()
    tests = []
    for path in policy_files(policies):
        source = path.read_text(encoding="utf-8")
        match = PACKAGE_RE.search(source)
        if not match:
            continue
        package = match.group(1)
        for name in TEST_RE.findall(source):
            if (package, name) not in seen:
                seen.add((package, name))
                tests.append((package, name))
    return tests


def run_test(engine, package: str, name: str):
    """None when the test passes, otherwise a short description of why not."""
    opa = import_opa()
    try:
        value = engine.eval_document(f"{package}.{name}")
    except opa.OpaUndefinedError:
        return "undefined"
    except opa.OpaError as err:
        return f"error: {err}"
    if value is True:
        return None
    return f"evaluated to {json.dumps(value)}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", default=str(ROOT / "policies"), help="policy directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every test")
    parser.add_argument("--run", default="", help="only tests whose name contains this")
    args = parser.parse_args(argv)

    policies = Path(args.policies).resolve()
    opa = import_opa()
    try:
        engine = load_engine(policies)
    except opa.OpaError as err:
        print(f"opa: cannot load {policies}: {err}")
        print("opa: 0 passed, 1 failed")
        return 1
    tests = [t for t in discover_tests(policies) if args.run in t[1]]
    passed = failed = 0
    for package, name in tests:
        problem = run_test(engine, package, name)
        if problem is None:
            passed += 1
            if args.verbose:
                print(f"PASS data.{package}.{name}")
        else:
            failed += 1
            print(f"FAIL data.{package}.{name}: {problem}")
    print(f"opa: {passed} passed, {failed} failed")
    if not tests:
        print("no test_* rules found", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
