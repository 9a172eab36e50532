"""Checkpoints as arrays and plain metadata: safe to read from an untrusted run directory.

A checkpoint is one ``.npz`` file (a zip of ``.npy`` arrays) written with :func:`save` and read
with :func:`load`:

* every array (numpy arrays, numpy scalars, torch tensors, moved to the CPU) is stored as an
  entry ``a<N>``, read back with ``np.load(..., allow_pickle=False)``: numeric arrays only, an
  object array is refused;
* everything else (dicts, lists, tuples, ``str``/``int``/``float``/``bool``/``None``) is one JSON
  document in the entry ``__meta__`` (UTF-8 bytes as a ``uint8`` array) in which an array is
  ``{"__array__": "a<N>"}``, a tuple ``{"__tuple__": [...]}`` and a dict with keys that are not
  all strings (torch's optimizer state) ``{"__items__": [[key, value], ...]}``.

Nothing is unpickled, so a crafted file cannot run code: a file that is not such a zip (a pickle,
an old ``torch.save`` checkpoint) is refused with :class:`CheckpointError`. Loading needs numpy
only; :func:`to_torch` turns the arrays of a loaded tree into torch tensors (``state_dict``\\ s for
``load_state_dict``) and :func:`model_state_dict` gives a checkpoint's model weights as one.

Writing is atomic: a temp file in the same directory, flushed and fsync-ed, then ``os.replace``-d.
"""

from __future__ import annotations

import io
import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CheckpointError", "save", "load", "to_torch", "model_state_dict", "FORMAT", "VERSION"]

FORMAT = "fastsample-checkpoint"
VERSION = 1
_META = "__meta__"
_MARKERS = ("__array__", "__tuple__", "__items__")
_ZIP_MAGIC = b"PK\x03\x04"


class CheckpointError(ValueError):
    """A checkpoint file that is not in this format (or is damaged); nothing in it was executed."""


def _is_tensor(obj: Any) -> bool:
    torch = sys.modules.get("torch")  # a tensor can only exist when torch was imported
    return torch is not None and isinstance(obj, torch.Tensor)


def _encode(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if _is_tensor(obj):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, (np.ndarray, np.generic)):
        arr = np.asarray(obj)
        if arr.dtype.hasobject:
            raise TypeError("checkpoint: object arrays cannot be stored")
        name = f"a{len(arrays)}"
        arrays[name] = arr
        return {"__array__": name}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not any(k in _MARKERS for k in obj):
            return {k: _encode(v, arrays) for k, v in obj.items()}
        for k in obj:
            if not (k is None or isinstance(k, (bool, int, float, str))):
                raise TypeError(f"checkpoint: dict key {k!r} of type {type(k).__name__} cannot be stored")
        return {"__items__": [[k, _encode(v, arrays)] for k, v in obj.items()]}
    raise TypeError(f"checkpoint: a {type(obj).__name__} cannot be stored (arrays and plain data only)")


def _decode(obj: Any, npz: Any, path: Path) -> Any:
    if isinstance(obj, list):
        return [_decode(v, npz, path) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        (key, value), = obj.items()
        if key == "__array__":
            if not isinstance(value, str) or value not in npz.files or value == _META:
                raise CheckpointError(f"{path}: damaged checkpoint (array {value!r} missing)")
            try:
                return npz[value]
            except ValueError as err:  # an object (pickled) array with allow_pickle=False
                raise CheckpointError(f"{path}: array {value!r} is not a plain numeric array ({err}); "
                                      "refused, nothing was unpickled") from None
        if key == "__tuple__" and isinstance(value, list):
            return tuple(_decode(v, npz, path) for v in value)
        if key == "__items__" and isinstance(value, list):
            if not all(isinstance(kv, list) and len(kv) == 2 for kv in value):
                raise CheckpointError(f"{path}: damaged checkpoint (bad item list)")
            if not all(k is None or isinstance(k, (bool, int, float, str)) for k, _ in value):
                raise CheckpointError(f"{path}: damaged checkpoint (bad dict key)")
            return {k: _decode(v, npz, path) for k, v in value}
    return {k: _decode(v, npz, path) for k, v in obj.items()}


def save(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (nested dicts/lists/tuples of plain values, numpy arrays and torch
    tensors) to ``path`` atomically."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(state, arrays)
    meta = json.dumps({"format": FORMAT, "version": VERSION, "state": tree}).encode()
    arrays[_META] = np.frombuffer(meta, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path) -> dict[str, Any]:
    """The state written by :func:`save`, with numpy arrays (no torch needed, nothing unpickled).
    Raises :class:`CheckpointError` for anything else (e.g. a pickle or an old ``.pt`` file)."""
    path = Path(path)
    if not path.is_file():  # a device, a FIFO or a directory where the file should be
        raise CheckpointError(f"{path}: not a regular file; refused")
    data = path.read_bytes()
    if not data.startswith(_ZIP_MAGIC):
        kind = "a pickle (an old torch.save checkpoint, or a crafted file)" if data[:1] == b"\x80" else "not a zip"
        raise CheckpointError(f"{path}: not a fastsample checkpoint ({kind}); refused without unpickling it. "
                              "Checkpoints are now .npz arrays + JSON metadata")
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise CheckpointError(f"{path}: damaged checkpoint ({err})") from None
    if not hasattr(npz, "files"):
        raise CheckpointError(f"{path}: not a fastsample checkpoint (a single array, not an archive)")
    with npz:
        if _META not in npz.files:
            raise CheckpointError(f"{path}: not a fastsample checkpoint (no {_META} entry)")
        try:
            raw = npz[_META]
            meta = json.loads(raw.tobytes().decode())
        except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError, RecursionError) as err:
            raise CheckpointError(f"{path}: damaged checkpoint metadata ({err})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a fastsample checkpoint (format {meta.get('format') if isinstance(meta, dict) else None!r})")
        if meta.get("version") != VERSION:
            raise CheckpointError(f"{path}: checkpoint format version {meta.get('version')!r}; this fastsample "
                                  f"reads version {VERSION}")
        try:
            state = _decode(meta.get("state"), npz, path)
        except (zipfile.BadZipFile, OSError, EOFError, RecursionError) as err:
            raise CheckpointError(f"{path}: damaged checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: damaged checkpoint (state is not a dict)")
    return state


def to_torch(tree: Any) -> Any:
    """``tree`` with every numpy array replaced by a torch tensor (a copy), for ``load_state_dict``
    (model, optimizer, generator states)."""
    import torch

    if isinstance(tree, np.ndarray):
        return torch.from_numpy(np.array(tree, copy=True))
    if isinstance(tree, dict):
        return {k: to_torch(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [to_torch(v) for v in tree]
    if isinstance(tree, tuple):
        return tuple(to_torch(v) for v in tree)
    return tree


def model_state_dict(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A loaded checkpoint's model weights as a torch ``state_dict`` (``ActorCritic.load_state_dict``)."""
    from collections import OrderedDict

    return OrderedDict((k, to_torch(v)) for k, v in ckpt["runner"]["model"].items())
