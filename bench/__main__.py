"""`make bench`: every benchmark in turn, each printing its own table and reproduce command."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["bench.ingest", "bench.mechanics"]


def main() -> int:
    for name in BENCHMARKS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            print(f"== {name}: not available in this checkout", flush=True)
            continue
        print(f"== {name}", flush=True)
        module.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
