"""Read Caffe ``.caffemodel`` files from the protobuf wire format, without Caffe or ``caffe.proto``.

A ``.caffemodel`` is a serialized ``NetParameter`` message. This module decodes just the part of
the schema that carries learned weights:

```
NetParameter        name = 1 (string), layers = 2 (V1LayerParameter, old format),
                    layer = 100 (LayerParameter, current format)
V1LayerParameter    bottom = 2, top = 3, name = 4 (string), type = 5 (enum), blobs = 6 (BlobProto),
                    convolution_param = 10, pooling_param = 19
LayerParameter      name = 1, type = 2 (string), bottom = 3, top = 4, blobs = 7 (BlobProto),
                    convolution_param = 106, pooling_param = 121
ConvolutionParameter, PoolingParameter: their integer fields (see ``CONVOLUTION_FIELDS``,
                    ``POOLING_FIELDS``)
BlobProto           num = 1, channels = 2, height = 3, width = 4 (legacy 4-d shape),
                    data = 5 (float, packed or not), shape = 7 (BlobShape),
                    double_data = 8 (double, packed or not)
BlobShape           dim = 1 (int64, packed or not)
```

Every other field is skipped by its wire type, as protobuf readers do. The reader only descends
into these message levels, so nesting depth is fixed by the schema, and every loop advances
by at least one byte, so it ends on any input. Any malformed input raises
:class:`~nin_keras.errors.CaffeFormatError` naming the file and the byte offset; so do weights
that are NaN or infinite, and layer parameters stored as an empty packed field.

Example:
    >>> model = read_caffemodel("cifar10_nin.caffemodel")
    >>> [(layer.name, [b.shape for b in layer.blobs]) for layer in model.layers if layer.blobs][0]
    ('conv1', [(192, 3, 5, 5), (1, 1, 1, 192)])
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Iterator, Mapping

import numpy as np

from nin_keras.errors import CaffeFormatError

# Protobuf wire types.
_VARINT, _FIXED64, _LENGTH, _START_GROUP, _END_GROUP, _FIXED32 = 0, 1, 2, 3, 4, 5
_MAX_VARINT_BYTES = 10
_MAX_BLOB_AXES = 32  # Caffe's kMaxBlobAxes; also keeps shape arithmetic small on hostile input

# V1LayerParameter.LayerType enum values -> the type strings of the current format (as Caffe's
# own upgrade_proto maps them), so both formats list layers the same way.
V1_LAYER_TYPES: dict[int, str] = {
    0: "",
    1: "Accuracy",
    2: "BNLL",
    3: "Concat",
    4: "Convolution",
    5: "Data",
    6: "Dropout",
    7: "EuclideanLoss",
    8: "Flatten",
    9: "HDF5Data",
    10: "HDF5Output",
    11: "Im2col",
    12: "ImageData",
    13: "InfogainLoss",
    14: "InnerProduct",
    15: "LRN",
    16: "MultinomialLogisticLoss",
    17: "Pooling",
    18: "ReLU",
    19: "Sigmoid",
    20: "Softmax",
    21: "SoftmaxWithLoss",
    22: "Split",
    23: "TanH",
    24: "WindowData",
    25: "Eltwise",
    26: "Power",
    27: "SigmoidCrossEntropyLoss",
    28: "HingeLoss",
    29: "MemoryData",
    30: "ArgMax",
    31: "Threshold",
    32: "DummyData",
    33: "Slice",
    34: "MVN",
    35: "AbsVal",
    36: "Silence",
    37: "ContrastiveLoss",
    38: "Exp",
    39: "Deconvolution",
}


@dataclasses.dataclass(frozen=True)
class CaffeLayer:
    """One layer of a Caffe network as stored in a ``.caffemodel``.

    Attributes:
        name: the layer's name (``"conv1"``).
        type: the layer type in the current format's spelling (``"Convolution"``); old-format
            enum values are translated, unknown ones read ``"V1Type<n>"``.
        bottom: names of the input blobs.
        top: names of the output blobs.
        blobs: the learned parameters as float32 arrays in Caffe's layout and shape (for a
            convolution: weights ``(out, in, kh, kw)``, then bias, often ``(1, 1, 1, out)`` in
            old files).
        params: the integer fields of the layer's ``convolution_param`` or ``pooling_param``
            as stored, each a tuple (repeated fields may hold several values), e.g.
            ``{"num_output": (192,), "pad": (2,), "kernel_size": (5,)}``; empty for other layers.
            Caffe's defaults apply to absent fields (stride 1, pad 0, group 1, pool MAX = 0).
    """

    name: str
    type: str
    bottom: tuple[str, ...]
    top: tuple[str, ...]
    blobs: tuple[np.ndarray, ...]
    params: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class CaffeModel:
    """A parsed ``.caffemodel``: the network name and its layers in file order.

    Attributes:
        name: ``NetParameter.name`` (may be empty).
        layers: every layer, with or without blobs.
        format: ``"V1LayerParameter"`` (old ``layers`` field) or ``"LayerParameter"`` (``layer``).
    """

    name: str
    layers: tuple[CaffeLayer, ...]
    format: str

    def layer(self, name: str) -> CaffeLayer:
        """The layer called ``name``; ``KeyError`` listing the names if there is none."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r} in this Caffe model; layers: {[l.name for l in self.layers]}")

    @property
    def count_params(self) -> int:
        """Total number of learned values over all blobs."""
        return sum(blob.size for layer in self.layers for blob in layer.blobs)


class _Reader:
    """Walks protobuf fields of one message span; errors name the source and absolute offset."""

    def __init__(self, buf: memoryview, source: str):
        self.buf = buf
        self.source = source

    def fail(self, offset: int, message: str) -> CaffeFormatError:
        return CaffeFormatError(f"{self.source}: not a valid .caffemodel ({message} at byte {offset})")

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        result = 0
        for i in range(_MAX_VARINT_BYTES):
            if pos + i >= end:
                raise self.fail(pos, "truncated varint")
            byte = self.buf[pos + i]
            result |= (byte & 0x7F) << (7 * i)
            if byte < 0x80:
                return result, pos + i + 1
        raise self.fail(pos, f"varint longer than {_MAX_VARINT_BYTES} bytes")

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, int | slice, int]]:
        """Yield ``(field, wire_type, value, offset)`` for each field in ``buf[start:end]``.

        ``value`` is the integer for varint and fixed-size fields, and the payload's ``slice``
        of ``buf`` for length-delimited ones; ``offset`` is where the field's key starts.
        """
        pos = start
        while pos < end:
            offset = pos
            key, pos = self.varint(pos, end)
            field, wire = key >> 3, key & 7
            if field == 0:
                raise self.fail(offset, "field number 0")
            if wire == _VARINT:
                value, pos = self.varint(pos, end)
            elif wire in (_FIXED64, _FIXED32):
                size = 8 if wire == _FIXED64 else 4
                if pos + size > end:
                    raise self.fail(offset, f"truncated {size * 8}-bit field {field}")
                value = int.from_bytes(self.buf[pos : pos + size], "little")
                pos += size
            elif wire == _LENGTH:
                length, pos = self.varint(pos, end)
                if length > end - pos:
                    raise self.fail(offset, f"truncated field {field}: {length} bytes declared, {end - pos} left")
                value = slice(pos, pos + length)
                pos += length
            elif wire in (_START_GROUP, _END_GROUP):
                raise self.fail(offset, f"unsupported group wire type {wire} for field {field}")
            else:
                raise self.fail(offset, f"invalid wire type {wire} for field {field}")
            yield field, wire, value, offset

    def expect(self, field: int, wire: int, allowed: tuple[int, ...], offset: int, what: str) -> None:
        if wire not in allowed:
            raise self.fail(offset, f"{what} (field {field}) has wire type {wire}, expected {allowed}")

    def string(self, span: slice, offset: int, what: str) -> str:
        try:
            return bytes(self.buf[span]).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(offset, f"{what} is not UTF-8 text") from None

    def floats(self, value: int | slice, offset: int, dtype: str, what: str) -> np.ndarray:
        """One chunk of a repeated float/double field: packed (a slice) or a single fixed value."""
        itemsize = np.dtype(dtype).itemsize
        if isinstance(value, int):
            return np.frombuffer(value.to_bytes(itemsize, "little"), dtype=dtype)
        length = value.stop - value.start
        if length % itemsize:
            raise self.fail(offset, f"packed {what} of {length} bytes, not a multiple of {itemsize}")
        return np.frombuffer(self.buf[value], dtype=dtype)

    def varints(self, value: int | slice) -> list[int]:
        """One chunk of a repeated integer field: packed (a slice) or a single varint."""
        if isinstance(value, int):
            return [value]
        values, pos, end = [], value.start, value.stop
        while pos < end:
            number, pos = self.varint(pos, end)
            values.append(number)
        return values


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _blob(r: _Reader, span: slice, where: str) -> np.ndarray:
    legacy = {}
    dims: list[int] | None = None
    floats: list[np.ndarray] = []
    doubles: list[np.ndarray] = []
    for field, wire, value, offset in r.fields(span.start, span.stop):
        if field in (1, 2, 3, 4):  # num, channels, height, width
            r.expect(field, wire, (_VARINT,), offset, f"{where} legacy dimension")
            legacy[field] = _signed64(value)
        elif field == 5:
            r.expect(field, wire, (_LENGTH, _FIXED32), offset, f"{where} data")
            floats.append(r.floats(value, offset, "<f4", f"{where} data"))
        elif field == 8:
            r.expect(field, wire, (_LENGTH, _FIXED64), offset, f"{where} double_data")
            doubles.append(r.floats(value, offset, "<f8", f"{where} double_data"))
        elif field == 7:
            r.expect(field, wire, (_LENGTH,), offset, f"{where} shape")
            dims = dims or []
            for dim_field, dim_wire, dim_value, dim_offset in r.fields(value.start, value.stop):
                if dim_field == 1:
                    r.expect(dim_field, dim_wire, (_VARINT, _LENGTH), dim_offset, f"{where} shape dim")
                    dims.extend(_signed64(d) for d in r.varints(dim_value))
    if floats and doubles:
        raise r.fail(span.start, f"{where} has both float data and double_data")
    with np.errstate(over="ignore"):  # doubles beyond float32 become inf, refused below
        data = np.concatenate(floats or doubles or [np.zeros(0, np.float32)]).astype(np.float32)
    shape = tuple(dims) if dims is not None else tuple(legacy.get(f, 0) for f in (1, 2, 3, 4))
    if len(shape) > _MAX_BLOB_AXES:
        raise r.fail(span.start, f"{where} has {len(shape)} axes, more than Caffe's {_MAX_BLOB_AXES}")
    if any(d < 0 for d in shape):
        raise r.fail(span.start, f"{where} has a negative dimension in shape {shape}")
    needed = math.prod(shape)
    if needed != data.size:
        raise r.fail(span.start, f"{where} holds {data.size} values but its shape {shape} needs {needed}")
    bad = data.size - int(np.isfinite(data).sum())
    if bad:  # Caffe itself stores them without complaint; converted, they make every output NaN
        raise r.fail(span.start, f"{where} holds {bad} NaN or infinite values")
    return data.reshape(shape)


# (name, type, bottom, top, blobs, convolution_param, pooling_param) field numbers of the two
# layer messages.
_V1_FIELDS = (4, 5, 2, 3, 6, 10, 19)
_V2_FIELDS = (1, 2, 3, 4, 7, 106, 121)

#: ConvolutionParameter integer fields by number.
CONVOLUTION_FIELDS = {
    1: "num_output", 2: "bias_term", 3: "pad", 4: "kernel_size", 5: "group", 6: "stride",
    9: "pad_h", 10: "pad_w", 11: "kernel_h", 12: "kernel_w", 13: "stride_h", 14: "stride_w",
}
#: PoolingParameter integer fields by number (``pool``: 0 MAX, 1 AVE, 2 STOCHASTIC).
POOLING_FIELDS = {
    1: "pool", 2: "kernel_size", 3: "stride", 4: "pad", 5: "kernel_h", 6: "kernel_w",
    7: "stride_h", 8: "stride_w", 9: "pad_h", 10: "pad_w", 12: "global_pooling",
}


def _params(r: _Reader, span: slice, names: Mapping[int, str], where: str) -> dict[str, tuple[int, ...]]:
    values: dict[str, list[int]] = {}
    for field, wire, value, offset in r.fields(span.start, span.stop):
        if field in names:
            r.expect(field, wire, (_VARINT, _LENGTH), offset, f"{where} {names[field]}")
            numbers = r.varints(value)
            if not numbers:  # a packed field of no values: the converter would index into nothing
                raise r.fail(offset, f"{where} {names[field]} is an empty packed field")
            values.setdefault(names[field], []).extend(numbers)
    return {name: tuple(v) for name, v in values.items()}


def _layer(r: _Reader, span: slice, index: int, v1: bool) -> CaffeLayer:
    name_f, type_f, bottom_f, top_f, blobs_f, conv_f, pool_f = _V1_FIELDS if v1 else _V2_FIELDS
    name, type_, bottom, top, blob_spans, params = "", "", [], [], [], {}
    for field, wire, value, offset in r.fields(span.start, span.stop):
        if field == name_f:
            r.expect(field, wire, (_LENGTH,), offset, f"layer {index} name")
            name = r.string(value, offset, f"layer {index} name")
        elif field == type_f and v1:
            r.expect(field, wire, (_VARINT,), offset, f"layer {index} type")
            type_ = V1_LAYER_TYPES.get(value, f"V1Type{value}")
        elif field == type_f:
            r.expect(field, wire, (_LENGTH,), offset, f"layer {index} type")
            type_ = r.string(value, offset, f"layer {index} type")
        elif field in (bottom_f, top_f):
            r.expect(field, wire, (_LENGTH,), offset, f"layer {index} bottom/top")
            (bottom if field == bottom_f else top).append(r.string(value, offset, f"layer {index} bottom/top"))
        elif field == blobs_f:
            r.expect(field, wire, (_LENGTH,), offset, f"layer {index} blob")
            blob_spans.append(value)
        elif field in (conv_f, pool_f):
            what = f"layer {index} {'convolution' if field == conv_f else 'pooling'}_param"
            r.expect(field, wire, (_LENGTH,), offset, what)
            params.update(_params(r, value, CONVOLUTION_FIELDS if field == conv_f else POOLING_FIELDS, what))
    label = f"layer {index} ({name or 'unnamed'})"
    blobs = tuple(_blob(r, span, f"{label} blob {i}") for i, span in enumerate(blob_spans))
    return CaffeLayer(name=name, type=type_, bottom=tuple(bottom), top=tuple(top), blobs=blobs, params=params)


def parse_caffemodel(data: bytes, source: str = "<bytes>") -> CaffeModel:
    """Parse the bytes of a ``.caffemodel`` (a serialized ``NetParameter``).

    Args:
        data: the file's content.
        source: a name for error messages (the path).

    Returns:
        The :class:`CaffeModel`.

    Raises:
        CaffeFormatError: the bytes are truncated, malformed, hold no layers, mix the old and
            new layer fields, or hold a blob whose values don't fill its shape.
    """
    r = _Reader(memoryview(bytes(data)), source)
    if not data:
        raise CaffeFormatError(f"{source}: not a valid .caffemodel (the file is empty)")
    name, v1_spans, v2_spans = "", [], []
    for field, wire, value, offset in r.fields(0, len(data)):
        if field == 1:
            r.expect(field, wire, (_LENGTH,), offset, "network name")
            name = r.string(value, offset, "network name")
        elif field in (2, 100):
            r.expect(field, wire, (_LENGTH,), offset, "layer")
            (v1_spans if field == 2 else v2_spans).append(value)
    if v1_spans and v2_spans:
        raise CaffeFormatError(f"{source}: not a valid .caffemodel (it mixes old 'layers' and new 'layer' fields)")
    if not v1_spans and not v2_spans:
        raise CaffeFormatError(f"{source}: not a valid .caffemodel (no layers found; is it a Caffe model?)")
    v1 = bool(v1_spans)
    layers = tuple(_layer(r, span, i, v1) for i, span in enumerate(v1_spans or v2_spans))
    return CaffeModel(name=name, layers=layers, format="V1LayerParameter" if v1 else "LayerParameter")


def read_caffemodel(path: str | os.PathLike) -> CaffeModel:
    """Read a ``.caffemodel`` file; see :func:`parse_caffemodel`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CaffeFormatError: the file is not a readable Caffe model.
    """
    with open(path, "rb") as f:
        data = f.read()
    return parse_caffemodel(data, source=os.fspath(path))
