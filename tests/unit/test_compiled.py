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


def test_clean_goes_back_to_the_interpreted_modules(tmp_path: Path) -> None:
    """`python deploy/compile_detectors.py --clean`, the way out the error names."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "compile_detectors", Path(__file__).parents[2] / "deploy" / "compile_detectors.py"
    )
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    package = tmp_path / "detectors"
    (package / "core").mkdir(parents=True)
    _module(package, "geo_velocity", source_age_s=10, extension_age_s=60)
    _module(package / "core", "engine", source_age_s=60, extension_age_s=10)

    tool.clean(tmp_path)

    assert tool.extensions(tmp_path) == []
    assert stale_extensions(package) == []
    assert (package / "geo_velocity.py").is_file()  # the sources stay
