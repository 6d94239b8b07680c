"""Finished work items of a stage that did not finish, reused when it reruns.

A stage that trains several nets or fits several g's writes each finished item to the journal
(``.kc-tmp/journal/<stage>/``, outside every folder DVC hashes). When the stage is killed and
rerun, items whose fingerprint is unchanged are copied back instead of recomputed; a stage that
completes clears its journal. The fingerprint covers the item's spec, its inputs' fingerprints and
the source of the code that computes it, so a code or params change never reuses stale work.

    journal = Journal(root, "train@vgg_s", code=["kc/train.py", "kc/models.py"])
    key = journal.key(net=spec, task=manifest)
    if (path := journal.get(key, ".pt")) is None:
        ... train; journal.put(key, checkpoint_path)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from kc.io import STAGING


class Journal:
    def __init__(self, root: str | Path, stage: str, code: list[str] | tuple[str, ...] = ()):
        self.root = Path(root)
        self.dir = self.root / STAGING / "journal" / stage.replace("@", "_")
        kc_dir = Path(__file__).resolve().parents[1]
        digest = hashlib.sha256()
        for name in sorted(code):
            digest.update(name.encode())
            digest.update((kc_dir.parent / name).read_bytes())
        self._code = digest.hexdigest()

    def key(self, **spec: Any) -> str:
        text = json.dumps(spec, sort_keys=True, default=str)
        return hashlib.sha256((self._code + text).encode()).hexdigest()[:24]

    def get(self, key: str, suffix: str) -> Path | None:
        path = self.dir / f"{key}{suffix}"
        return path if path.is_file() else None

    def put(self, key: str, source: str | Path, suffix: str) -> None:
        """Copy a finished item in (written under a temporary name, then renamed)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{key}{suffix}.tmp"
        shutil.copyfile(source, tmp)
        os.replace(tmp, self.dir / f"{key}{suffix}")

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
