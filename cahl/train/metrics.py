"""Metrics: one JSON line per step (metrics.jsonl) and the same scalars in TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path


class MetricsLogger:
    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tb"))

    def log(self, step: int, metrics: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}, default=float) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(k, v, step)
            self.tb.flush()

    def truncate_after(self, step: int) -> None:
        """On resume: drop lines logged after the checkpoint so the log matches an uninterrupted run."""
        if not self.path.is_file():
            return
        kept = []
        lines = self.path.read_text().splitlines()
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if i == len(lines) - 1:  # torn by a kill mid-write; it was after the checkpoint anyway
                    print(f"cahl: dropping a partly written last line of {self.path}")
                    continue
                raise
            if row["step"] <= step:
                kept.append(line)
        self.path.write_text("".join(l + "\n" for l in kept))

    def reset(self) -> None:
        """A run starting at step 0 owns the log: lines of an earlier run in the same folder go."""
        self.path.write_text("")


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.is_file() else []
