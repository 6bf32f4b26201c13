"""Runs every benchmark in turn (`make bench`); each writes its own report
under bench/reports/ with the command that reproduces it."""

import subprocess
import sys

BENCHMARKS = [
    ["bench.langid"],
    ["bench.emergency"],
    ["bench.content"],
    ["bench.conversations"],
    ["bench.faults"],
    ["bench.memory"],
    ["bench.nlu"],  # trains the stock pipeline for comparison: over an hour on 2 cores
    ["bench.serving"],
]


def main() -> int:
    failed = []
    for args in BENCHMARKS:
        print(f"== {' '.join(args)}", flush=True)
        if subprocess.run([sys.executable, "-m", *args]).returncode != 0:
            failed.append(args[0])
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
