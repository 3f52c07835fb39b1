"""A synthetic platform with known answers (`simulate`) and the scoring of findings and cases
against it (`evaluate`): Daylight's labelled world, not detection."""
