"""train.report_to: each step's scalars also go to accelerate's experiment trackers; names and
installed packages are checked when the config loads."""

import importlib.util

import pytest

from cahl.checks import TRACKERS
from cahl.config import load_config, to_dict
from cahl.train.metrics import MetricsLogger
from cahl.types import CahlInputError


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))  # the scalars' event file (the config's is in a subfolder)
    acc.Reload()
    return {tag: [(e.step, round(e.value, 6)) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_steps_reach_accelerates_tensorboard_tracker(tmp_path):
    cfg = load_config(None, ["train.report_to=[tensorboard]", f"out={tmp_path}"])
    logger = MetricsLogger(tmp_path, tensorboard=False, report_to=cfg.train.report_to, config=to_dict(cfg))
    logger.log(1, {"reward/planner": 0.25, "phase": "joint", "loss/executor": 1.5})
    logger.log(2, {"reward/planner": 0.75, "phase": "joint", "loss/executor": 1.0})
    logger.close()
    assert not (tmp_path / "tb").exists()  # train.tensorboard=false: only the tracker wrote
    scalars = _scalars(tmp_path / "trackers" / "cahl")  # accelerate's layout: logging dir / project
    assert scalars["reward/planner"] == [(1, 0.25), (2, 0.75)]
    assert scalars["loss/executor"] == [(1, 1.5), (2, 1.0)]
    assert "phase" not in scalars  # text is in metrics.jsonl only
    (hparams,) = (tmp_path / "trackers" / "cahl").rglob("hparams.yml")  # the run's config, flat
    assert "train.report_to: '[\"tensorboard\"]'" in hparams.read_text()
    assert [l for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]  # the JSONL log is unchanged


def test_an_unknown_tracker_is_an_error_at_config_load():
    with pytest.raises(CahlInputError, match=r"train.report_to\[1\].*one of \['tensorboard', 'wandb', 'mlflow'"):
        load_config(None, ["train.report_to=[tensorboard,wandbb]"])


def test_a_tracker_that_is_not_installed_names_the_pip_package():
    missing = [(name, pkg) for name, (module, pkg) in TRACKERS.items() if importlib.util.find_spec(module) is None]
    if not missing:
        pytest.skip("every tracker accelerate knows is installed here")
    name, package = missing[0]
    with pytest.raises(CahlInputError, match=rf"train.report_to\[0\].*{name!r}.*pip install {package}"):
        load_config(None, [f"train.report_to=[{name}]"])


def test_a_training_run_reports_its_steps_to_the_tracker(tmp_path):
    """A one-step tiny run with train.report_to=[tensorboard]: the tracker holds metrics.jsonl's scalars."""
    import json
    import subprocess

    from cahl.testing import tiny_model, train_args

    run = tmp_path / "run"
    args = train_args(tiny_model(tmp_path / "model"), run, steps=1) + ["train.report_to=[tensorboard]"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    scalars = _scalars(run / "trackers" / "cahl")
    ((step, value),) = scalars["reward/planner"]
    assert step == 1 and value == pytest.approx(row["reward/planner"], abs=1e-6)  # stored as float32
