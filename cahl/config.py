"""Run configuration: small dataclasses per concern composed into RunConfig.

Loaded from YAML, then `key.sub=value` overrides from the command line. Unknown keys and values of
the wrong type are errors naming the key and the expected type. Every field is documented once,
in the dataclass that owns it (docs/config.md is generated from these comments' text).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cahl import checks
from cahl.agents.rollout import RolloutConfig
from cahl.checks import require as _require
from cahl.envs.synth.generate import MAX_DISTRACTORS, MAX_STEPS
from cahl.experiment import ExperimentConfig
from cahl.rewards.hierarchy import RewardConfig
from cahl.types import CahlInputError


@dataclass
class ModelConfig:
    name: str = "embedded"  # "embedded" (SmolLM2-135M-Instruct from PyPI), an HF model id, or a local path
    dtype: str = "float32"  # the frozen base's precision in training: float32 | bfloat16 | float16 | auto (on a CPU the
    #   faster of float32 and bfloat16, measured at start by one matmul of the 135M model's MLP shape; on a GPU
    #   float32). LoRA adapters and their optimizer stay float32
    sample_dtype: str = ""  # the frozen base's precision while sampling (rollouts, evaluation): "" = dtype, or
    #   float32 | bfloat16 | float16 | auto (on a CPU the faster of float32 and bfloat16, measured as for model.dtype;
    #   on a GPU model.dtype). Adapters and updates stay in dtype. When it differs from dtype,
    #   GRPO's old log-probs come from the update's own first forward, not from the sampler
    #   (train/{role}/sampler_gap says how far apart they were). On 2 CPU cores with AVX512-BF16, bfloat16
    #   decodes 1.44x as fast as float32 on identical work (benchmarks/sample_dtype.py): float32 GEMM is slow
    #   at decode batch sizes
    device: str = "cpu"  # cpu | cuda | cuda:N
    policies: str = "adapters"  # adapters (two LoRA on one base) | shared (one adapter) | separate_models
    lora_r: int = 16  # LoRA rank of each role's adapter
    lora_alpha: int = 32  # LoRA scaling numerator (scale = alpha / r)
    lora_dropout: float = 0.0  # dropout on the LoRA input
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])  # modules that get LoRA
    threads: int = 0  # torch CPU threads; 0 = torch's default
    keep_freed_memory: bool = True  # Linux/glibc: malloc keeps freed memory for reuse (no mmap, no trimming
    #   below 2 GiB free) instead of returning it to the OS, which page-faults it in again, zeroed, on every
    #   fresh tensor; resident memory then stays at its peak. Measured on 2 cores (benchmarks/keep_freed_memory.py):
    #   a flat GRPO update 1.07x as fast (median 18.8 s against 20.1 s); once the heap has grown to its working
    #   size, 3 page faults per update instead of ~550k and 0.1 s of system CPU instead of 4-5 s. The quickstart
    #   (6 GRPO steps whose batches keep growing) showed no change: 11:48 with, 11:44 without
    max_batch: int = 32  # rows decoded together: the slots of the continuous batch (both roles share them)

    def __post_init__(self) -> None:
        _require(self.policies in ("adapters", "shared", "separate_models"), "model.policies",
                 "adapters, shared or separate_models", self.policies)
        _require(self.dtype in ("float32", "bfloat16", "float16", "auto"), "model.dtype",
                 "float32, bfloat16, float16 or auto", self.dtype)
        _require(self.sample_dtype in ("", "auto", "float32", "bfloat16", "float16"), "model.sample_dtype",
                 "'', auto, float32, bfloat16 or float16", self.sample_dtype)
        checks.text(self.name, "model.name", "'embedded', an HF model id or a local path")
        _require(re.fullmatch(r"cpu|cuda(:\d+)?|mps", self.device) is not None, "model.device", "cpu, cuda, cuda:N or mps",
                 self.device)
        checks.integer(self.lora_r, "model.lora_r", 1)
        checks.integer(self.lora_alpha, "model.lora_alpha", 1)
        checks.number(self.lora_dropout, "model.lora_dropout", 0, 1, high_open=True)
        checks.items(self.lora_targets, None, "model.lora_targets")
        for i, target in enumerate(self.lora_targets):
            checks.text(target, f"model.lora_targets[{i}]", "a module name")
        checks.integer(self.threads, "model.threads", 0)
        checks.integer(self.max_batch, "model.max_batch", 1)


@dataclass
class EvalConfig:
    bench: str = "bfcl_v3:simple,api_bank,bamboogle"  # comma list of BENCH[:CATEGORY]
    limit: int = 0  # items per benchmark/category; 0 = all
    agent: str = "flat"  # flat | hierarchical
    batch_size: int = 0  # most tasks in one rollout (0 = all: one continuous batch over every item, the fastest)
    temperature: float = 0.0  # 0 = greedy, as the benchmarks' own harnesses
    max_new_tokens: int = 192  # per turn, in evaluation
    constrain: str = "tools"  # decoding in evaluation: off | protocol | tools (see rollout.constrain)
    think_tokens: int = 16  # constrained turns in evaluation: most tokens inside <think>
    search_k: int = 3  # Bamboogle: passages returned per search call
    merge_adapters: bool = True  # evaluate trained adapters merged into a copy of the base per role (PEFT
    #   merge_and_unload, in the sampling dtype: a plain forward per step, no LoRA terms); false = the adapters
    #   as trained, routed per row (agents/policy.py MergedPolicies says where greedy tokens can differ)
    rule: str = ""  # task files (file:PATH in a bench spec): score every item by calls | graded | answer ("" = each
    #   line's own "rule", else calls for items with gold_calls and answer for items with gold_answer;
    #   docs/task_files.md). Also applies to train.eval_bench

    def __post_init__(self) -> None:
        _require(self.agent in ("flat", "hierarchical"), "eval.agent", "flat or hierarchical", self.agent)
        _require(self.rule in ("", "calls", "graded", "answer"), "eval.rule", "'', calls, graded or answer", self.rule)
        checks.bench_spec(self.bench, "eval.bench", rule=self.rule)
        checks.integer(self.limit, "eval.limit", 0)  # -3 took tasks[:-3]: 122 of Bamboogle's 125, silently
        checks.integer(self.batch_size, "eval.batch_size", 0)
        checks.number(self.temperature, "eval.temperature", 0)
        checks.integer(self.max_new_tokens, "eval.max_new_tokens", 1)
        checks.integer(self.search_k, "eval.search_k", 1)
        checks.integer(self.think_tokens, "eval.think_tokens", 1)
        checks.one_of(self.constrain, ("off", "protocol", "tools"), "eval.constrain")


@dataclass
class SFTConfig:
    steps: int = 0  # optimizer steps per role of the SFT warm start, a cached stage before GRPO (0 = none)
    batch_size: int = 8  # examples per SFT step
    lr: float = 2e-4  # SFT learning rate (AdamW)
    max_len: int = 1024  # examples longer than this many tokens are left out of the SFT pool
    seed: int = 0  # seeds the warm start (its generated data, batches and initialisation), not the run's seed: every
    #   seed of a run or an experiment starts from the same cached warm start, and seeds vary the RL phase
    cache_dir: str = ""  # where warm starts are cached, one folder per content key ("" = $CAHL_CACHE_DIR/sft)
    check_items: int = 16  # held-out items (ToolRL's test split, generated test-split tasks) whose unconstrained
    #   greedy turns the parse check reads after SFT (0 = none)
    role_steps: dict[str, int] = field(default_factory=dict)  # steps of a role where they differ from sft.steps,
    #   e.g. {planner: 14, executor: 6}: a role whose loss is still falling gets more; the SFT phase lasts as many
    #   global steps as its longest role, and a role past its own count sits those steps out
    recovery: float = 0.0  # share of the generated multi-step training tasks that also teach recovering from an error
    #   (train/oracle.py recovery_examples): the planner's first sub-task is the typical mistake, the asked-for tool
    #   applied straight to the entity the question names; its real error comes back and the planner goes on with the
    #   right steps (the mistaken turn is not trained on); the executor does that failing sub-task and reports the
    #   error in one line
    optional_extras: float = 0.0  # share of the generated training tasks' offered tools that show, in the SFT examples,
    #   one more optional parameter with a default ("decimals", "language", "verbose", ...; train/oracle.py OPTIONAL_EXTRAS)
    #   that the question never asks for, so the gold calls leave it out: generated tools have only required
    #   parameters, and a warm start on them gave every listed parameter a value (BFCL's optional z, unit, gravity)

    def __post_init__(self) -> None:
        _require(self.steps >= 0, "sft.steps", "an integer >= 0", self.steps)
        checks.number(self.recovery, "sft.recovery", 0, 1)
        checks.number(self.optional_extras, "sft.optional_extras", 0, 1)
        for role, n in self.role_steps.items():
            _require(role in ("planner", "executor", "flat"), f"sft.role_steps.{role}", "a role: planner, executor or flat",
                     role)
            _require(isinstance(n, int) and not isinstance(n, bool) and n >= 0, f"sft.role_steps.{role}",
                     "an integer >= 0", n)
        _require(self.batch_size >= 1, "sft.batch_size", "an integer >= 1", self.batch_size)
        _require(self.max_len >= 1, "sft.max_len", "an integer >= 1", self.max_len)
        checks.number(self.lr, "sft.lr", 0, low_open=True)
        checks.integer(self.seed, "sft.seed", 0)
        checks.integer(self.check_items, "sft.check_items", 0)

    def steps_of(self, role: str) -> int:
        return self.role_steps.get(role, self.steps)

    def phase_steps(self, roles) -> int:
        """Global steps of the SFT phase for these roles: the longest role's count."""
        return max((self.steps_of(r) for r in roles), default=0)


@dataclass
class TrainConfig:
    schedule: str = "joint"  # joint (CAHL) | separate | flat
    steps: int = 10  # GRPO steps (separate: first half executor-only, second half planner)
    tasks_per_step: int = 4  # tasks rolled out per GRPO step (x rollout.plans_per_task episodes)
    data: list[str] = field(default_factory=lambda: ["synth", "toolrl"])  # training sources: synth | toolrl |
    #   file:PATH (a task file, docs/task_files.md; read and checked when the config loads)
    n_synth: int = 400  # generated multi-step training tasks
    n_toolrl: int = 0  # ToolRL SFT items used (0 = all 399 after deduplication)
    toolrl_dialogues: bool = True  # also each single-message ToolRL calling item as a 3-turn dialogue (API-Bank's shape)
    shuffle_tools: bool = True  # offer each ToolRL and task-file training item's tools in an order shuffled per
    #   item (seeded): in ToolRL's SFT set the called tool is listed first far more often than by chance, and a
    #   warm start on it picked the first-listed tool on 37 of 50 API-Bank items (the gold one was first on 22)
    task_pool: int = 0  # GRPO draws its tasks from the first N training tasks only (0 = all; SFT uses all).
    #   A pool of `tasks_per_step` tasks trains on the same tasks every step, so the reward curve shows learning
    #   rather than the spread between tasks
    synth_min_steps: int = 2  # fewest tool calls in a generated task
    synth_max_steps: int = 3  # most tool calls in a generated task
    synth_distractors: int = 2  # unneeded tools offered with each generated task
    synth_rename: float = 0.0  # share of generated training tasks whose tools (and about half of their parameters)
    #   are shown under other names made of words of their descriptions, never another tool's name or alias: the
    #   policies learn to pick a tool by what it does, not by a memorised name (synth_unseen offers unseen names)
    lr_planner: float = 5e-5  # planner GRPO learning rate (AdamW)
    lr_executor: float = 5e-5  # also the flat policy's
    eps_low: float = 0.2  # clip range below 1
    eps_high: float = 0.28  # clip range above 1 (DAPO clip-higher)
    kl_beta: float = 0.0  # weight of the k3 KL to the frozen base (0 = no reference pass)
    policy_epochs: int = 1  # optimizer steps per role on each step's rollouts (GRPO's mu, TRL's num_iterations).
    #   After the first the batch is off-policy: old log-probs stay the rollout's (with model.sample_dtype, the
    #   first epoch's), so the clip acts
    scale_by_std: bool = True  # GRPO advantage divides by the group std (False: Dr. GRPO)
    filter_zero_variance: bool = True  # leave groups whose rewards are all equal out of the update (no signal)
    max_tokens: int = 4096  # tokens per update forward. SFT: micro-batches of rows x longest row <= it, each then
    #   packed unpadded. GRPO: whole groups packed as the prefix tree of their prompts (each shared start once: a
    #   group's prompt, a task's tools, the role's instructions) while the tree holds <= it tokens; a larger group
    #   goes alone. Models other than Llama, Qwen2, Qwen3 and Mistral, and sequences longer than a sliding window,
    #   take padded micro-batches (rows x longest <= it) instead
    grad_clip: float = 1.0  # gradient norm clip per role and step
    checkpoint_every: int = 1  # steps between checkpoints
    tensorboard: bool = True  # also write TensorBoard scalars to OUT/tb
    report_to: list[str] = field(default_factory=list)  # also log each step's scalars (and the config) to these
    #   experiment trackers through accelerate's trackers, any of wandb, mlflow, tensorboard, comet_ml, aim, clearml,
    #   dvclive, swanlab, trackio (their own settings, e.g. WANDB_MODE=offline or MLFLOW_TRACKING_URI, apply);
    #   project "cahl", run named after OUT; files of trackers that keep them locally go to OUT/trackers
    eval_bench: str = ""  # evaluate before and after training on this --bench spec ("" = no evaluation)
    eval_limit: int = 8  # items per benchmark category in those evaluations
    eval_constrain: list[str] = field(default_factory=lambda: ["tools", "off"])  # decoding of the evaluations after
    #   training, one each (OUT/eval_after_<mode>.json): constrained is the deployment figure, off what the policy
    #   learnt by itself
    eval_raw: list[str] = field(default_factory=lambda: ["hierarchical", "flat"])  # agents the untrained model is
    #   evaluated as before training, under eval.constrain (OUT/eval_before_<agent>.json; cached per model, items,
    #   prompt version and decoding, so a second run does not repeat it)

    def __post_init__(self) -> None:
        _require(self.schedule in ("joint", "separate", "flat"), "train.schedule", "joint, separate or flat",
                 self.schedule)
        _require(self.checkpoint_every >= 1, "train.checkpoint_every", "an integer >= 1", self.checkpoint_every)
        _require(self.steps >= 0, "train.steps", "an integer >= 0", self.steps)
        _require(self.tasks_per_step >= 1, "train.tasks_per_step", "an integer >= 1", self.tasks_per_step)
        _require(self.task_pool >= 0, "train.task_pool", "an integer >= 0", self.task_pool)
        _require(self.max_tokens >= 1, "train.max_tokens", "an integer >= 1", self.max_tokens)
        _require(self.policy_epochs >= 1, "train.policy_epochs", "an integer >= 1", self.policy_epochs)
        checks.items(self.data, None, "train.data")
        for i, source in enumerate(self.data):
            checks.training_source(source, f"train.data[{i}]")
        checks.trackers(self.report_to, "train.report_to")
        checks.items(self.eval_constrain, ("off", "protocol", "tools"), "train.eval_constrain")
        if self.eval_raw:
            checks.items(self.eval_raw, ("hierarchical", "flat"), "train.eval_raw")
        checks.integer(self.n_synth, "train.n_synth", 1 if "synth" in self.data else 0)
        checks.integer(self.n_toolrl, "train.n_toolrl", 0)
        _require(1 <= self.synth_min_steps <= self.synth_max_steps <= MAX_STEPS, "train.synth_min_steps/synth_max_steps",
                 f"1 <= synth_min_steps <= synth_max_steps <= {MAX_STEPS}", (self.synth_min_steps, self.synth_max_steps))
        checks.number(self.synth_rename, "train.synth_rename", 0, 1)
        _require(0 <= self.synth_distractors <= MAX_DISTRACTORS, "train.synth_distractors",
                 f"an integer in 0..{MAX_DISTRACTORS}", self.synth_distractors)
        checks.number(self.lr_planner, "train.lr_planner", 0, low_open=True)
        checks.number(self.lr_executor, "train.lr_executor", 0, low_open=True)
        checks.number(self.eps_low, "train.eps_low", 0, 1, high_open=True)
        checks.number(self.eps_high, "train.eps_high", 0)
        checks.number(self.kl_beta, "train.kl_beta", 0)
        checks.number(self.grad_clip, "train.grad_clip", 0, low_open=True)
        checks.bench_spec(self.eval_bench, "train.eval_bench", allow_empty=True)
        checks.integer(self.eval_limit, "train.eval_limit", 0)


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    data_dir: str = ""  # data folder (apibank/, bamboogle/, toolrl/); "" = $CAHL_DATA_DIR or ../shared/data
    out: str = "runs/latest"  # output folder
    seed: int = 0  # seeds data generation, sampling, batches and initialisation

    def __post_init__(self) -> None:
        checks.text(self.out, "out", "an output folder")
        if self.data_dir:  # "" resolves to $CAHL_DATA_DIR or ../shared/data where data is read
            _require(Path(self.data_dir).expanduser().is_dir(), "data_dir",
                     "an existing folder holding apibank/, bamboogle/ and toolrl/ (--data-dir)", self.data_dir)


def _check_type(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for h in typing.get_args(hint):
            try:
                return _check_type(value, h, key)
            except CahlInputError:
                continue
        raise CahlInputError(f"config key {key!r}: expected {hint}, got {value!r}")
    if hint is type(None):
        if value is None:
            return None
        raise CahlInputError(f"config key {key!r}: expected null, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise CahlInputError(f"config key {key!r}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint) or (Any,)
        return [_check_type(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise CahlInputError(f"config key {key!r}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-5" (no dot) as a string; accept what float() reads
            return float(value)
        except ValueError:
            pass
    if hint is str and isinstance(value, bool):  # YAML 1.1 reads off/on (no/yes) as booleans
        return "on" if value else "off"
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise CahlInputError(f"config key {key!r}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass `cls` from `data`, recursively; unknown keys and wrong types raise."""
    if not isinstance(data, dict):
        raise CahlInputError(f"config key {prefix.rstrip('.') or '<root>'!r}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise CahlInputError(f"unknown config key(s) {[prefix + k for k in unknown]}; valid keys here: {sorted(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        hint, value = hints[f.name], data[f.name]
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = from_dict(hint, value, f"{prefix}{f.name}.")
        else:
            kwargs[f.name] = _check_type(value, hint, prefix + f.name)
    return cls(**kwargs)


class _Loader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML keeps the last one silently)."""


def _unique_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    first: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            seen = first.get(key)
        except TypeError:  # an unhashable key: construct_mapping says so itself
            continue
        if seen is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one section (first on line {seen}); remove one",
                key_node.start_mark)
        first[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`key.sub=value` -> (["key", "sub"], value); the value is read as YAML (`3`, `[a, b]`, `null`)."""
    if "=" not in text:
        raise CahlInputError(f"override {text!r}: expected key.sub=value")
    key, raw = text.split("=", 1)
    if not raw.strip():
        return key.strip().split("."), ""
    try:
        return key.strip().split("."), _yaml(raw)
    except yaml.YAMLError as e:
        raise CahlInputError(f"override {text!r}: the value of config key {key.strip()!r} is not valid YAML "
                             f"(quote it to pass text): {e}") from e


def load_config(path: str | Path | None = None, overrides: list[str] = (), cls=RunConfig):
    """YAML file (optional) + overrides -> validated config."""
    data: dict = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise CahlInputError(f"config file {p} does not exist")
        raw = p.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            raise CahlInputError(f"{p}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
        try:
            data = _yaml(text) or {}
        except yaml.YAMLError as e:
            raise CahlInputError(f"{p}: invalid YAML ({e})") from e
        if not isinstance(data, dict):
            raise CahlInputError(f"{p}: expected a mapping at the top level")
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise CahlInputError(f"override {text!r}: {k!r} is not a section")
        node[keys[-1]] = value
    cfg = from_dict(cls, data)
    if isinstance(cfg, RunConfig):
        from cahl.agents.rollout import check_config

        check_config(cfg.rollout)  # fail at load, not after the model has loaded
    return cfg


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def config_docs() -> str:
    """docs/config.md: every field of every section with its type, default and comment."""
    import inspect
    import re

    sections = [("", RunConfig), ("model", ModelConfig), ("rollout", RolloutConfig), ("sft", SFTConfig),
                ("train", TrainConfig), ("reward", RewardConfig), ("eval", EvalConfig),
                ("experiment", ExperimentConfig)]
    out = ["# Configuration", "",
           "Generated by `python3 -m cahl.config` from the dataclasses in the code (the one place each field",
           "is documented). YAML files nest these sections; overrides use `section.key=value`.", ""]
    for name, cls in sections:
        comments, last = {}, None
        for line in inspect.getsource(cls).splitlines():
            m = re.match(r"\s+(\w+):.*?#\s*(.*)$", line)
            more = re.match(r"\s+#   (.*)$", line)  # a field comment's continuation line
            if m:
                comments[m.group(1)], last = m.group(2), m.group(1)
            elif more and last:
                comments[last] += " " + more.group(1)
            else:
                last = None
        hints = typing.get_type_hints(cls)
        out += [f"## `{name or 'top level'}`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            type_name = getattr(hints[f.name], "__name__", str(hints[f.name]))
            key = f"{name}.{f.name}" if name else f.name
            out.append(f"| `{key}` | {type_name} | `{default!r}` | {comments.get(f.name, '')} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(config_docs())
