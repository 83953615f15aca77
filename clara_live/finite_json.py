"""JSON text with no NaN or infinity in it: each becomes null.

`json.dumps` writes NaN, Infinity and -Infinity by default, which no JSON reader but Python's
accepts; an undefined figure (a ROC AUC over one class, the loss of an empty window) is `null`.
"""

from __future__ import annotations

import json
import math


def dumps(value: object, **kwargs: object) -> str:
    """json.dumps(value, **kwargs) with every non-finite float (in dicts, lists and tuples) as null."""
    return json.dumps(_finite(value), allow_nan=False, **kwargs)


def _finite(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
