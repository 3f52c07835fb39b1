"""Each detector's pydantic models (settings, re-keyed events), apart from its compiled steps."""
