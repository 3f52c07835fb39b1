"""The pydantic models of anonymizer (`detectors.anonymizer`): its settings, kept apart from its
steps, which are compiled (mypyc) and cannot hold pydantic fields or validators."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from detectors.core.settings import DetectorSettings, existing_file

NETWORKS_FILE = Path(__file__).parent.parent / "data" / "anonymizer_networks.json"


class AnonymizerSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_ANONYMIZER_", frozen=True)

    dedup_window_hours: float = Field(
        default=168.0, gt=0, description="one finding per account per window (tumbling)"
    )
    networks_file: Path = Field(
        default=NETWORKS_FILE,
        description="JSON list of hosting and VPN networks (the shipped file's shape)",
    )
    extra_asns: tuple[int, ...] = Field(
        default=(), description="AS numbers reported as hosting besides the list"
    )
    ignore_asns: tuple[int, ...] = Field(
        default=(), description="AS numbers never reported (an employer's own VPN)"
    )
    org_keywords: tuple[str, ...] | None = Field(
        default=None,
        description="lower-case words that mark an AS organisation as hosting (default: the file's)",
    )
    asn_mmdb: Path | None = Field(
        default=None,
        description="MaxMind ASN .mmdb; default: the GeoLite2 ASN data shipped with geoip2fast",
    )
    medium_networks: int = Field(
        default=2, ge=2, description="distinct anonymizing networks in a window for Medium"
    )
    max_networks: int = Field(default=16, ge=2, le=1_000, description="networks kept per window")

    @field_validator("networks_file")
    @classmethod
    def _readable(cls, value: Path) -> Path:
        from detectors.anonymizer import NetworkList  # the loader the detector uses

        NetworkList.load(value)  # raises a ValueError naming the file
        return value

    _exists = field_validator("asn_mmdb")(existing_file)
