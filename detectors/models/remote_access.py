"""The pydantic models of remote_access (`detectors.remote_access`): its settings, kept apart from its
steps, which are compiled (mypyc) and cannot hold pydantic fields or validators."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from detectors.core.settings import DetectorSettings

# Remote-control software. Video-call and chat tools (zoom, teams, slack, meet, webex) share
# screens but do not let someone abroad drive the machine, so they are not listed.
DEFAULT_REMOTE_TOOLS = (
    "anydesk", "teamviewer", "chrome-remote-desktop", "rustdesk", "splashtop", "vnc",
    "realvnc", "tightvnc", "ultravnc", "tigervnc", "pikvm", "parsec", "logmein", "gotomypc",
    "screenconnect", "connectwise-control", "remotepc", "dwservice", "meshcentral",
    "ammyy", "supremo", "nomachine", "radmin", "remote-utilities", "zoho-assist", "jump-desktop",
)  # fmt: skip


class RemoteAccessSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_REMOTE_ACCESS_", frozen=True)

    rdp_ports: tuple[int, ...] = Field(default=(3389,), description="remote-desktop ports")
    remote_tools: tuple[str, ...] = Field(
        default=DEFAULT_REMOTE_TOOLS, description="lower-case remote-control tool names"
    )

    @field_validator("remote_tools")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(tool.strip().lower() for tool in value if tool.strip())
