"""The pydantic models of crypto_payout (`detectors.crypto_payout`): its settings, kept apart from its
steps, which are compiled (mypyc) and cannot hold pydantic fields or validators."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from detectors.core.settings import DetectorSettings

DEFAULT_CRYPTO_INSTITUTIONS = (
    "binance", "coinbase", "kraken", "okx", "bybit", "kucoin", "huobi", "htx", "gate.io",
    "bitget", "mexc", "crypto.com", "bitfinex", "bitstamp", "tether", "trust wallet",
    "metamask", "exodus", "ledger",
)  # fmt: skip


class CryptoPayoutSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_CRYPTO_PAYOUT_", frozen=True)

    dedup_window_hours: float = Field(
        default=720.0, gt=0, description="one finding per account per window (tumbling)"
    )
    new_account_days: float = Field(
        default=30.0, gt=0, description="an account younger than this at the payout is new"
    )
    repeat_min_payouts: int = Field(
        default=2, ge=2, le=100, description="crypto payouts in one window that are repeated"
    )
    crypto_institutions: tuple[str, ...] = Field(
        default=DEFAULT_CRYPTO_INSTITUTIONS,
        description="institution names (lower case, matched as words within) that are crypto",
    )
    name_similarity_min: float = Field(
        default=0.85, gt=0, le=1, description="holder name vs legal name, after folding (0-1)"
    )
    profile_ttl_days: float = Field(
        default=1100.0, gt=0, description="an account with no event this long is forgotten"
    )

    @field_validator("crypto_institutions")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(name.strip().lower() for name in value if name.strip())
