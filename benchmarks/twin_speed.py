"""Time and peak memory of drawing a large twin cohort (budget: 1M patients, < 10 s, < 2 GB).

    python benchmarks/twin_speed.py [--n 1000000] [--seed 0]

Peak memory is measured two ways: tracemalloc (Python + numpy allocations made by
`generate`, the number the budget is about) and the process's peak resident set
size from getrusage (includes the interpreter and imported libraries).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features import twin  # noqa: E402

TIME_BUDGET_S = 10.0
MEMORY_BUDGET_MB = 2048.0


def measure(n: int, seed: int) -> dict[str, float]:
    """Wall time and tracemalloc peak of one `generate(n, seed)` call."""
    config = twin.load_config()
    tracemalloc.start()
    start = time.perf_counter()
    cohort = twin.generate(n=n, seed=seed, config=config)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"n": len(cohort.data), "seconds": seconds, "peak_traced_mb": peak / 2**20,
            "peak_rss_mb": rss_kb / 1024}


def time_without_tracing(n: int, seed: int) -> float:
    """tracemalloc slows allocation-heavy code, so time once more untraced."""
    config = twin.load_config()
    start = time.perf_counter()
    twin.generate(n=n, seed=seed, config=config)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    untraced = time_without_tracing(args.n, args.seed)
    result = measure(args.n, args.seed)
    ok_time = untraced < TIME_BUDGET_S
    ok_memory = result["peak_traced_mb"] < MEMORY_BUDGET_MB
    print(f"generate(n={result['n']:,}):")
    print(f"  wall time        {untraced:6.2f} s   (with tracemalloc on: {result['seconds']:.2f} s)"
          f"  budget {TIME_BUDGET_S:.0f} s  {'OK' if ok_time else 'OVER'}")
    print(f"  peak traced mem  {result['peak_traced_mb']:6.0f} MB  budget {MEMORY_BUDGET_MB:.0f} MB"
          f"  {'OK' if ok_memory else 'OVER'}")
    print(f"  peak process RSS {result['peak_rss_mb']:6.0f} MB  (interpreter and libraries included)")
    if not (ok_time and ok_memory):
        sys.exit(1)


if __name__ == "__main__":
    main()
