"""Metrics: one JSON line per step (metrics.jsonl), the same scalars in TensorBoard (OUT/tb), and
in the experiment trackers of train.report_to (wandb, mlflow, ...) through accelerate's trackers."""

from __future__ import annotations

import json
from pathlib import Path

TRACKER_PROJECT = "cahl"
TRACKER_DIR = "trackers"  # OUT/trackers: where trackers that keep local files write them


class MetricsLogger:
    def __init__(self, run_dir: Path, tensorboard: bool = True, report_to: list[str] = (), config: dict | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tb"))
        self.trackers = start_trackers(list(report_to), Path(run_dir), config or {})

    def log(self, step: int, metrics: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}, default=float) + "\n")
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)
            self.tb.flush()
        for tracker in self.trackers:
            tracker.log(scalars, step=step)

    def close(self) -> None:
        """End the trackers' runs (wandb and mlflow upload or mark the run finished here)."""
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []
        if self.tb is not None:
            self.tb.close()

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


def start_trackers(names: list[str], run_dir: Path, config: dict) -> list:
    """accelerate's trackers for `names` (checked at config load: cahl.checks.trackers), started
    as `Accelerator.init_trackers` starts them, with the run's config stored flat ("train.lr_planner")."""
    if not names:
        return []
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    run_name = run_dir.resolve().name
    init_kwargs = {"wandb": {"name": run_name, "dir": str(run_dir)}, "mlflow": {"run_name": run_name},
                   "comet_ml": {}, "aim": {}, "clearml": {}, "dvclive": {}, "swanlab": {}, "trackio": {}}
    logging_dir = run_dir / TRACKER_DIR
    flat = flatten_config(config)
    started = []
    for name in names:
        cls = LOGGER_TYPE_TO_CLASS[name]
        tracker = (cls(TRACKER_PROJECT, logging_dir, **init_kwargs.get(name, {})) if cls.requires_logging_directory
                   else cls(TRACKER_PROJECT, **init_kwargs.get(name, {})))
        tracker.start()
        tracker.store_init_configuration(flat)
        started.append(tracker)
    return started


def flatten_config(config: dict, prefix: str = "") -> dict:
    """{"train": {"steps": 3}} -> {"train.steps": 3}; lists as their JSON text (trackers' hparams take scalars)."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_config(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.is_file() else []
