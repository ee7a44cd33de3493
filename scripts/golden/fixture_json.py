"""JSON writing shared by the fixture scripts: float arrays are written with their shortest
round-trip representation, so the Rust side parses exactly the values the references saw."""
import json

import numpy as np


class F32List(list):
    """float32 values; each parses back to the same f32."""

    def __init__(self, array):
        super().__init__(str(v) for v in np.asarray(array, dtype=np.float32).ravel())


class F64List(list):
    """float64 values; each parses back to the same f64."""

    def __init__(self, array):
        super().__init__(repr(float(v)) for v in np.asarray(array, dtype=np.float64).ravel())


def dumps(obj):
    if isinstance(obj, (F32List, F64List)):
        return "[" + ",".join(obj) + "]"
    if isinstance(obj, dict):
        return "{" + ",".join(json.dumps(k) + ":" + dumps(v) for k, v in obj.items()) + "}"
    if isinstance(obj, list):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    return json.dumps(obj)
