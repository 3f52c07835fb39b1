"""The compiled detector modules (deploy/compile_detectors.py): a stale one is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from detectors.core.compiled import StaleExtensionError, check_fresh, stale_extensions


def _module(package: Path, name: str, source_age_s: float, extension_age_s: float) -> None:
    now = 1_800_000_000
    source = package / f"{name}.py"
    extension = package / f"{name}.cpython-311-x86_64-linux-gnu.so"
    source.write_text("X = 1\n")
    extension.write_bytes(b"\0")
    os.utime(source, (now - source_age_s, now - source_age_s))
    os.utime(extension, (now - extension_age_s, now - extension_age_s))


def test_a_source_changed_after_its_extension_was_compiled_is_refused_at_import(
    tmp_path: Path,
) -> None:
    package = tmp_path / "detectors"
    (package / "core").mkdir(parents=True)
    _module(package, "geo_velocity", source_age_s=10, extension_age_s=60)  # edited since
    _module(package / "core", "engine", source_age_s=60, extension_age_s=10)  # compiled since
    (package / "native__mypyc.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\0")  # no source

    assert stale_extensions(package) == ["detectors/geo_velocity.py"]
    with pytest.raises(StaleExtensionError, match=r"geo_velocity\.py changed .*make install"):
        check_fresh(package)


def test_the_checkout_s_extensions_are_fresh() -> None:
    """What `make install` compiled is as new as the sources the tests run (a stale one
    would have stopped the import of `detectors` already)."""
    assert stale_extensions() == []
