"""The default experiment configs (YAML), shipped inside the package.

This folder is both where users find and copy the configs in a checkout and package data
of the installed distribution, so `pip install rechallenge` works outside the checkout:
defaults are located with `importlib.resources`, never relative to a source file.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def default_path(name: str) -> Path:
    """The shipped config `name` (e.g. "paper.yaml", "cohorts/default.yaml")."""
    # wheels install unzipped, so the resource is a real file on disk
    return Path(str(files(__name__).joinpath(name)))
