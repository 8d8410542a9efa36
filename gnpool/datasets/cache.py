"""On-disk cache of generated splits.

A cache file is a magic line, one line of JSON metadata (task, split, parameters, seed,
payload length and SHA-256) and a payload written by ``torch.save`` holding the collated
tensors. Files are written to a temporary name and renamed into place, so a reader never
sees a partial file under the final name; a file that is damaged anyway fails the length
or checksum test and :func:`read` raises :class:`CacheError`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import platformdirs
import torch

#: Bump when the payload layout or any generator changes, so old files are not reused.
FORMAT_VERSION = 1
MAGIC = b"GNPOOL-DATASET\n"
ENV_VAR = "GNPOOL_DATA_DIR"


class CacheError(Exception):
    """A cache file is missing, truncated, corrupted or from another configuration."""


def default_root() -> Path:
    """``$GNPOOL_DATA_DIR``, else ``<repo>/datasets/cache`` in a source checkout, else the
    per-user cache directory (``~/.cache/gnpool`` on Linux, from ``platformdirs``)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]
    cards = repo / "datasets"
    # In site-packages a sibling "datasets" folder is Hugging Face's package, not ours:
    # a checkout has pyproject.toml next to it and no __init__.py inside.
    if (cards.is_dir() and (repo / "pyproject.toml").is_file()
            and not (cards / "__init__.py").exists()):
        return cards / "cache"
    return platformdirs.user_cache_path("gnpool")


def _canonical(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    return obj


def cache_key(task: str, split: str, params: Mapping[str, Any], seed: int) -> str:
    """SHA-256 of the canonical JSON of everything the split's content depends on."""
    spec = {"format": FORMAT_VERSION, "task": task, "split": split, "seed": seed,
            "params": _canonical(params)}
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def cache_file(root: str | os.PathLike, task: str, split: str, key: str) -> Path:
    """Path of the cache file of one split."""
    return Path(root) / task / f"{split}-{key[:20]}.gnpd"


def write(path: Path, payload: Any, meta: Mapping[str, Any]) -> None:
    """Save ``payload`` (tensors in nested dicts) with ``meta`` to ``path`` atomically."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    header = dict(_canonical(meta), format=FORMAT_VERSION, length=len(data),
                  sha256=hashlib.sha256(data).hexdigest())
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name in the same directory, so os.replace is atomic; opened like any new
    # file (unlike mkstemp's 0600) so the cache gets the usual permissions.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(MAGIC)
            f.write(json.dumps(header, sort_keys=True).encode() + b"\n")
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_header(path: Path) -> dict[str, Any]:
    """The JSON metadata of a cache file (no payload check)."""
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise CacheError("not a gnpool dataset file")
        try:
            return json.loads(f.readline())
        except (ValueError, UnicodeDecodeError) as err:
            raise CacheError(f"unreadable header ({err})") from None


def read(path: Path, key: str) -> Any:
    """Load and verify the payload of ``path``, which must have been written for ``key``.

    Raises:
        CacheError: the file is unreadable, truncated, fails its checksum, or belongs to
            another configuration.
    """
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CacheError(f"cannot read it ({err})") from None
    if not raw.startswith(MAGIC):
        raise CacheError("not a gnpool dataset file")
    end = raw.find(b"\n", len(MAGIC))
    try:
        header = json.loads(raw[len(MAGIC):end])
        length, digest = int(header["length"]), str(header["sha256"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise CacheError(f"unreadable header ({err!r})") from None
    if header.get("format") != FORMAT_VERSION or header.get("key") != key:
        raise CacheError("written for another configuration or format version")
    data = memoryview(raw)[end + 1:]
    if len(data) != length:
        raise CacheError(f"payload has {len(data)} bytes, expected {length}")
    if hashlib.sha256(data).hexdigest() != digest:
        raise CacheError("checksum mismatch")
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except Exception as err:  # any unpickling failure means a damaged file
        raise CacheError(f"payload does not load ({err!r})") from None


def load_or_generate(path: Path, key: str, meta: Mapping[str, Any],
                     generate: Callable[[], Any], check: Callable[[Any], None],
                     force: bool = False) -> tuple[Any, bool, float | None]:
    """The payload cached at ``path`` for ``key``, or ``generate()`` cached there.

    ``check(payload)`` raises :class:`CacheError` for a payload that reads back but is not
    what ``key`` stands for. A file that fails :func:`read` or ``check`` is regenerated
    with a warning; a cache that cannot be written only warns (the generated payload is
    still returned). The generation's wall time is stored with ``meta``.

    Returns:
        ``(payload, generated, generation_seconds)``: whether it was generated now, and
        the seconds its generation took (``None`` for a file written without them).
    """
    if path.exists() and not force:
        try:
            payload = read(path, key)
            check(payload)
            return payload, False, read_header(path).get("generation_seconds")
        except CacheError as err:
            warnings.warn(f"dataset cache file {path} is unusable: {err}; regenerating it",
                          RuntimeWarning, stacklevel=3)
    start = time.perf_counter()
    payload = generate()
    seconds = time.perf_counter() - start
    try:
        write(path, payload, {**meta, "generation_seconds": seconds})
    except OSError as err:
        warnings.warn(f"cannot write dataset cache file {path}: {err}", RuntimeWarning,
                      stacklevel=3)
    return payload, True, seconds
