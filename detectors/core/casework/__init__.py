"""Cases: findings gathered per suspected identity and per team, scored and explained."""

from __future__ import annotations

from detectors.core.casework.book import CaseBook, FindingFacts, facts_of
from detectors.core.casework.offline import replay_cases
from detectors.core.casework.settings import CaseSettings

__all__ = ["CaseBook", "CaseSettings", "FindingFacts", "facts_of", "replay_cases"]
