"""Run the benchmarks: ``python -m bench [--quick] [--only NAME] [--out DIR]``."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path

import bench
from bench import Result


def _modules(only: list[str]) -> list[str]:
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    if only:
        names = [n for n in names if any(o in n for o in only)]
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", action="append", default=[], help="run modules whose name contains this")
    parser.add_argument("--out", default="bench/results", help="where results.json is written")
    args = parser.parse_args(argv)
    results: list[Result] = []
    for name in _modules(args.only):
        print(f"== {name}", flush=True)
        started = time.monotonic()
        module = importlib.import_module(f"bench.{name}")
        for result in module.run(quick=args.quick):
            results.append(result)
            ratio = f"  ratio {result.ratio:.3f} vs {result.baseline_name}" if result.ratio is not None else ""
            verdict = "" if result.passed is None else ("  PASS" if result.passed else "  MISS")
            print(f"   {result.name}: {result.value:,.2f} {result.unit}{ratio}  goal {result.goal}{verdict}")
        print(f"   ({time.monotonic() - started:.1f} s)", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps([r.as_dict() for r in results], indent=2))
    print(f"results written to {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
