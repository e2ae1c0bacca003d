"""What a test cell's record looks like on the wire: JSON, never pickle.

A record leaves the learner's kernel as the data of a ``display_data`` output (MIME type
:data:`MIME`) and is read back by the trusted grader. Everything in it is untrusted, so
decoding builds only plain values: numbers, strings, lists, tuples, dicts, numpy arrays of
numeric dtypes, and the three record types of ``autograder.checks._core`` (Outcome,
TensorRecord, Opaque). Anything else a learner's function returned was already turned
into an ``Opaque`` (type name + repr) by the recorder.

This file is copied into the sandbox image, so it imports nothing from the grader.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

MIME = "application/vnd.attnlab.record+json"
MAX_ARRAY_BYTES = 64 << 20
MAX_DEPTH = 64
_NUMERIC_KINDS = "biufc"


class RecordError(ValueError):
    """A record that is malformed (or forged badly)."""


# ----------------------------------------------------------------------------- encoding


def encode(x: Any, depth: int = 0) -> Any:
    """Plain record data -> JSON-compatible data (in the learner's kernel)."""
    if depth > MAX_DEPTH:
        return {"__opaque__": ["deep", "nested too deeply"]}
    kind = type(x).__name__
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return x if abs(x) < 2 ** 63 else {"__opaque__": ["int", str(x)[:200]]}
    if isinstance(x, float):
        return x if math.isfinite(x) else {"__float__": repr(x)}
    if kind == "TensorRecord":
        return {"__tensor__": _encode_array(np.asarray(x)), "dtype": x.torch_dtype}
    if isinstance(x, np.ndarray):
        return {"__array__": _encode_array(x)}
    if isinstance(x, np.generic):
        return encode(x.item(), depth + 1)
    if isinstance(x, tuple):
        return {"__tuple__": [encode(v, depth + 1) for v in x]}
    if isinstance(x, list):
        return [encode(v, depth + 1) for v in x]
    if isinstance(x, dict):
        return {"__dict__": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in x.items()]}
    if kind == "Outcome":
        return {"__outcome__": {name: encode(getattr(x, name), depth + 1)
                                for name in ("value", "error", "error_type", "forbidden",
                                             "mutated")}}
    if kind == "Opaque":
        return {"__opaque__": [str(x.type_name), str(x.text)[:200]]}
    return {"__opaque__": [kind, repr(x)[:200] if _safe_repr(x) else kind]}


def _safe_repr(x: Any) -> bool:
    return isinstance(x, (complex, bytes, range, slice, set, frozenset))


def _encode_array(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    if a.dtype.kind not in _NUMERIC_KINDS:
        a = a.astype(str).astype(object)
        return {"dtype": "str", "shape": list(a.shape), "data": [str(v) for v in a.ravel()]}
    return {"dtype": a.dtype.str, "shape": list(a.shape),
            "b64": base64.b64encode(a.tobytes()).decode("ascii")}


# ----------------------------------------------------------------------------- decoding


def decode(x: Any, types: Any, depth: int = 0) -> Any:
    """JSON data -> record data (in the trusted grader). ``types`` provides Outcome,
    TensorRecord and Opaque (the grader's own ``autograder.checks._core``)."""
    if depth > MAX_DEPTH + 2:
        raise RecordError("nested too deeply")
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        return x
    if isinstance(x, list):
        return [decode(v, types, depth + 1) for v in x]
    if not isinstance(x, dict) or len(x) not in (1, 2):
        raise RecordError("unexpected value in a record")
    if "__float__" in x:
        text = x["__float__"]
        if text not in ("nan", "inf", "-inf"):
            raise RecordError("bad float")
        return float(text)
    if "__tuple__" in x:
        return tuple(decode(v, types, depth + 1) for v in _list(x["__tuple__"]))
    if "__dict__" in x:
        out = {}
        for pair in _list(x["__dict__"]):
            if not isinstance(pair, list) or len(pair) != 2:
                raise RecordError("bad dict entry")
            key = decode(pair[0], types, depth + 1)
            if not isinstance(key, (str, int, float, bool, tuple, type(None))):
                raise RecordError("bad dict key")
            out[key] = decode(pair[1], types, depth + 1)
        return out
    if "__array__" in x:
        return _decode_array(x["__array__"])
    if "__tensor__" in x:
        dtype = x.get("dtype")
        if not isinstance(dtype, str) or len(dtype) > 40:
            raise RecordError("bad tensor dtype")
        return types.TensorRecord(_decode_array(x["__tensor__"]), dtype)
    if "__opaque__" in x:
        parts = _list(x["__opaque__"])
        if len(parts) != 2 or not all(isinstance(p, str) for p in parts):
            raise RecordError("bad opaque value")
        return types.Opaque(parts[0][:100], parts[1][:200])
    if "__outcome__" in x:
        fields = x["__outcome__"]
        if not isinstance(fields, dict) or set(fields) != {"value", "error", "error_type",
                                                           "forbidden", "mutated"}:
            raise RecordError("bad outcome")
        out = types.Outcome(value=decode(fields["value"], types, depth + 1))
        for name in ("error", "error_type"):
            value = fields[name]
            if value is not None and not isinstance(value, str):
                raise RecordError("bad outcome field")
            setattr(out, name, value)
        for name in ("forbidden", "mutated"):
            value = fields[name]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise RecordError("bad outcome list")
            setattr(out, name, list(value))
        return out
    raise RecordError("unknown tagged value in a record")


def _list(x: Any) -> list:
    if not isinstance(x, list):
        raise RecordError("expected a list")
    return x


def _decode_array(spec: Any) -> np.ndarray:
    if not isinstance(spec, dict):
        raise RecordError("bad array")
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) and 0 <= n for n in shape) \
            or len(shape) > 32:
        raise RecordError("bad array shape")
    size = math.prod(shape)
    if spec.get("dtype") == "str":
        data = spec.get("data")
        if not isinstance(data, list) or len(data) != size or \
                not all(isinstance(v, str) for v in data):
            raise RecordError("bad string array")
        return np.array(data, dtype=str).reshape(shape)
    try:
        dtype = np.dtype(spec.get("dtype"))
    except TypeError as exc:
        raise RecordError("bad array dtype") from exc
    if dtype.kind not in _NUMERIC_KINDS or dtype.itemsize > 16 or dtype.hasobject:
        raise RecordError("array dtype not allowed")
    raw = spec.get("b64")
    if not isinstance(raw, str) or len(raw) > MAX_ARRAY_BYTES * 4 // 3 + 8:
        raise RecordError("array too large")
    data = base64.b64decode(raw.encode("ascii"), validate=True)
    if len(data) != size * dtype.itemsize:
        raise RecordError("array size does not match its shape")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
