"""R as the oracle: run an R script on data frames and read back named numbers.

    values = run_r(
        "fit <- coxph(Surv(time, event) ~ x, data = d, ties = 'efron')\\n"
        "emit('coef', coef(fit)); emit('se', sqrt(diag(vcov(fit))))",
        d=frame)
    values["coef"]   # numpy array, full double precision

Every frame passed by keyword is written as CSV and read in R under that name (`d` above) with
`read.csv`; `emit(name, values)` prints one line per value with 17 significant digits, so the
comparison is to the digit. `library(survival)` is loaded; ask for more with `packages=`.

Tests that use it carry `@needs_r("survival", ...)`: without `Rscript` or a package they skip
with the reason locally, and fail in CI (`CI` set), where `.ci/run` installs Debian's R.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PRELUDE = """
suppressPackageStartupMessages({{ {libraries} }})
emit <- function(name, values) {{
  values <- as.numeric(values)
  for (v in values) cat(name, "\\t", formatC(v, digits = 17, format = "g"), "\\n", sep = "")
}}
"""


@functools.cache
def _r_packages() -> tuple[frozenset[str], str | None]:
    """The installed R packages (one quick Rscript call, nothing loaded), or why there are none."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return frozenset(), "Rscript not found (Debian: r-base-core)"
    out = subprocess.run([rscript, "--vanilla", "-e", "cat(.packages(all.available = TRUE))"],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        return frozenset(), f"Rscript failed: {out.stderr.strip()[:300]}"
    return frozenset(out.stdout.split()), None


def missing_r(packages: tuple[str, ...]) -> str | None:
    """Why R cannot serve as the oracle here (no Rscript, or a package missing), or None."""
    installed, reason = _r_packages()
    if reason:
        return reason
    absent = [p for p in packages if p not in installed]
    return f"R package(s) missing: {', '.join(absent)} (Debian: r-cran-*)" if absent else None


def needs_r(*packages: str):
    """Skip (locally) or fail (in CI) a test when R or one of `packages` is missing."""
    wanted = tuple(dict.fromkeys(("survival", *packages)))
    reason = missing_r(wanted)
    if reason and os.environ.get("CI"):
        def fail(*_args, **_kwargs):
            pytest.fail(f"R oracle required in CI: {reason}")
        return lambda test: functools.wraps(test)(fail)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def run_r(script: str, packages: tuple[str, ...] = (), timeout: float = 300,
          **frames: pd.DataFrame) -> dict[str, np.ndarray]:
    """Run `script` with each frame loaded under its keyword name; {name: emitted values}."""
    libraries = "; ".join(f"library({p})" for p in dict.fromkeys(("survival", *packages)))
    with tempfile.TemporaryDirectory(prefix="r-oracle-") as tmp:
        loads = []
        for name, frame in frames.items():
            path = Path(tmp) / f"{name}.csv"
            frame.to_csv(path, index=False, float_format="%.17g")
            loads.append(f"{name} <- read.csv({str(path)!r}, stringsAsFactors = FALSE)")
        source = Path(tmp) / "script.R"
        source.write_text(PRELUDE.format(libraries=libraries) + "\n".join(loads) + "\n" + script)
        out = subprocess.run(["Rscript", "--vanilla", str(source)], capture_output=True, text=True,
                             timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"R failed ({out.returncode}):\n{out.stderr[-3000:]}")
    values: dict[str, list[float]] = {}
    for line in out.stdout.splitlines():
        name, sep, number = line.partition("\t")
        if sep:
            values.setdefault(name, []).append(float(number))
    return {name: np.array(v) for name, v in values.items()}
