"""Atomic file output, content hashes and small I/O helpers shared by every subcommand.

Every artifact is written to a temporary sibling, flushed to disk and renamed into place, so an
interrupted run (a kill, a dead node, a full disk) never leaves a half-written result under its
final name that a later run (or Snakemake) would mistake for done. A temporary sibling left by a
killed process is removed by the next write of the same file on the same host.

Dict payloads written by :func:`torch_save` carry the SHA-256 of their content
(:data:`CONTENT_HASH`); :func:`torch_load` recomputes it, so a file damaged after it was written
(a flipped bit, a truncated copy, a file edited by hand) is refused with one line instead of
silently giving wrong numbers. :func:`write_json` can do the same for JSON results.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch

if TYPE_CHECKING:  # numpy is imported where it is used: nuwa/bench/gpu.sh runs with torch alone
    import numpy as np

from nuwa.core.errors import UserError

MiB = 1 << 20
CONTENT_HASH = "content_sha256"  # key of the content hash inside torch_save'd dicts and checksummed JSON
_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"


def _tmp_pattern(final: Path, suffix: str) -> re.Pattern:
    """Temporary siblings of ``final``: ``.{stem}.{host}-{pid}.{random}.tmp{suffix}``."""
    return re.compile(rf"^\.{re.escape(final.stem)}\.(?P<host>[^.]+)-(?P<pid>\d+)\.[^.]+\.tmp{re.escape(suffix)}$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(final: Path, suffix: str) -> int:
    """Delete temporary siblings of ``final`` left by dead processes of this host; returns how many."""
    pattern, removed = _tmp_pattern(final, suffix), 0
    for p in final.parent.glob(f".{glob_escape(final.stem)}.*.tmp{glob_escape(suffix)}"):
        m = pattern.match(p.name)
        if m and m["host"] == _HOST and not _alive(int(m["pid"])):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed += 1
    return removed


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds.

    A file is fsynced before the rename and the folder after it, so the final name never points
    at data that is not on disk yet.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = "" if is_dir else final.suffix
    remove_stale_temporaries(final, suffix)
    prefix, tail = f".{final.stem}.{_HOST}-{os.getpid()}.", f".tmp{suffix}"
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=tail, dir=final.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=tail, dir=final.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if not is_dir:
            _fsync(tmp)
            os.replace(tmp, final)
        else:
            _replace_dir(tmp, final)
        _fsync(final.parent)
    except BaseException as exc:
        full = isinstance(exc, DiskFull) or disk_full(exc, final.parent)  # before the temporary file frees its space
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        if full:  # an outer atomic_path (a folder being written) names its own final path instead
            raise DiskFull(f"no space left on the device of {final} while writing it (nothing was written); "
                           "free some space or point the work directory at a larger disk, then rerun") from exc
        raise


class DiskFull(UserError):
    """The disk filled up while an artifact was written (it was not written)."""


def disk_full(exc: BaseException, folder: Path) -> bool:
    """Did ``exc`` come from a full disk? ENOSPC/EDQUOT, or an error of a C++ writer (torch.save raises
    RuntimeError, not OSError) while the disk has less than 1 MiB left."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize < MiB


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move folder ``tmp`` onto ``final``; an old ``final`` is moved aside first, so that another process
    replacing the same folder at the same moment cannot make the rename fail (the last one wins)."""
    while True:
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{final.stem}.{_HOST}-{os.getpid()}.", suffix=".old", dir=final.parent))
            try:
                os.replace(final, trash / "old")
            except FileNotFoundError:
                pass  # the other writer moved it aside first
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(tmp, final)
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise


# ---------------------------------------------------------------- content hashes


def content_hash(obj: Any) -> str:
    """SHA-256 of a (nested) payload of dicts, lists, tensors, arrays and scalars, independent of file format."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, dict):
        h.update(b"{%d" % len(obj))
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(b"[%d" % len(obj) if isinstance(obj, list) else b"(%d" % len(obj))
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif _is_ndarray(obj):
        h.update(f"A{obj.dtype}{obj.shape}".encode())
        h.update(sys.modules["numpy"].ascontiguousarray(obj).tobytes())
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def _is_ndarray(obj: Any) -> bool:
    """Whether ``obj`` is a numpy array (there can be none before numpy is imported)."""
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(obj, numpy.ndarray)


def _corrupt(what: str, p: Path) -> UserError:
    return UserError(f"{what} {p} is corrupt (its content does not match the hash stored in it); "
                     "delete it and rerun the step that writes it")


def verify(obj: Any, what: str, p: Path) -> Any:
    """Check and strip the content hash of a loaded dict payload (payloads without one pass unchanged)."""
    if isinstance(obj, dict) and CONTENT_HASH in obj:
        stored = obj.pop(CONTENT_HASH)
        if stored != content_hash(obj):
            raise _corrupt(what, p)
    return obj


# ---------------------------------------------------------------- writers and readers


def write_json(path: str | os.PathLike, obj: Any, *, checksum: bool = False) -> None:
    """Write ``obj`` as JSON; ``checksum`` adds the hash of its content, which :func:`read_json` checks."""
    if checksum:
        obj = {**obj, CONTENT_HASH: json_hash(obj)}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def json_hash(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` atomically; a dict payload gets its content hash (checked by :func:`torch_load`)."""
    if isinstance(obj, dict):
        obj = {**obj, CONTENT_HASH: content_hash(obj)}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def require_file(path: str | os.PathLike, what: str, hint: str = "") -> Path:
    """Return ``Path(path)`` or raise a one-line :class:`UserError` naming the missing file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} not found: {p}" + (f" ({hint})" if hint else ""))
    return p


def read_text(path: str | os.PathLike, what: str, hint: str = "") -> str:
    """The UTF-8 text of a file a user passes; a missing file or bad encoding is one line."""
    p = require_file(path, what, hint)
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {p} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc


def read_json(path: str | os.PathLike, what: str, hint: str = "rerun the step that writes it") -> Any:
    """A JSON file; invalid JSON or a content hash that does not match is one line."""
    p = require_file(path, what, hint)
    try:
        obj = json.loads(read_text(p, what))
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} {p} is not valid JSON ({exc}); delete it and {hint}") from exc
    if isinstance(obj, dict) and CONTENT_HASH in obj:
        stored = obj.pop(CONTENT_HASH)
        if stored != json_hash(obj):
            raise _corrupt(what, p)
    return obj


HUB_HASH = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")  # torch.hub's convention: name-<sha256 prefix>.pth


def require_named_hash(path: str | os.PathLike, what: str) -> Path:
    """Downloaded weights named ``name-<sha256 prefix>.ext`` (torch.hub's convention) must hash to that prefix."""
    p = require_file(path, what)
    m = HUB_HASH.search(p.name)
    if m:
        digest = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        if not digest.hexdigest().startswith(m[1]):
            raise UserError(f"{what} {p} do not match the hash in their name (sha256 {digest.hexdigest()[:len(m[1])]}, "
                            f"name says {m[1]}): a damaged or different file; download the original again")
    return p


def torch_load(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    p = require_file(path, what)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # corrupt or truncated file
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise UserError(f"{what} {p} is unreadable ({type(exc).__name__}: {detail}); pass the right file, "
                        "or delete it and rerun the step that writes it") from exc
    return verify(obj, what, p)


def rgb_array(img, path: str | Path) -> np.ndarray:
    """uint8 [H, W, 3] of a loaded PIL image of any mode: 16-bit and 32-bit integer images are scaled
    (PIL's own conversion clips them to white), palette / CMYK / grey converted, and an image with
    transparent pixels refused (what is under them is undefined)."""
    import numpy as np

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or grey.max() > 255 else 255.0
        grey = np.clip(np.rint(grey * 255.0 / top), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        alpha = np.asarray(img.convert("RGBA"))[..., 3]
        if alpha.min() < 255:
            raise UserError(f"image {path} has transparent pixels ({int((alpha < 255).sum())} of {alpha.size}); "
                            "flatten it onto a background (e.g. save it as RGB JPEG/PNG) and pass that")
    return np.asarray(img.convert("RGB"))


def read_rgb(path: str | Path, what: str = "image", fix: str = "re-create or delete it") -> torch.Tensor:
    """uint8 [3, H, W] (RGB) of any image file PIL reads, converted by :func:`rgb_array`; a file PIL cannot
    read is one line: "{what} {path} is not a readable image (...); {fix}"."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            arr = rgb_array(img, path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{what} {path} is not a readable image ({exc}); {fix}") from exc
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)
