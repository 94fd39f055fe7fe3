"""Config loading: YAML + overrides, strict keys and types, errors that name the key."""

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
