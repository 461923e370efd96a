"""Credentials never logged: a URL's password (tracking server, Optuna storage, database) is
replaced by ``***`` in whatever the benchmarks log."""

import re

# scheme://user:password@host -> scheme://user:***@host (any URL inside a longer text too)
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s/:@]*:)(?P<password>[^\s/@]+)(?=@)")
MASK = "***"


def mask_credentials(value):
    """``value`` with every URL password masked, item by item in lists, tuples and dicts."""
    if isinstance(value, str):
        return _URL_PASSWORD.sub(lambda m: m["head"] + MASK, value)
    if isinstance(value, dict):
        return {mask_credentials(k): mask_credentials(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_credentials(v) for v in value)
    return value
