"""The one JSON sanitiser: numpy scalars/arrays, tuples, paths and NaN made JSON-safe.

``jsonable(x)`` deep-converts a value (NaN and ±inf become None: JSON has no NaN, and a checkpoint
or report that says ``NaN`` is not portable); ``json_default`` is the ``json.dumps(default=...)``
hook for the same types when a writer streams objects as they are.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(x: Any) -> Any:
    """Deep-convert numpy scalars/arrays, tuples and paths into JSON types (NaN -> None)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return [jsonable(v) for v in x.tolist()]
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return f if math.isfinite(f) else None
    if x is None or isinstance(x, (str, int)):
        return x
    return str(x)


def json_default(o: Any) -> Any:
    """``json.dumps(..., default=json_default)``: numpy scalars and arrays as values, the rest as str."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)
