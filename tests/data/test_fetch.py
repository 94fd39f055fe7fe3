"""`cahl data fetch` against a local file:// mirror laid out as raw.githubusercontent.com
(OWNER/REPO/COMMIT/PATH), built here from the staged copies; and the missing-data errors of the
commands, raised before any model loads."""

import hashlib
import shutil
from pathlib import Path

import pytest

from cahl.cli import main
from cahl.types import DataMissingError

STAGED = Path("/work/shared/data")
TOOLRL = "qiancheng0/ToolRL/8cee13ec0ca72f0461da372a93a6fd8140dbb840"
DAMO = "AlibabaResearch/DAMO-ConvAI/483554eae102996f5ec1f4feab4e78ef29c2a394"
DAMO_TEST = "AlibabaResearch/DAMO-ConvAI/5d5a2d40b2e6b6998a06961cc43ad0a8c069b153"

pytestmark = pytest.mark.skipif(not STAGED.is_dir(), reason="needs the staged data sets to build a mirror")


def _put(mirror: Path, url_path: str, staged: str) -> None:
    dest = mirror / url_path
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(STAGED / staged, dest)


def _small_mirror(mirror: Path) -> str:
    """Bamboogle and ToolRL, under the paths their repositories use."""
    _put(mirror, f"{TOOLRL}/benchmarks/Bamboogle/data.json", "bamboogle/bamboogle_toolrl_data.json")
    _put(mirror, f"{TOOLRL}/dataset/rlla_4k_raw/rlla_sft.json", "toolrl/rlla_sft.json")
    _put(mirror, f"{TOOLRL}/dataset/rlla_4k/test.parquet", "toolrl/rlla_4k_test.parquet")
    _put(mirror, f"{TOOLRL}/LICENSE", "toolrl/LICENSE.ToolRL.txt")
    return mirror.as_uri()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_bamboogle_and_toolrl_from_a_mirror(tmp_path, capsys):
    from cahl.data.bamboogle import load_bamboogle
    from cahl.data.toolrl import load_toolrl_sft, load_toolrl_test

    url = _small_mirror(tmp_path / "mirror")
    data = tmp_path / "fresh" / "data"  # does not exist yet: fetch creates it
    assert main(["data", "fetch", "bamboogle", "toolrl", "--data-dir", str(data), "--mirror", url]) == 0
    for rel in ["bamboogle/bamboogle_125.jsonl", "bamboogle/bamboogle_toolrl_data.json", "toolrl/rlla_sft.json",
                "toolrl/rlla_4k_test.parquet", "toolrl/LICENSE.ToolRL.txt"]:
        assert _sha(data / rel) == _sha(STAGED / rel), rel  # the derived jsonl too, byte for byte
    assert len(load_bamboogle(data)) == 125
    assert (len(load_toolrl_sft(data)), len(load_toolrl_test(data))) == (400, 80)
    assert "bamboogle: 3 file(s) fetched" in capsys.readouterr().out

    # a second fetch finds everything verified and downloads nothing (the mirror is gone)
    shutil.rmtree(tmp_path / "mirror")
    assert main(["data", "fetch", "bamboogle", "--data-dir", str(data), "--mirror", url]) == 0
    assert "0 file(s) fetched, 3 already present and verified" in capsys.readouterr().out


def test_a_wrong_checksum_names_the_file_and_both_sums_and_writes_nothing(tmp_path, capsys):
    from cahl.data.fetch import dataset_files

    mirror = tmp_path / "mirror"
    url = _small_mirror(mirror)
    bad = mirror / TOOLRL / "dataset/rlla_4k/test.parquet"
    bad.write_bytes(bad.read_bytes()[:-10])  # truncated in transit
    data = tmp_path / "data"
    assert main(["data", "fetch", "toolrl", "--data-dir", str(data), "--mirror", url]) == 2
    err = capsys.readouterr().err
    assert "rlla_4k_test.parquet" in err and _sha(bad) in err and dataset_files("toolrl")["toolrl/rlla_4k_test.parquet"] in err
    assert not (data / "toolrl/rlla_4k_test.parquet").exists()
    assert not list(data.rglob(".*part*"))  # no temporary file left behind


def test_a_file_missing_from_the_mirror_names_its_url(tmp_path, capsys):
    mirror = tmp_path / "mirror"
    url = _small_mirror(mirror)
    (mirror / TOOLRL / "benchmarks/Bamboogle/data.json").unlink()
    assert main(["data", "fetch", "bamboogle", "--data-dir", str(tmp_path / "data"), "--mirror", url]) == 2
    assert f"{url}/{TOOLRL}/benchmarks/Bamboogle/data.json" in capsys.readouterr().err


def test_an_unknown_data_set_is_an_error(tmp_path, capsys):
    assert main(["data", "fetch", "bfcl", "--data-dir", str(tmp_path)]) == 2
    assert "unknown data set 'bfcl'" in capsys.readouterr().err


def _apibank_mirror(mirror: Path) -> str:
    for level in (1, 2):
        _put(mirror, f"{DAMO_TEST}/api-bank/test-data/level-{level}-api.json",
             f"apibank/original/test-data/level-{level}-api.json")
        _put(mirror, f"{TOOLRL}/benchmarks/API-Bank/level-{level}-api_processed.json",
             f"apibank/toolrl/level-{level}-api_processed.json")
    _put(mirror, f"{TOOLRL}/benchmarks/API-Bank/level-3-api_processed.json", "apibank/toolrl/level-3-api_processed.json")
    for folder in ("lv1-lv2-samples", "init_database"):
        shutil.copytree(STAGED / "apibank/original" / folder, mirror / DAMO / "api-bank" / folder)
    _put(mirror, f"{DAMO}/api-bank/LICENSE", "apibank/LICENSE.api-bank.txt")
    _put(mirror, f"{DAMO}/LICENSE", "apibank/LICENSE.DAMO-ConvAI-root.txt")
    _put(mirror, f"{TOOLRL}/LICENSE", "apibank/toolrl/LICENSE.ToolRL.txt")
    return mirror.as_uri()


def test_fetched_apibank_runs_the_executed_protocol(tmp_path):
    from cahl.data.apibank import load_apibank_original, load_apibank_toolrl
    from cahl.envs.apibank import ApiBankEnv

    data = tmp_path / "data"
    assert main(["data", "fetch", "apibank", "--data-dir", str(data), "--mirror", _apibank_mirror(tmp_path / "m")]) == 0
    tasks = load_apibank_original(1, data)
    assert len(tasks) == 399 and len(load_apibank_toolrl(3, data)) == 131
    env = ApiBankEnv(data / "apibank" / "original")  # reads every init database
    env.reset(tasks[0])
    assert env.step(tasks[0].gold_calls)[0].ok


def test_loaders_name_the_fetch_command(tmp_path):
    from cahl.data.bamboogle import load_bamboogle
    from cahl.data.toolrl import load_toolrl_sft

    with pytest.raises(DataMissingError, match="cahl data fetch bamboogle"):
        load_bamboogle(tmp_path)
    with pytest.raises(DataMissingError, match="cahl data fetch toolrl"):
        load_toolrl_sft(tmp_path)


def test_eval_checks_the_executed_apibank_data_before_the_model(tmp_path, capsys):
    """The items load, but the init databases the environment reads are missing: before, the
    model loaded and the first rollout failed; now the command stops first (the model path does
    not exist, so reaching it would be another error)."""
    data = tmp_path / "data"
    for rel in ["test-data/level-1-api.json", "lv1-lv2-samples"]:
        src, dest = STAGED / "apibank/original" / rel, data / "apibank/original" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dest)
    rc = main(["eval", "--data-dir", str(data), "--bench", "api_bank_exec:level-1", "--model", str(tmp_path / "no-model"),
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "init_database" in err and "cahl data fetch apibank" in err


@pytest.mark.parametrize("command", ["train", "sft", "rollout", "experiment"])
def test_training_commands_check_toolrl_before_the_model(tmp_path, capsys, command):
    extra = {"rollout": ["--dump", str(tmp_path / "d.jsonl")], "experiment": ["experiment.bench=synth_unseen"]}.get(command, [])
    rc = main([command, "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"), *extra,
               f"model.name={tmp_path / 'no-model'}", "train.data=[synth,toolrl]", "train.eval_bench=''"])
    err = capsys.readouterr().err
    assert rc == 2 and "cahl data fetch toolrl" in err, err
