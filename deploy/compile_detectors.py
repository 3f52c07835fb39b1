"""Compile the detectors' steps and the stage engine to C with mypyc, in place.

`make install` runs it after the package is installed (editable): each module listed below gets
a C extension next to its source, which Python imports instead of the `.py`. The code is the
same typed Python (mypy checks it as it is); compiled, an event costs a quarter less in the
stages (docs/PERFORMANCE.md). Without the extensions Daylight runs the same code interpreted,
with the same findings.

An extension is only as new as its compilation: `detectors` refuses to import one older than
its source (run `make install` again). `--clean` removes them.

Only modules without pydantic fields or validators can be compiled (mypyc checks class
attributes' types and hides functions from pydantic's introspection): each detector keeps its
settings and re-keyed events in `detectors/models/`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The modules compiled: the engine and what a stage's step calls per event.
MODULES = (
    "detectors/core/engine.py",
    "detectors/core/base.py",
    "detectors/core/geo.py",
    "detectors/core/profile.py",
    "detectors/core/replay.py",
    "detectors/anonymizer.py",
    "detectors/bid_pattern.py",
    "detectors/continuous_session.py",
    "detectors/crypto_payout.py",
    "detectors/geo_velocity.py",
    "detectors/payout_holder_change.py",
    "detectors/payout_routing.py",
    "detectors/rating_burst.py",
    "detectors/remote_access.py",
    "detectors/self_dealing.py",
    "detectors/shared_ip.py",
    "detectors/shipping_mismatch.py",
    "detectors/template_reuse.py",
    "detectors/unverified_activity.py",
    "detectors/working_hours.py",
)

#: One shared library for them all (calls between the modules stay native), inside the
#: `detectors` package so that the editable install's finder imports it.
GROUP = "detectors.native"


def extensions(root: Path = ROOT) -> list[Path]:
    """The compiled modules' extensions (and their shared library) now in the tree."""
    return sorted((root / "detectors").rglob("*.so"))


def clean(root: Path = ROOT) -> None:
    """Back to the interpreted modules."""
    for path in extensions(root):
        path.unlink()


def compile_all() -> None:
    from mypyc.build import mypycify
    from setuptools import setup

    os.chdir(ROOT)
    clean()  # a module no longer listed must not keep an old extension
    setup(
        name="daylight-compiled",
        ext_modules=mypycify(list(MODULES), group_name=GROUP, opt_level="3"),
        script_args=["-q", "build_ext", "--inplace", "--build-temp", "build/mypyc"],
    )
    # An extension unchanged since an earlier build is copied with its old time, which
    # `check_fresh` would take for stale: each is as new as this compilation.
    for path in extensions():
        os.utime(path)


if __name__ == "__main__":
    if sys.argv[1:] == ["--clean"]:
        clean()
    else:
        compile_all()
