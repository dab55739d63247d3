"""Reading and writing GGUF files, the single-file model format of llama.cpp.

A GGUF file holds three things (spec: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md):

1. a header with the format version,
2. key/value metadata (architecture hyper-parameters, the tokenizer's vocabulary and merges, the chat
   template, ...), each value typed (uint32, float32, string, array of ...),
3. tensors, each stored as F32/F16/BF16 or in a block-quantised type (Q8_0, Q4_1, the "K-quants" ...).

Two conventions to keep in mind when moving tensors between GGUF and PyTorch:

- GGUF lists a tensor's dimensions fastest-varying first (`ne[0]` is the row length), so a PyTorch
  `nn.Linear` weight of shape (out, in) is written as dims `[in, out]`. We always hand back PyTorch order.
- Quantised types store rows as blocks of 32 (or 256 for K-quants) values sharing a scale; dequantising
  gives float32 values that differ from the original weights by the quantisation error.

The (de)quantisation kernels are `gguf.quants` (the numpy port of ggml-quants.c that ships with llama.cpp),
except for Q8_0, Q4_0 and Q4_1, which are dequantised by a few vectorised torch lines (tested equal to
`gguf.quants`, and several times faster: SmolLM2's Q4_1 file is read in a fraction of the time).

Example:
    >>> f = read_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")
    >>> f.metadata["llama.block_count"], f.tensor_types["blk.0.attn_q.weight"]
    (30, 'Q4_1')
    >>> f.tensors["blk.0.attn_q.weight"].shape   # dequantised float32, PyTorch (out, in) order
    torch.Size([576, 576])
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmlab.io.files import atomic_write

# Types we dequantise. gguf.quants knows more (IQ*, TQ*), but these are the ones llama.cpp's common
# presets produce and the ones we test; an unknown type is a clear error rather than a silent guess.
SUPPORTED_TYPES: tuple[str, ...] = (
    "F32",
    "F16",
    "BF16",
    "Q8_0",
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
    "Q2_K",
    "Q3_K",
    "Q4_K",
    "Q5_K",
    "Q6_K",
)
WRITE_DTYPES: tuple[str, ...] = ("F32", "F16", "Q8_0")


@dataclass
class GGUFFile:
    """A parsed GGUF file.

    Attributes:
        path: where it was read from.
        version: GGUF format version (3 today).
        metadata: key -> plain Python value (str, int, float, bool, or a list of those).
        metadata_types: key -> GGUF value type name (`"UINT32"`, `"FLOAT32"`, `"ARRAY[STRING]"` ...), so a
            file can be written back with the same types (`write_gguf(..., metadata_types=...)`).
        tensor_types: tensor name -> storage type name (`"Q4_1"`, `"F32"` ...).
        tensor_shapes: tensor name -> shape in PyTorch order.
        tensors: tensor name -> dequantised float32 tensor in PyTorch order. Lazy: each tensor is
            dequantised on first access and then cached.
    """

    path: Path
    version: int
    metadata: dict[str, Any]
    metadata_types: dict[str, str]
    tensor_types: dict[str, str]
    tensor_shapes: dict[str, tuple[int, ...]]
    tensors: Mapping[str, torch.Tensor] = field(repr=False)

    @property
    def architecture(self) -> str:
        """`general.architecture`, e.g. `"llama"`."""
        return str(self.metadata.get("general.architecture", ""))

    def raw_blocks(self, name: str) -> torch.Tensor:
        """The stored blocks of a Q8_0 / Q4_0 / Q4_1 matrix, not dequantised and not copied.

        Returns:
            (rows, blocks per row, block bytes) uint8: a read-only view of the memory-mapped file (write nothing
            into it). Block layouts: see `BLOCK_BYTES` below.
        """
        qtype = self.tensor_types[name]
        if qtype not in BLOCK_BYTES or len(self.tensor_shapes[name]) != 2:
            raise ValueError(
                f"tensor {name!r} in {self.path} is {qtype}; raw blocks exist for {', '.join(BLOCK_BYTES)}"
            )
        data = self.tensors.raw(name)  # type: ignore[attr-defined]
        rows, cols = self.tensor_shapes[name]
        with warnings.catch_warnings():  # the memmap is read-only: torch warns that writes would be undefined
            warnings.simplefilter("ignore", UserWarning)
            blocks = torch.from_numpy(np.asarray(data, dtype=np.uint8))
        return blocks.reshape(rows, cols // 32, BLOCK_BYTES[qtype])


class _LazyTensors(Mapping):
    """name -> float32 tensor, dequantised from the memory-mapped file on first access."""

    def __init__(self, path: Path, reader_tensors: dict[str, Any]) -> None:
        self._path = path
        self._raw = reader_tensors  # name -> gguf ReaderTensor
        self._cache: dict[str, torch.Tensor] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._cache:
            if name not in self._raw:
                raise KeyError(name)
            self._cache[name] = _dequantize(self._path, self._raw[name])
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes as stored (a numpy view of the memory-mapped file)."""
        return self._raw[name].data

    def __len__(self) -> int:
        return len(self._raw)


def _decode_scalar(part: np.ndarray, vtype: Any) -> Any:
    """One GGUF value (a numpy view into the file) -> a plain Python value."""
    from gguf import GGUFValueType

    if vtype == GGUFValueType.STRING:
        return bytes(part).decode("utf-8")
    if vtype == GGUFValueType.BOOL:
        return bool(part[0])
    if vtype in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
        return float(part[0])
    return int(part[0])


def _decode_field(fld: Any) -> tuple[Any, str]:
    """A gguf `ReaderField` -> (plain value, type name).

    `fld.parts` holds every piece of the encoded key/value (key length, key bytes, type, ...); `fld.data`
    lists the indices of the parts that are the value itself (one for a scalar, one per item for an array).
    """
    from gguf import GGUFValueType

    main = fld.types[0]
    if main != GGUFValueType.ARRAY:
        return _decode_scalar(fld.parts[fld.data[0]], main), main.name
    if len(fld.types) > 2:
        raise ValueError(f"metadata key {fld.name!r} is a nested array, which is not supported")
    if len(fld.types) == 1:  # empty array: the reader records no item type
        return [], "ARRAY"
    sub = fld.types[1]
    if sub == GGUFValueType.STRING:
        values = [bytes(fld.parts[i]).decode("utf-8") for i in fld.data]
    else:
        # Numeric arrays: every item is its own 1-element part; gather them in one go.
        values = np.concatenate([fld.parts[i] for i in fld.data]).tolist() if fld.data else []
        if sub == GGUFValueType.BOOL:
            values = [bool(v) for v in values]
    return values, f"ARRAY[{sub.name}]"


def read_gguf(path: str | os.PathLike) -> GGUFFile:
    """Parse a GGUF file: metadata eagerly, tensors lazily (see `GGUFFile`).

    Args:
        path: the `.gguf` file.

    Returns:
        The parsed file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a valid GGUF file (bad magic, truncated, corrupt).
    """
    from gguf import GGUFReader

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    try:
        reader = GGUFReader(path)
    except Exception as e:  # the reader raises ValueError, struct.error, IndexError, ... on bad bytes
        raise ValueError(f"{path} is not a valid GGUF file (truncated or corrupt?): {type(e).__name__}: {e}") from e

    metadata: dict[str, Any] = {}
    metadata_types: dict[str, str] = {}
    version = 0
    try:
        for key, fld in reader.fields.items():
            if key.startswith("GGUF."):  # pseudo-fields of the header: version, tensor_count, kv_count
                if key == "GGUF.version":
                    version = int(fld.parts[fld.data[0]][0])
                continue
            metadata[key], metadata_types[key] = _decode_field(fld)
    except (UnicodeDecodeError, IndexError) as e:
        raise ValueError(f"{path} has corrupt metadata: {e}") from e

    size = path.stat().st_size
    raw: dict[str, Any] = {}
    types: dict[str, str] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for t in reader.tensors:
        if t.data_offset + t.n_bytes > size or t.data.nbytes != t.n_bytes:
            raise ValueError(f"{path} is truncated: tensor {t.name!r} runs past the end of the file")
        raw[t.name] = t
        types[t.name] = t.tensor_type.name
        shapes[t.name] = tuple(int(d) for d in reversed(t.shape.tolist()))  # GGUF dims are reversed
    return GGUFFile(path, version, metadata, metadata_types, types, shapes, _LazyTensors(path, raw))


def _dequantize(path: Path, t: Any) -> torch.Tensor:
    """One gguf `ReaderTensor` -> float32 torch tensor in PyTorch order."""
    from gguf import quants

    qtype = t.tensor_type.name
    if qtype not in SUPPORTED_TYPES:
        raise ValueError(
            f"tensor {t.name!r} in {path} has type {qtype}, which llmlab cannot dequantise; "
            f"supported: {', '.join(SUPPORTED_TYPES)}"
        )
    shape = tuple(int(d) for d in reversed(t.shape.tolist()))
    if qtype in _TORCH_DEQUANT:  # the common llama.cpp presets, vectorised in torch (several times faster)
        blocks = torch.from_numpy(np.asarray(t.data, dtype=np.uint8).reshape(-1, BLOCK_BYTES[qtype]).copy())
        return _TORCH_DEQUANT[qtype](blocks).reshape(shape)
    values = quants.dequantize(t.data, t.tensor_type)  # (..., ne0) float32 (F32: a view into the file)
    return torch.from_numpy(np.array(values, dtype=np.float32).reshape(shape))


# Block layouts of ggml-quants.h (32 values per block): Q8_0 = {f16 d; int8 q[32]}: x = d * q.
# Q4_0 = {f16 d; uint8 qs[16]}: x = d * (nibble - 8). Q4_1 = {f16 d; f16 m; uint8 qs[16]}: x = d * nibble + m.
# Byte j of qs holds value j in its low nibble and value j + 16 in its high nibble.
BLOCK_BYTES = {"Q8_0": 34, "Q4_0": 18, "Q4_1": 20}


def _f16(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """The float16 at byte `start` of every block, as float32 (n_blocks, 1)."""
    return blocks[:, start : start + 2].contiguous().view(torch.float16).float()


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """(n_blocks, 16) packed bytes -> (n_blocks, 32) values 0..15 in ggml order (low nibbles, then high)."""
    return torch.cat([qs & 0x0F, qs >> 4], dim=1).float()


_TORCH_DEQUANT = {
    "Q8_0": lambda b: _f16(b, 0) * b[:, 2:].contiguous().view(torch.int8).float(),
    "Q4_0": lambda b: _f16(b, 0) * (_nibbles(b[:, 2:]) - 8.0),
    "Q4_1": lambda b: _f16(b, 0) * _nibbles(b[:, 4:]) + _f16(b, 2),
}


# ---------------------------------------------------------------------------------------------- writing


def _value_type(key: str, value: Any, type_name: str | None) -> tuple[Any, Any]:
    """Pick the GGUF (type, item type) for a metadata value, honouring an explicit type name."""
    from gguf import GGUFValueType as V

    if type_name is not None:
        if type_name.startswith("ARRAY["):
            return V.ARRAY, V[type_name[6:-1]]
        return V[type_name], None
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"metadata key {key!r} is an empty list; GGUF cannot store empty arrays")
        item, _ = _value_type(key, value[0], None)
        if item == V.UINT32 and any(isinstance(v, int) and v < 0 for v in value):
            item = V.INT32
        return V.ARRAY, item
    if isinstance(value, bool):  # before int: bool is an int
        return V.BOOL, None
    if isinstance(value, int):
        # llama.cpp reads hyper-parameters as uint32; fall back to wider/signed types when needed.
        if 0 <= value < 2**32:
            return V.UINT32, None
        return (V.INT64 if value < 0 else V.UINT64), None
    if isinstance(value, float):
        return V.FLOAT32, None  # what llama.cpp expects (it rejects float64 hyper-parameters)
    if isinstance(value, str):
        return V.STRING, None
    raise ValueError(f"metadata key {key!r} has a value of type {type(value).__name__}; use str/int/float/bool/list")


def _storage_type(name: str, tensor: torch.Tensor, dtype: str) -> str:
    """The type a tensor is written in. Like llama.cpp's converter: 1-D tensors (norms, biases) stay F32,
    and a Q8_0 tensor whose rows are not a multiple of the 32-value block falls back to F16."""
    if tensor.ndim <= 1 or name.endswith("_norm.weight"):
        return "F32"
    if dtype == "Q8_0" and tensor.shape[-1] % 32 != 0:
        return "F16"
    return dtype


def write_gguf(
    path: str | os.PathLike,
    arch: str,
    metadata: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
    dtype: str = "F32",
    *,
    metadata_types: Mapping[str, str] | None = None,
) -> Path:
    """Write a GGUF file atomically (temp file in the same folder, then rename).

    Args:
        path: destination `.gguf` file.
        arch: `general.architecture` (e.g. `"llama"`); hyper-parameter keys are usually prefixed by it.
        metadata: key -> str/int/float/bool/list. ints become uint32 (int64/uint64 when out of range),
            floats float32, unless `metadata_types` says otherwise. `general.architecture` may be present
            but must equal `arch`.
        tensors: name -> tensor in PyTorch order (GGUF names, e.g. `blk.0.attn_q.weight`).
        dtype: storage type for matrices: `"F32"`, `"F16"` or `"Q8_0"`. 1-D tensors are always F32.
        metadata_types: optional key -> GGUF type name (as in `GGUFFile.metadata_types`) to force types.

    Returns:
        The path written.
    """
    from gguf import GGMLQuantizationType, GGUFWriter, quants

    if dtype not in WRITE_DTYPES:
        raise ValueError(f"cannot write GGUF tensors as {dtype!r}; choose one of {', '.join(WRITE_DTYPES)}")
    if metadata.get("general.architecture", arch) != arch:
        raise ValueError(f"metadata general.architecture={metadata['general.architecture']!r} but arch={arch!r}")
    metadata_types = metadata_types or {}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    writer = GGUFWriter(None, arch)  # adds general.architecture itself
    for key, value in metadata.items():
        if key == "general.architecture":
            continue
        vtype, sub = _value_type(key, value, metadata_types.get(key))
        writer.add_key_value(key, list(value) if sub is not None else value, vtype, sub_type=sub)
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise ValueError(f"tensor {name!r} must be a floating-point torch.Tensor, got {type(tensor).__name__}")
        array = np.ascontiguousarray(tensor.detach().to(torch.float32).cpu().numpy())
        qtype = GGMLQuantizationType[_storage_type(name, tensor, dtype)]
        # Quantised data is uint8 (rows, bytes); the writer turns that back into the logical shape.
        writer.add_tensor(name, quants.quantize(array, qtype), raw_dtype=qtype)

    def write(tmp: Path) -> None:
        try:
            writer.write_header_to_file(tmp)
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()

    atomic_write(path, write)
    return path
