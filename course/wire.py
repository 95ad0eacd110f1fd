"""The data that crosses the trust boundary, and only that.

Messages between the grader and the sandboxed child are length-prefixed
frames: a JSON header, then raw buffers. Values are plain data: None, bool,
int, float, str, bytes, lists, tuples, dicts and dense tensors. Nothing is
pickled, so a hostile child can send only numbers and text: a tensor arrives
as dtype + shape + bytes and is rebuilt as a plain `torch.Tensor` on this side
(a subclass that lies about equality cannot survive the trip).
"""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO

import torch

MAX_FRAME = 1 << 30  # bytes in one message; more is a protocol error
MAX_DEPTH = 32
DTYPES = {
    str(dt).removeprefix("torch."): dt
    for dt in (
        torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64,
        torch.complex128, torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64,
        torch.bool,
    )
}


class WireError(Exception):
    """A message that is not valid plain data (or the other side went away)."""


class Unsendable(WireError):
    """A value of a type that cannot cross the boundary."""


def _encode(value: Any, buffers: list[bytes], depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise Unsendable("value nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return {"t": "int", "v": str(int(value))}  # arbitrary size, no float rounding
    if isinstance(value, float):
        return {"t": "float", "v": repr(float(value))}  # keeps nan, inf and -0.0
    if isinstance(value, (bytes, bytearray)):
        buffers.append(bytes(value))
        return {"t": "bytes", "b": len(buffers) - 1}
    if isinstance(value, torch.Tensor):
        t = torch.Tensor.as_subclass(value, torch.Tensor).detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in DTYPES:
            raise Unsendable(f"tensor dtype {t.dtype} cannot be sent")
        t = t.cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        buffers.append(raw)
        return {"t": "tensor", "dtype": dtype, "shape": list(t.shape), "b": len(buffers) - 1}
    if isinstance(value, (list, tuple)):
        kind = "list" if isinstance(value, list) else "tuple"
        return {"t": kind, "v": [_encode(v, buffers, depth + 1) for v in value]}
    if isinstance(value, dict):
        return {"t": "dict",
                "v": [[_encode(k, buffers, depth + 1), _encode(v, buffers, depth + 1)]
                      for k, v in value.items()]}
    raise Unsendable(f"a value of type {type(value).__name__} cannot be sent")


def _decode(obj: Any, buffers: list[bytes], depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
        raise WireError("malformed value")
    kind = obj["t"]
    if kind == "int":
        return int(str(obj["v"]))
    if kind == "float":
        return float(str(obj["v"]))
    if kind == "bytes":
        return buffers[int(obj["b"])]
    if kind == "tensor":
        dtype = DTYPES.get(obj.get("dtype"))
        shape = obj.get("shape")
        if dtype is None or not isinstance(shape, list) or not all(
            isinstance(n, int) and n >= 0 for n in shape
        ):
            raise WireError("malformed tensor")
        raw = buffers[int(obj["b"])]
        numel = 1
        for n in shape:
            numel *= n
        if len(raw) != numel * torch.empty((), dtype=dtype).element_size():
            raise WireError("tensor data does not match its shape")
        flat = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return flat.reshape(shape)
    if kind in ("list", "tuple"):
        items = [_decode(v, buffers, depth + 1) for v in obj.get("v", [])]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        out = {}
        for pair in obj.get("v", []):
            if not isinstance(pair, list) or len(pair) != 2:
                raise WireError("malformed dict")
            key = _decode(pair[0], buffers, depth + 1)
            try:
                out[key] = _decode(pair[1], buffers, depth + 1)
            except TypeError:
                raise WireError("unhashable dict key") from None
        return out
    raise WireError(f"unknown value kind {kind!r}")


def encode_message(header: dict[str, Any], payload: Any = None) -> bytes:
    """One frame: 8-byte length, then `header` (JSON-able) and `payload` (plain data)."""
    buffers: list[bytes] = []
    body = dict(header, payload=_encode(payload, buffers, 0))
    head = json.dumps(body).encode()
    parts = [struct.pack("<II", len(head), len(buffers)), head]
    for buf in buffers:
        parts += [struct.pack("<Q", len(buf)), buf]
    data = b"".join(parts)
    if len(data) > MAX_FRAME:
        raise Unsendable(f"message of {len(data)} bytes is over the {MAX_FRAME}-byte limit")
    return struct.pack("<Q", len(data)) + data


def frame_size(prefix: bytes) -> int:
    """The body size announced by a frame's 8-byte prefix."""
    (size,) = struct.unpack("<Q", prefix)
    if size > MAX_FRAME:
        raise WireError(f"message of {size} bytes is over the limit")
    return size


def decode_message(body: bytes) -> tuple[dict[str, Any], Any]:
    """`(header, payload)` of a frame body; `WireError` on anything malformed."""
    data = memoryview(body)
    try:
        head_len, n_buf = struct.unpack_from("<II", data, 0)
        pos = 8
        header = json.loads(bytes(data[pos : pos + head_len]))
        pos += head_len
        buffers = []
        for _ in range(n_buf):
            (blen,) = struct.unpack_from("<Q", data, pos)
            pos += 8
            if pos + blen > len(data):
                raise WireError("truncated buffer")
            buffers.append(bytes(data[pos : pos + blen]))
            pos += blen
        if not isinstance(header, dict):
            raise WireError("malformed header")
        payload = _decode(header.pop("payload", None), buffers, 0)
    except (struct.error, ValueError, KeyError, IndexError, TypeError, RecursionError) as err:
        raise WireError(f"malformed message: {err}") from None
    return header, payload


def write_message(stream: BinaryIO, header: dict[str, Any], payload: Any = None) -> None:
    stream.write(encode_message(header, payload))
    stream.flush()


def _exact(stream: BinaryIO, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            raise WireError("the other side closed the channel")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_message(stream: BinaryIO) -> tuple[dict[str, Any], Any]:
    """Receive one frame from a blocking stream (the child's side)."""
    return decode_message(_exact(stream, frame_size(_exact(stream, 8))))
