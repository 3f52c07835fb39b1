"""The names of every topic Daylight reads or writes, in one place."""

from __future__ import annotations

__all__ = [
    "ACCOUNTS",
    "ALERTS",
    "CASES",
    "DLQ",
    "FEEDBACK",
    "INPUT_TOPICS",
    "LOGINS",
    "MARKETPLACE",
    "PAYOUTS",
    "SESSIONS",
]

LOGINS = "platform.logins"
SESSIONS = "platform.sessions"
PAYOUTS = "platform.payouts"
ACCOUNTS = "platform.accounts"
MARKETPLACE = "platform.marketplace"
ALERTS = "daylight.alerts"
DLQ = "daylight.dlq"
CASES = "daylight.cases"
FEEDBACK = "daylight.feedback"

INPUT_TOPICS: tuple[str, ...] = (LOGINS, SESSIONS, PAYOUTS, ACCOUNTS, MARKETPLACE)
