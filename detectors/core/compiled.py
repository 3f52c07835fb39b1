"""The detectors' compiled extensions (`deploy/compile_detectors.py`) must be as new as their
sources: Python imports an extension in preference to the `.py` beside it, so one compiled
before its source changed would run the old code, silently."""

from __future__ import annotations

from pathlib import Path

__all__ = ["StaleExtensionError", "check_fresh", "stale_extensions"]

PACKAGE = Path(__file__).resolve().parent.parent


class StaleExtensionError(ImportError):
    """A compiled detector module is older than its source."""


def stale_extensions(package: Path = PACKAGE) -> list[str]:
    """The sources under `package` changed since their extension was compiled."""
    stale = []
    for extension in package.rglob("*.so"):
        source = extension.with_name(extension.name.split(".", 1)[0] + ".py")
        if source.is_file() and source.stat().st_mtime > extension.stat().st_mtime:
            stale.append(str(source.relative_to(package.parent)))
    return sorted(stale)


def check_fresh(package: Path = PACKAGE) -> None:
    stale = stale_extensions(package)
    if stale:
        raise StaleExtensionError(
            f"{', '.join(stale)} changed after it was compiled: run `make install` to compile "
            "it again, or `python deploy/compile_detectors.py --clean` to run it interpreted"
        )
