"""Where speclm keeps derived files (dequantised models, built templates, SDSS downloads).

One rule for every layer: $SPECLM_CACHE, else $XDG_CACHE_HOME/speclm, else ~/.cache/speclm.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("SPECLM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "speclm"
    )
    return Path(root)
