"""Every detector setting is in the README's settings table, under its environment variable."""

from __future__ import annotations

import importlib

import pytest

from detectors import DETECTOR_IDS
from detectors.core.settings import DetectorSettings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("detector_id", DETECTOR_IDS)
def test_every_detector_setting_is_documented(detector_id: str) -> None:
    module = importlib.import_module(f"detectors.{detector_id}")
    classes = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, DetectorSettings)
        and value is not DetectorSettings
    ]  # fmt: skip
    assert classes, detector_id
    prefix = f"DAYLIGHT_{detector_id.upper()}_"
    names = [
        field.validation_alias if isinstance(field.validation_alias, str)
        else f"{prefix}{name.upper()}"
        for settings in classes
        for name, field in settings.model_fields.items()
        if name != "dedup_window_hours"
    ]  # fmt: skip
    missing = [name for name in names if f"`{name}`" not in README]
    assert not missing, missing
