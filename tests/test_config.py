"""Config loading: YAML + overrides, strict keys and types, errors that name the key."""

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cahl.agents.rollout import RolloutConfig
from cahl.config import RunConfig, config_docs, from_dict, load_config, parse_override
from cahl.types import CahlInputError


def test_defaults_without_file_or_overrides():
    assert load_config() == RunConfig()


def test_yaml_with_nested_sections(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  lora_r: 8\n  lora_targets: [q_proj, v_proj]\nrollout:\n  agent: hierarchical\n"
                    "  temperature: 0.7\nseed: 3\n")
    cfg = load_config(path)
    assert (cfg.model.lora_r, cfg.model.lora_targets, cfg.seed) == (8, ["q_proj", "v_proj"], 3)
    assert isinstance(cfg.rollout, RolloutConfig) and cfg.rollout.agent == "hierarchical"
    assert cfg.rollout.temperature == 0.7
    assert cfg.model.dtype == "float32" and cfg.rollout.max_new_tokens == RolloutConfig().max_new_tokens
    assert cfg.eval == RunConfig().eval  # sections not in the file keep their defaults


def test_empty_yaml_file_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing\n")
    assert load_config(path) == RunConfig()


@pytest.mark.parametrize("data, key", [
    ({"modle": {}}, "modle"),
    ({"model": {"lora_rank": 8}}, "model.lora_rank"),
    ({"rollout": {"agent": "flat", "max_turn": 3}}, "rollout.max_turn"),
])
def test_unknown_key_is_named(data, key):
    with pytest.raises(CahlInputError, match=key.replace(".", r"\.")):
        from_dict(RunConfig, data)


@pytest.mark.parametrize("data, key, expected", [
    ({"seed": "3"}, "seed", "int"),
    ({"model": {"lora_r": 8.5}}, "model.lora_r", "int"),
    ({"model": {"name": 5}}, "model.name", "str"),
    ({"rollout": {"temperature": "hot"}}, "rollout.temperature", "float"),
    ({"model": {"lora_targets": "q_proj"}}, "model.lora_targets", "list"),
    ({"model": {"lora_targets": ["q_proj", 3]}}, "model.lora_targets[1]", "str"),
    ({"model": 5}, "model", "mapping"),
])
def test_wrong_type_names_key_and_expected_type(data, key, expected):
    with pytest.raises(CahlInputError) as e:
        from_dict(RunConfig, data)
    assert repr(key) in str(e.value) and expected in str(e.value)


def test_int_is_accepted_for_float():
    cfg = from_dict(RunConfig, {"rollout": {"temperature": 1, "top_p": 0}})
    assert cfg.rollout.temperature == 1.0 and isinstance(cfg.rollout.temperature, float)
    assert isinstance(cfg.rollout.top_p, float)


@pytest.mark.parametrize("data, key", [
    ({"seed": True}, "seed"),
    ({"model": {"lora_r": False}}, "model.lora_r"),
    ({"rollout": {"temperature": True}}, "rollout.temperature"),
])
def test_bool_is_not_a_number(data, key):
    with pytest.raises(CahlInputError, match=repr(key)):
        from_dict(RunConfig, data)


def test_optional_and_bool_fields():
    @dataclass
    class C:
        flag: bool = False
        name: str | None = None
        items: list[int] = field(default_factory=list)

    assert from_dict(C, {"flag": True, "name": None, "items": [1, 2]}) == C(True, None, [1, 2])
    assert from_dict(C, {"name": "x"}).name == "x"
    for bad in ({"flag": 1}, {"name": 3}, {"items": [1, "2"]}):
        with pytest.raises(CahlInputError):
            from_dict(C, bad)


def test_missing_yaml_file_is_named(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(CahlInputError, match="nope.yaml"):
        load_config(path)


@pytest.mark.parametrize("text", ["model: [unclosed\n", "model:\n  lora_r: 8\n bad_indent: 1\n", "a: b: c\n"])
def test_invalid_yaml_is_named(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CahlInputError, match="bad.yaml"):
        load_config(path)


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(CahlInputError, match="mapping"):
        load_config(path)


def test_overrides_create_nested_keys_and_win_over_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  lora_r: 8\n")
    cfg = load_config(path, ["model.lora_r=4", "rollout.agent=hierarchical", "rollout.temperature=0",
                             "model.lora_targets=[q_proj]", "out=runs/x", "eval.bench=bfcl_v3:simple"])
    assert (cfg.model.lora_r, cfg.rollout.agent, cfg.rollout.temperature) == (4, "hierarchical", 0.0)
    assert (cfg.model.lora_targets, cfg.out, cfg.eval.bench) == (["q_proj"], "runs/x", "bfcl_v3:simple")
    assert load_config(None, ["rollout.seed=5"]).rollout.seed == 5  # no file: the section is created


@pytest.mark.parametrize("override, key", [
    ("model.nope=1", "model.nope"),
    ("rollout.max_context=big", "rollout.max_context"),
    ("seed.x=1", "seed"),
])
def test_bad_overrides_are_named(override, key):
    with pytest.raises(CahlInputError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_override_syntax():
    assert parse_override("a.b=1") == (["a", "b"], 1)
    assert parse_override("a=x=y") == (["a"], "x=y")
    assert parse_override("a=") == (["a"], "")
    with pytest.raises(CahlInputError, match="key.sub=value"):
        parse_override("model.lora_r")


@pytest.mark.parametrize("override, key", [("model.lora_targets=[q_proj", "model.lora_targets"),
                                           ("rollout.max_new_tokens={a", "rollout.max_new_tokens"),
                                           ("out=a: b: c", "out")])
def test_malformed_override_value_is_named(override, key):
    with pytest.raises(CahlInputError) as e:
        load_config(None, [override])
    assert repr(override) in str(e.value) and repr(key) in str(e.value) and "YAML" in str(e.value)


def test_docs_config_md_is_the_generated_one():
    # docs/config.md says it is generated from the dataclass comments; a hand edit there (or a field
    # added without regenerating) makes the two disagree
    docs = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert docs.read_text() == config_docs() + "\n", "regenerate: python3 -m cahl.config > docs/config.md"


def test_field_comment_continuation_lines_join_the_field():
    text = config_docs()
    assert "shows learning rather than the spread between tasks |" in text  # train.task_pool's second line
    assert "| `train.policy_epochs` | int | `1` |" in text


# -- values that load but cannot run: rejected at load, before any model loads ----------------------
CANNOT_RUN = [  # (override, the key the error must name)
    ("train.lr_planner=nan", "train.lr_planner"), ("train.lr_executor=-1e-4", "train.lr_executor"),
    ("sft.lr=.nan", "sft.lr"), ("sft.lr=0", "sft.lr"), ("train.kl_beta=-0.1", "train.kl_beta"),
    ("train.grad_clip=.inf", "train.grad_clip"), ("train.eps_high=nan", "train.eps_high"),
    ("rollout.temperature=-1", "rollout.temperature"), ("rollout.top_p=0", "rollout.top_p"),
    ("rollout.top_p=1.5", "rollout.top_p"), ("rollout.seed=-1", "rollout.seed"),
    ("rollout.subtask=prose", "rollout.subtask"),
    ("eval.temperature=nan", "eval.temperature"), ("eval.limit=-3", "eval.limit"),
    ("eval.max_new_tokens=0", "eval.max_new_tokens"), ("eval.search_k=0", "eval.search_k"),
    ("reward.w_fmt=nan", "reward.w_fmt"), ("reward.w_align=.nan", "reward.w_align"), ("reward.w_len=-1", "reward.w_len"),
    ("reward.w_custom=nan", "reward.w_custom"), ("reward.success_threshold=7", "reward.success_threshold"),
    ("reward.custom=no_such_module:fn", "reward.custom"), ("reward.custom=cahl.testing:no_such_fn", "reward.custom"),
    ("reward.custom=cahl.testing:EMBEDDED", "reward.custom"),
    ("experiment.arms=[joint, jointt]", "experiment.arms[1]"), ("experiment.arms=[]", "experiment.arms"),
    ("experiment.arms=[joint, joint]", "experiment.arms"), ("experiment.seeds=[]", "experiment.seeds"),
    ("experiment.seeds=[0, -1]", "experiment.seeds[1]"), ("experiment.bench=bfcl_v9", "experiment.bench"),
    ("experiment.eval_limit=-1", "experiment.eval_limit"),
    ("model.max_batch=0", "model.max_batch"), ("model.lora_r=0", "model.lora_r"), ("model.lora_alpha=0", "model.lora_alpha"),
    ("model.lora_dropout=1", "model.lora_dropout"), ("model.lora_targets=[]", "model.lora_targets"),
    ("model.threads=-1", "model.threads"), ("model.device=gpu", "model.device"), ("model.name=", "model.name"),
    ("train.data=[]", "train.data"), ("train.n_synth=0", "train.n_synth"), ("train.synth_max_steps=9", "train.synth_min_steps"),
    ("train.synth_distractors=-1", "train.synth_distractors"), ("train.synth_rename=1.5", "train.synth_rename"),
    ("train.eval_bench=bfcl_v3:nope", "train.eval_bench"),
    ("train.eval_limit=-2", "train.eval_limit"), ("eval.bench=bfcl_v9", "eval.bench"), ("eval.bench=", "eval.bench"),
    ("out=", "out"), ("out='  '", "out"), ("data_dir=/no/such/folder", "data_dir"),
]


@pytest.mark.parametrize("override, key", CANNOT_RUN, ids=[o for o, _ in CANNOT_RUN])
def test_a_value_that_cannot_run_is_rejected_at_load_naming_the_key(override, key):
    """Before: each of these loaded; e.g. eval.limit=-3 then scored 122 of Bamboogle's 125 items,
    and a reward.custom that does not import failed at the first GRPO step, after SFT."""
    with pytest.raises(CahlInputError) as e:
        load_config(None, [override])
    assert key in str(e.value) and re.search(r"expected|known:|categories:", str(e.value)), str(e.value)


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_the_shipped_configs_pass_every_check(path):
    load_config(path)


def test_a_key_given_twice_in_a_yaml_section_is_named_with_its_lines(tmp_path):
    """Before: YAML kept the last value without a word."""
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr_planner: 1.0e-4\n  steps: 3\n  lr_planner: 5.0e-4\n")
    with pytest.raises(CahlInputError, match=r"(?s)run.yaml.*'lr_planner' appears twice in one section \(first on line 2\)"
                                             r".*line 4"):
        load_config(path)


def test_a_config_file_that_is_not_utf8_names_file_and_line(tmp_path):
    """Before: UnicodeDecodeError."""
    path = tmp_path / "run.yaml"
    path.write_bytes(b"model:\n  name: caf\xe9\n")
    with pytest.raises(CahlInputError, match=r"run.yaml:2: not UTF-8 text"):
        load_config(path)
