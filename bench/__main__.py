"""Run the benchmarks: ``python -m bench [--quick] [--only NAME] [--out DIR]``.

Each ``bench_*`` module runs in its own process: chDB allows one data directory
per process, and a benchmark should not inherit another's memory.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import subprocess
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
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        module = importlib.import_module(f"bench.{args.child}")
        measured = module.run(quick=args.quick)
        print("RESULTS " + json.dumps([r.as_dict() for r in measured]), flush=True)
        return 0
    results: list[Result] = []
    for name in _modules(args.only):
        print(f"== {name}", flush=True)
        started = time.monotonic()
        command = [sys.executable, "-m", "bench", "--child", name] + (["--quick"] if args.quick else [])
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        found: list[Result] = []
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("RESULTS "):
                for item in json.loads(line[len("RESULTS ") :]):
                    item.pop("ratio", None)
                    found.append(Result(**item))
            else:
                print("   " + line.rstrip(), flush=True)
        if process.wait() != 0:
            print(f"   {name} FAILED (exit {process.returncode})", flush=True)
        for result in found:
            results.append(result)
            ratio = (
                f"  ratio {result.ratio:.3f} vs {result.baseline_name}" if result.ratio is not None else ""
            )
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
