"""Checkpoints that are written atomically and verified before they are loaded.

Layout: RUN/checkpoints/step_000012/ {<role>/ (PEFT adapter), optim_<role>.pt, state.pt,
MANIFEST.json (sha256 of every file)}. A checkpoint is written into a temporary folder and
renamed into place only when complete; loading re-hashes every file, and a folder whose manifest
is missing or does not match is skipped (with a message), never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import torch

MANIFEST = "MANIFEST.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rng_state() -> dict:
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(run_dir: Path, step: int, policies, optimizers: dict, state: dict, keep: int = 2) -> Path:
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    policies.save(tmp)
    for role, opt in optimizers.items():
        torch.save(opt.state_dict(), tmp / f"optim_{role}.pt")
    torch.save({**state, "step": step, "rng": rng_state()}, tmp / "state.pt")
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    manifest = {str(p.relative_to(tmp)): _sha256(p) for p in files}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    for p in files + [tmp / MANIFEST]:  # make the bytes durable before the rename publishes them
        with open(p, "rb") as f:
            os.fsync(f.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(root.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def verify(folder: Path) -> bool:
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        return False
    return all((folder / rel).is_file() and _sha256(folder / rel) == digest for rel, digest in manifest.items())


def latest_checkpoint(run_dir: Path) -> Path | None:
    """Newest complete, verified checkpoint; corrupt or partial ones are reported and skipped."""
    root = Path(run_dir) / "checkpoints"
    for folder in sorted(root.glob("step_*"), reverse=True):
        if verify(folder):
            return folder
        print(f"cahl: skipping checkpoint {folder}: incomplete or checksum mismatch")
    return None


def load_state(folder: Path) -> dict:
    return torch.load(folder / "state.pt", weights_only=False)
