"""Run the resilience suite and write its report::

    python -m resilience              # the short suite (minutes), as in CI
    python -m resilience --soak       # plus the long runs (REVTRACE_SOAK_MINUTES, default 30)
    python -m resilience --render-only  # rewrite docs/resilience.md from resilience/results.json

Extra arguments after ``--`` go to pytest (``-- -k load``). The exit status is
pytest's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from resilience.report import iso, load, merge, render

ROOT = Path(__file__).resolve().parents[1]
SUITE = ("tests/resilience", "tests/collector/test_durability.py", "tests/collector/test_bad_input.py")
"""What the suite runs: its own tests and the collector's durability and bad-input tests."""
COMMANDS = {
    "the short suite (make resilience)": "make resilience",
    "the same without make": ".venv/bin/python -m resilience",
    "with the soak runs (about 45 minutes)": ".venv/bin/python -m resilience --soak",
    "a longer soak": "REVTRACE_SOAK_MINUTES=120 .venv/bin/python -m resilience --soak",
    "the report again from the last results": ".venv/bin/python -m resilience --render-only",
}


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def _mem_total_mib() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run (unless ``--render-only``), merge, render; pytest's exit status."""
    parser = argparse.ArgumentParser(prog="python -m resilience", description=__doc__)
    parser.add_argument("--soak", action="store_true", help="also run the long soak tests")
    parser.add_argument("--out", default="resilience/results.json", help="the results file")
    parser.add_argument("--doc", default="docs/resilience.md", help="the report")
    parser.add_argument("--render-only", action="store_true", help="only rewrite the report")
    parser.add_argument("pytest_args", nargs="*", help="after --: more pytest arguments")
    args = parser.parse_args(argv)
    out, doc = ROOT / args.out, ROOT / args.doc
    status = 0
    if args.render_only:
        results = load(out)
        if results is None:
            print(f"no results at {out}: run python -m resilience first", file=sys.stderr)
            return 2
    else:
        with tempfile.TemporaryDirectory() as tmp:
            raw_path = Path(tmp) / "raw.json"
            command = [sys.executable, "-m", "pytest", *SUITE, "-p", "resilience.plugin"]
            command += ["--resilience-raw", str(raw_path), "-p", "no:cacheprovider", "-q", "-rfEx"]
            env = dict(os.environ)
            if args.soak:
                command.append("--soak")
                env["REVTRACE_SOAK"] = "1"
            command += args.pytest_args
            started, load_start = time.time(), os.getloadavg()
            print("$ " + " ".join(command), flush=True)
            status = subprocess.call(command, cwd=ROOT, env=env)
            finished = time.time()
            if not raw_path.exists():
                print("pytest wrote no results", file=sys.stderr)
                return status or 2
            raw = json.loads(raw_path.read_text())
        run = {
            "name": "soak" if args.soak else "short",
            "started": started,
            "started_iso": iso(started),
            "finished": finished,
            "seconds": round(finished - started, 1),
            "commit": _git("rev-parse", "--short", "HEAD"),
            "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "exit_status": status,
            "pytest_args": args.pytest_args,
            "machine": {
                "cpus": os.cpu_count(),
                "mem_total_mib": _mem_total_mib(),
                "load_avg_start": [round(x, 2) for x in load_start],
                "load_avg_end": [round(x, 2) for x in os.getloadavg()],
                "python": platform.python_version(),
            },
        }
        results = merge(load(out), raw, run, ROOT)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1, sort_keys=True, default=str) + "\n")
        print(f"results: {out.relative_to(ROOT)}")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render(results, COMMANDS))
    print(f"report: {doc.relative_to(ROOT)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
