"""The machinery every red flag's detector runs on: the detector interface and finding
wording (`base`), the engine that drives stages over a keyed store by event time (`engine`),
shared settings, IP geolocation and ASN look-ups, offline replay on one or many cores, the
cases loader, and the case scoring (`casework`)."""
