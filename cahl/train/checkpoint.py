"""Checkpoints that are written atomically and verified before they are loaded.

Layout: RUN/checkpoints/step_000012/ {<role>/ (PEFT adapter), optim_<role>.pt, state.pt,
MANIFEST.json (sha256 of every file)}. A checkpoint is written into a temporary folder and
renamed into place only when complete; loading re-hashes every file, and a folder whose manifest
is missing or does not match is skipped (with a message), never loaded. `--resume` in a run whose
checkpoints all fail that check stops instead of starting over (`checkpoint_to_resume`). Files are
read with `torch.load(weights_only=True)`: tensors and plain data only, so a crafted `.pt` file
cannot run code (unpickling arbitrary objects can).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import shutil
from pathlib import Path

import torch

from cahl.types import CahlInputError

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


def save_checkpoint(run_dir: Path, step: int, policies, optimizer_states: dict, state: dict, keep: int = 2,
                    adapter_states: dict | None = None) -> Path:
    """optimizer_states: name -> what sharding.optimizer_state returns (an optimizer's state_dict);
    adapter_states: policies.adapter_states(), gathered beforehand in a sharded run."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}"
    for torn in root.glob(".tmp_step_*"):  # writes cut short by a killed run
        shutil.rmtree(torn, ignore_errors=True)
    tmp.mkdir()
    policies.save(tmp, adapter_states)
    for name, optimizer_state in optimizer_states.items():
        torch.save(optimizer_state, tmp / optimizer_file(name))
    torch.save({**state, "step": step, "rng": rng_state()}, tmp / STATE)
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    manifest = {str(p.relative_to(tmp)): _sha256(p) for p in files}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    for p in files + [tmp / MANIFEST]:  # make the bytes durable before the rename publishes them
        with open(p, "rb") as f:
            os.fsync(f.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    # Checkpoints newer than this one are stale: another run's in this folder, or this run's before
    # it resumed from an older one. Kept, they would be what --resume loads, and pruning would
    # delete the checkpoint just written instead of them.
    steps = sorted(root.glob("step_*"))
    for old in [p for p in steps if p.name > final.name] + [p for p in steps if p.name <= final.name][:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


STATE = "state.pt"  # step, counters and RNG states


def optimizer_file(role: str) -> str:
    """The file a role's optimizer state is saved in."""
    return f"optim_{role}.pt"


def save(run_dir: Path, step: int, state) -> Path | None:
    """Checkpoint a TrainState (train/loop.py) after `step`. Every process calls it (sharded adapters
    and optimizer states are gathered in collectives); the main process writes. Returns the folder
    (None on other processes)."""
    from cahl.train import sharding
    from cahl.train.dist import dist

    optims = {r: sharding.optimizer_state(state.policies, r, o) for r, o in state.optimizers.items()}
    adapters = state.policies.adapter_states()
    if not dist().is_main:
        return None
    return save_checkpoint(run_dir, step, state.policies, optims, {"counters": dict(state.counters)},
                           adapter_states=adapters)


def restore(folder: Path, state) -> int:
    """Load a checkpoint's optimizer states, RNG states and counters into a TrainState whose policies
    were built from the checkpoint's adapters; returns the step it continues after."""
    from collections import Counter

    from cahl.train import sharding

    saved = load_state(folder)
    for role, optimizer in state.optimizers.items():
        sharding.load_optimizer_state(state.policies, role, optimizer, saved_optimizer(folder, role))
    set_rng_state(saved["rng"])
    state.counters = Counter(saved["counters"])
    return saved["step"]


def checkpoint_problem(folder: Path) -> str | None:
    """Why `folder` must not be loaded (None if it is complete and every file matches its hash).

    The manifest must be a readable JSON object naming state.pt: a manifest of garbage bytes or an
    empty one ("{}", which every folder would match) means the checkpoint is not trustworthy.
    """
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return f"no {MANIFEST} (the write did not finish)"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError both
        return f"{MANIFEST} is unreadable ({type(e).__name__})"
    if not (isinstance(manifest, dict) and "state.pt" in manifest
            and all(isinstance(k, str) and isinstance(v, str) for k, v in manifest.items())):
        return f"{MANIFEST} is not a {{file: sha256}} object naming state.pt"
    for rel, digest in manifest.items():
        if not (folder / rel).is_file():
            return f"{rel} is missing"
        if _sha256(folder / rel) != digest:
            return f"{rel} does not match its checksum"
    return None


def verify(folder: Path) -> bool:
    return checkpoint_problem(folder) is None


def latest_checkpoint(run_dir: Path) -> Path | None:
    """Newest complete, verified checkpoint; corrupt or partial ones are reported and skipped."""
    root = Path(run_dir) / "checkpoints"
    for folder in sorted(root.glob("step_*"), reverse=True):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        print(f"cahl: skipping checkpoint {folder}: {problem}; trying the previous one")
    return None


def checkpoint_to_resume(run_dir: Path, restart: bool = False) -> Path | None:
    """What `--resume` continues from: the newest verified checkpoint, or None in a run that has
    no checkpoint yet. A run whose checkpoints all fail verification is an error naming each of
    them, raised before anything is changed (starting over would wipe metrics.jsonl, and the first
    save would delete those checkpoints), unless `restart` (`--restart`) allows starting over."""
    found = latest_checkpoint(run_dir)
    untrusted = sorted(Path(run_dir, "checkpoints").glob("step_*"), reverse=True)
    if found is not None or not untrusted:
        return found
    if restart:
        print(f"cahl: --restart: no checkpoint in {Path(run_dir, 'checkpoints')} can be trusted; starting again from step 0")
        return None
    named = "; ".join(f"{folder.name}: {checkpoint_problem(folder)}" for folder in untrusted)
    raise CahlInputError(f"--resume: no checkpoint in {Path(run_dir, 'checkpoints')} passes verification ({named}); "
                         "nothing was changed. Repair or remove them, or pass --restart to start this run again from "
                         "step 0 (its metrics.jsonl and these checkpoints are then replaced)")


def _load(path: Path):
    """A checkpoint file's tensors and plain data; anything else is refused, never unpickled."""
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CahlInputError(f"{path}: holds objects other than tensors and plain data, which are not loaded "
                             f"(unpickling them could run code): {str(e).splitlines()[0]}") from None


def load_state(folder: Path) -> dict:
    """state.pt: step, counters and RNG states."""
    return _load(Path(folder) / STATE)


def saved_optimizer(folder: Path, name: str, optional: bool = False) -> dict | None:
    """The optimizer state saved as `name` (a role, or sft_<role>); where the checkpoint has none,
    None if `optional`, else an error."""
    path = Path(folder) / optimizer_file(name)
    if not path.is_file():
        if optional:
            return None
        raise CahlInputError(f"checkpoint {folder} has no {path.name}: it was saved by a run that does not train "
                             f"{name!r} (another train.schedule?)")
    return _load(path)
