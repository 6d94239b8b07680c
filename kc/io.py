"""Atomic, reproducible writes: JSON, CSV, text, npz, torch files and whole folders.

Every output of kc is written under a temporary name and then renamed into place, so a killed run
never leaves a half-written file that looks finished. Temporary files live in ``.kc-tmp/`` at the
root of the DVC repository the output belongs to (outside every folder a stage depends on, so a
killed stage changes no other stage's dependency hash; git and DVC ignore it), or beside the output
outside a repository. The same content always gives the same bytes: no timestamps in npz archives,
torch files saved under their final name (torch names the archive after the file).

    write_json("metrics/x.json", {"a": 1.0})
    with atomic_dir("results/stability/vgg_s") as tmp:      # build a folder, then swap it in
        write_npz(tmp / "moments.npz", delta=...)
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

STAGING = ".kc-tmp"


def staging_dir(path: str | os.PathLike) -> Path:
    """Where temporary files for ``path`` go: ``<repo>/.kc-tmp`` when ``path`` is inside a DVC
    repository (a folder holding ``.dvc/``), else ``path``'s own folder."""
    path = Path(path).absolute()
    for parent in path.parents:
        if (parent / ".dvc").is_dir():
            staging = parent / STAGING
            staging.mkdir(exist_ok=True)
            return staging
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path with ``path``'s file name; on success it replaces ``path``, else it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=staging_dir(path)))
    tmp = holder / path.name
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces the folder ``path`` (the old one is
    removed), else it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=staging_dir(path)))
    tmp = holder / "new"
    tmp.mkdir()
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if path.exists() or path.is_symlink():
            os.rename(path, holder / "old")
        os.rename(tmp, path)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def clean(value: Any) -> Any:
    """JSON-safe: numpy/torch scalars and arrays to Python numbers and lists; NaN and inf become None."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if hasattr(value, "tolist"):
        return clean(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(clean(data), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON document at ``path``; ValueError naming the file when it is not valid JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a valid JSON file ({exc}); delete it and rerun the stage that writes it") from None


def write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """Rows of one dict each (the union of their keys, in order of appearance, is the header)."""
    import csv
    import io

    header: list[str] = []
    for row in rows:
        header += [k for k in row if k not in header]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(clean(rows))
    write_text(path, buf.getvalue())


def write_npz(path: str | os.PathLike, **arrays) -> None:
    """``np.savez_compressed`` with fixed timestamps, so the same arrays give the same bytes."""
    import numpy as np

    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, value in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(info, "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)


def read_npz(path: str | os.PathLike) -> dict:
    """All arrays of an npz file (loaded, not lazy); ValueError naming the file when it is damaged."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError, EOFError
        raise ValueError(f"{path}: not a readable npz file ({type(exc).__name__}); delete it and rerun the "
                         "stage that writes it") from None


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save, atomically and byte-reproducibly (the temporary file has the final file's name)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
