"""NumPy arrays <-> gradserve.v1.Tensor.

Float arrays (float16, float32, float64, ...) are cast to the request's float
dtype, float32 unless float64 is asked for; integer and bool arrays become
int64 (class labels). Replies are read as NumPy arrays over the reply's bytes
with np.frombuffer, without a copy: they are read-only (`.copy()` one to
write into it)."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import numpy as np

from gradserve.v1 import tensor_pb2

FLOAT32 = np.dtype("<f4")
FLOAT64 = np.dtype("<f8")
INT64 = np.dtype("<i8")

_WIRE = {FLOAT32: tensor_pb2.DATA_TYPE_FLOAT32, FLOAT64: tensor_pb2.DATA_TYPE_FLOAT64,
         INT64: tensor_pb2.DATA_TYPE_INT64}
_NUMPY = {tensor_pb2.DATA_TYPE_FLOAT32: FLOAT32, tensor_pb2.DATA_TYPE_FLOAT64: FLOAT64,
          tensor_pb2.DATA_TYPE_INT64: INT64}


def float_dtype(dtype: Any) -> np.dtype:
    """The wire float dtype named by `dtype` ("float32", np.float64, ...)."""
    resolved = np.dtype(dtype)
    if resolved == np.float32:
        return FLOAT32
    if resolved == np.float64:
        return FLOAT64
    raise ValueError(f"gradserve computes in float32 or float64, not {resolved}")


def wire_array(value: Any, float_type: np.dtype = FLOAT32) -> np.ndarray:
    """`value` as a C-contiguous little-endian array of a wire dtype."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind == "f":
        target = float_type
    elif array.dtype.kind in "iub":
        target = INT64
    else:
        raise TypeError(f"cannot send an array of dtype {array.dtype} (float or integer only)")
    # order="C" keeps a 0-d array 0-d (np.ascontiguousarray would make it [1]).
    return array.astype(target, order="C", copy=False)


def to_tensor(value: Any, float_type: np.dtype = FLOAT32) -> tensor_pb2.Tensor:
    """A Tensor carrying `value`'s raw bytes."""
    tensor = tensor_pb2.Tensor()
    put(tensor, wire_array(value, float_type))
    return tensor


def put(tensor: tensor_pb2.Tensor, array: np.ndarray) -> None:
    """Sets a Tensor (a message field, in place) to a wire array's dtype,
    shape and raw bytes (with no shared-memory reference)."""
    tensor.Clear()
    tensor.dtype = _WIRE[array.dtype]
    tensor.shape.extend(array.shape)
    tensor.data = array.tobytes()


def to_numpy(tensor: tensor_pb2.Tensor) -> np.ndarray:
    """A reply's Tensor as a read-only NumPy view of its bytes (no copy)."""
    if tensor.HasField("shared_memory") and not tensor.data:
        raise ValueError("this tensor was placed in shared memory; read it from the region")
    dtype = _NUMPY.get(tensor.dtype)
    if dtype is None:
        raise ValueError(f"unexpected tensor dtype {tensor.dtype} in a reply")
    shape = tuple(tensor.shape)
    if tensor.data:
        return np.frombuffer(tensor.data, dtype=dtype).reshape(shape)
    values = tensor.int64_values if dtype == INT64 else tensor.float_values
    return np.asarray(values, dtype=dtype).reshape(shape)


def fill(proto_map: Any, arrays: Optional[Mapping[str, Any]],
         float_type: np.dtype = FLOAT32) -> None:
    """Puts arrays into a map<string, Tensor> field."""
    for name, value in (arrays or {}).items():
        put(proto_map[name], wire_array(value, float_type))


def arrays(proto_map: Any) -> Dict[str, np.ndarray]:
    """A map<string, Tensor> field as a dict of NumPy arrays."""
    return {name: to_numpy(tensor) for name, tensor in proto_map.items()}


def has_float64(values: Optional[Mapping[str, Any]]) -> bool:
    return any(np.asarray(v).dtype == np.float64 for v in (values or {}).values())
