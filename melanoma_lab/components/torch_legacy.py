"""Read a PyTorch state dict saved in the legacy (pre-zip, torch < 1.6) format with numpy alone: no torch.

The file is five pickles and then raw bytes (torch/serialization.py, ``_legacy_save``):
1. a magic number, 2. the protocol version (1001), 3. ``sys_info`` (byte order, sizes of C short/int/long),
4. the object itself, whose tensors are ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``
   calls and whose storages are persistent ids ``("storage", <type>, key, location, numel[, view])``,
5. the list of storage keys in the order their bytes follow; then, per key, an int64 element count and the
   storage's elements in the byte order ``sys_info`` names.
Only plain data is unpickled: any global other than the few a state dict needs is refused.
"""

from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                  "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                  "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class LegacyCheckpointError(ValueError):
    """The file is not a legacy PyTorch checkpoint this reader can take."""


class _Storage:
    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype, self.numel = np.dtype(dtype), numel
        self.array: np.ndarray | None = None


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self) -> np.ndarray:
        data = self.storage.array
        itemsize = data.itemsize
        view = np.lib.stride_tricks.as_strided(data[self.offset:], shape=self.size,
                                               strides=[s * itemsize for s in self.stride])
        return np.array(view)  # a copy: the state dict owns its arrays


class _StorageType:
    def __init__(self, name: str):
        if name not in STORAGE_DTYPES:
            raise LegacyCheckpointError(f"unsupported storage type torch.{name}")
        self.dtype = STORAGE_DTYPES[name]


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _Tensor(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def __init__(self, handle, storages: dict[str, _Storage]):
        super().__init__(handle)
        self.storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return _rebuild_tensor_v2
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        raise LegacyCheckpointError(f"refusing to unpickle {module}.{name}: not part of a plain state dict")

    def persistent_load(self, saved_id):
        kind, storage_type, key, _location, numel, *view = saved_id
        if kind != "storage" or view and view[0] is not None:
            raise LegacyCheckpointError(f"unsupported persistent id {saved_id!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type.dtype, numel)
        return self.storages[key]


def read_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of the legacy-format state dict at ``path``, as numpy arrays in their saved shapes."""
    path = Path(path)
    with path.open("rb") as handle:
        try:
            magic = pickle.load(handle)
        except Exception as error:  # noqa: BLE001 - any unpickling error means "not this format"
            raise LegacyCheckpointError(f"{path}: not a legacy PyTorch checkpoint ({error})") from error
        if magic != MAGIC_NUMBER:
            raise LegacyCheckpointError(f"{path}: not a legacy PyTorch checkpoint (a zip-format file, saved by "
                                        "torch >= 1.6, needs torch.load)")
        if (protocol := pickle.load(handle)) != PROTOCOL_VERSION:
            raise LegacyCheckpointError(f"{path}: unsupported protocol version {protocol}")
        sys_info = pickle.load(handle)
        order = "<" if sys_info.get("little_endian", True) else ">"
        storages: dict[str, _Storage] = {}
        state = _Unpickler(handle, storages).load()
        keys = pickle.load(handle)
        for key in keys:
            storage = storages[key]
            (numel,) = struct.unpack(f"{order}q", handle.read(8))
            if numel != storage.numel:
                raise LegacyCheckpointError(f"{path}: storage {key} holds {numel} elements, its tensors say "
                                            f"{storage.numel}")
            raw = handle.read(numel * storage.dtype.itemsize)
            if len(raw) != numel * storage.dtype.itemsize:
                raise LegacyCheckpointError(f"{path}: truncated in storage {key}")
            storage.array = np.frombuffer(raw, dtype=storage.dtype.newbyteorder(order)).astype(storage.dtype)
    if not isinstance(state, dict):
        raise LegacyCheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return {name: tensor.to_numpy() for name, tensor in state.items() if isinstance(tensor, _Tensor)}
