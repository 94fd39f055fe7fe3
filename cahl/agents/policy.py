"""PolicySet: the planner and executor policies as LoRA adapters on one base model (DESIGN §2).

Three layouts, chosen by `ModelConfig.policies`, behind one interface so the rollout and the
trainer run the same code for all of them:

- `adapters` (default): one base model, one LoRA adapter per role, switched per call. The base
  weights are in memory once; with adapters disabled the model is the frozen KL reference.
- `shared`: one adapter named `shared` that every role maps to; the system prompt tells the roles
  apart (MATPO style). `parameters(role)` is then the same list for every role: build one
  optimizer per entry of `adapters`, not per role.
- `separate_models`: one base copy per role, each with its own LoRA adapter. DESIGN calls these
  "two full models"; they stay LoRA-trained so that training, checkpoints and the reference are
  the same code path as the other layouts, and only the memory (two base copies) differs.

Adapter state is stated, never inherited: every `backend(role).generate`, `use_role(role)` and
`reference()` activates what it needs, and switching the adapter of a model while a `use_role` or
`reference` block holds that model raises instead of silently running the wrong weights.

PEFT's `set_adapter` and `disable_adapter` also flip `requires_grad` on adapter weights (off for
every adapter but the active one). Autograd skips the gradient of a leaf whose `requires_grad` is
off at backward time, so "forward planner, forward reference, backward" would silently drop the
planner's gradient. PolicySet therefore keeps every adapter weight trainable after each switch;
isolation between roles comes from the forward graph: an adapter that did not take part in a
forward gets no gradient from it.

Checkpoint layout (`save`): `dir/<adapter>/adapter_config.json + adapter_model.safetensors`
(plain PEFT: `PeftModel.from_pretrained(base, dir/<adapter>)` loads one) and `dir/policy.json`
with the layout, the roles and the role -> adapter map.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch

from cahl.agents.build import DTYPES, sample_dtype, train_dtype
from cahl.agents.decoder import Sampler
from cahl.agents.generation import HFBackend
from cahl.agents.sampling import Sample, SamplingParams
from cahl.agents.lora_fast import install_fused_lora
from cahl.agents.model import load_model
from cahl.paths import read_json, require_file, require_keys
from cahl.types import CahlInputError

MODES = ("adapters", "shared", "separate_models")
SHARED_ADAPTER = "shared"
POLICY_FILE = "policy.json"
_REFERENCE = "<reference>"  # what a reference() block holds, in PolicySet._holds


def role_adapters(mode: str, roles: tuple[str, ...]) -> dict[str, str]:
    """role -> adapter name: the role itself, or `shared` for every role in shared mode."""
    if mode not in MODES:
        raise CahlInputError(f"config key 'model.policies': expected one of {list(MODES)}, got {mode!r}")
    if not roles or len(set(roles)) != len(roles):
        raise CahlInputError(f"policy roles: expected distinct role names, got {list(roles)}")
    return {r: SHARED_ADAPTER if mode == "shared" else r for r in roles}


def lora_config(model_cfg):
    from peft import LoraConfig

    return LoraConfig(r=model_cfg.lora_r, lora_alpha=model_cfg.lora_alpha, lora_dropout=model_cfg.lora_dropout,
                      target_modules=list(model_cfg.lora_targets), bias="none", task_type="CAUSAL_LM")


def _dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise CahlInputError(f"config key 'model.dtype': expected one of {list(DTYPES)}, got {name!r}")
    return DTYPES[name]


def adapter_parameters(model, adapter: str) -> list[torch.nn.Parameter]:
    """The weights of one adapter of a PeftModel (LoRA A/B and any other per-adapter tensors)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    params: list[torch.nn.Parameter] = []
    for module in model.modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        for layer_name in module.adapter_layer_names:
            per_adapter = getattr(module, layer_name)
            if adapter in per_adapter:
                item = per_adapter[adapter]
                params.extend([item] if isinstance(item, torch.nn.Parameter) else item.parameters())
    return params


def read_policy_meta(directory: str | Path) -> dict:
    """policy.json of a saved PolicySet, checked: mode, roles, role -> adapter map, adapter files present."""
    directory = Path(directory)
    path = require_file(directory / POLICY_FILE, "PolicySet.save (the adapters of a cahl checkpoint)")
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise CahlInputError(f"{path}: expected a JSON object")
    require_keys(meta, ["mode", "roles", "adapters"], str(path))
    if meta["mode"] not in MODES:
        raise CahlInputError(f"{path}: key 'mode': expected one of {list(MODES)}, got {meta['mode']!r:.80}")
    if not (isinstance(meta["roles"], list) and meta["roles"] and all(isinstance(r, str) for r in meta["roles"])):
        raise CahlInputError(f"{path}: key 'roles': expected a list of role names, got {meta['roles']!r:.80}")
    if not isinstance(meta.get("base_model", ""), str):
        raise CahlInputError(f"{path}: key 'base_model': expected the base model's name, got {meta['base_model']!r:.80}")
    expected = role_adapters(meta["mode"], tuple(meta["roles"]))
    if meta["adapters"] != expected:
        raise CahlInputError(f"{path}: key 'adapters' is {meta['adapters']!r}, expected {expected} "
                             f"for mode {meta['mode']!r}")
    for adapter in dict.fromkeys(expected.values()):
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            require_file(directory / adapter / name, f"PolicySet.save of adapter {adapter!r}")
    return meta


def check_base_model(saved: str | None, configured: str, where: Path) -> None:
    """Adapters load onto the base model they were trained on (the same name, or the same local
    folder); another base would load them without a word and run a different model."""
    if saved is None or saved == configured:
        return
    if Path(saved).is_dir() and Path(configured).is_dir() and Path(saved).resolve() == Path(configured).resolve():
        return
    raise CahlInputError(f"{where}: these adapters were trained on base model {saved!r}, but model.name is "
                         f"{configured!r}; load them with model.name={saved} (cahl eval: --model {saved})")


class RoleBackend:
    """A GenerationBackend for one role: samples with its model's HFBackend through the role's adapter."""

    def __init__(self, policies: "PolicySet", role: str, hf: HFBackend):
        self.policies, self.role, self.hf = policies, role, hf

    @property
    def stats(self):
        return self.hf.stats

    def clear_cache(self) -> None:
        """Drop the prefix KV kept across turns (the rollout calls this when its run ends)."""
        self.hf.clear_cache()

    def prune_cache(self, live: list[list[int]]) -> None:
        self.hf.prune_cache(live)

    def generate(self, prompts: list[list[int]], params: SamplingParams, n: int | list[int] = 1,
                 seed: int | None = None) -> list[Sample]:
        self.policies.activate(self.role)
        return self.hf.generate(prompts, params, n=n, seed=seed, adapter=self.policies.adapter_of[self.role])


class PolicySet:
    """The policies of one run: role -> adapter -> PeftModel, plus the shared tokenizer."""

    def __init__(self, models: dict[str, object], tokenizer, mode: str, roles: tuple[str, ...],
                 base_name: str, max_batch: int = 32, sample_dtype: torch.dtype | None = None):
        self.mode, self.roles, self.tokenizer, self.base_name = mode, tuple(roles), tokenizer, base_name
        self.adapter_of = role_adapters(mode, self.roles)
        self._models = models  # adapter name -> the PeftModel holding it (one object unless separate_models)
        self.sharded = False  # set by cahl.train.sharding.shard
        self.refresh_parameters()
        self._holds: dict[int, list[str]] = {}  # id(model) -> adapters (or _REFERENCE) held by open blocks
        # one sampler per model: roles on one base share its prefix cache and decode in one batch
        self._hf = {id(m): HFBackend(m, tokenizer, max_batch=max_batch) for m in self.models()}
        self._backends = {r: RoleBackend(self, r, self._hf[id(self.model_of(r))]) for r in self.roles}
        for model in self.models():
            install_fused_lora(model)
        # the frozen base's dtype while sampling, when it is not the training dtype (see `sampling`)
        trained = next(p.dtype for p in self.models()[0].parameters() if not p.requires_grad)
        self.sample_dtype = None if sample_dtype in (None, trained) else sample_dtype
        self._low: list[tuple[torch.nn.Parameter, torch.Tensor]] | None = None  # (frozen weight, its copy)
        self._sampling = False

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def create(cls, model_cfg, roles: tuple[str, ...] = ("planner", "executor")) -> "PolicySet":
        """Fresh adapters (LoRA B = 0, so every role starts as the base model) on `model_cfg.name`."""
        from peft import get_peft_model

        config = lora_config(model_cfg)
        return cls._assemble(model_cfg, model_cfg.policies, tuple(roles),
                             lambda base, adapter: get_peft_model(base, config, adapter_name=adapter),
                             lambda model, adapter: model.add_adapter(adapter, config))

    @classmethod
    def from_checkpoint(cls, model_cfg, directory: str | Path) -> "PolicySet":
        """Load a `save`d PolicySet onto base `model_cfg.name`. Layout and roles come from the
        checkpoint (model_cfg.policies is ignored), LoRA sizes from each adapter_config.json."""
        from peft import PeftModel

        meta = read_policy_meta(directory)
        folder = Path(directory)
        check_base_model(meta.get("base_model"), model_cfg.name, folder / POLICY_FILE)
        return cls._assemble(
            model_cfg, meta["mode"], tuple(meta["roles"]),
            lambda base, adapter: PeftModel.from_pretrained(base, str(folder / adapter), adapter_name=adapter,
                                                            is_trainable=True),
            lambda model, adapter: model.load_adapter(str(folder / adapter), adapter_name=adapter, is_trainable=True))

    @classmethod
    def _assemble(cls, model_cfg, mode: str, roles: tuple[str, ...], wrap: Callable, add: Callable) -> "PolicySet":
        """One base model holding every adapter (`wrap` the first, `add` the rest), or in
        separate_models one freshly loaded base per adapter."""
        models: dict[str, object] = {}
        tokenizer = None
        for adapter in dict.fromkeys(role_adapters(mode, roles).values()):
            if models and mode != "separate_models":
                model = next(iter(models.values()))
                add(model, adapter)
            else:
                base, tokenizer = load_model(model_cfg.name, _dtype(train_dtype(model_cfg)), model_cfg.device)
                model = wrap(base, adapter)
            models[adapter] = model
        return cls(models, tokenizer, mode, roles, model_cfg.name, model_cfg.max_batch, sample_dtype(model_cfg))

    # --- use ----------------------------------------------------------------------------------

    @property
    def adapters(self) -> list[str]:
        """Distinct adapter names in role order: build one optimizer per entry."""
        return list(dict.fromkeys(self.adapter_of.values()))

    @property
    def model(self):
        """The one PeftModel holding every adapter (not defined for separate_models: use use_role)."""
        models = self.models()
        if len(models) != 1:
            raise RuntimeError("separate_models has one model per role: use use_role(role) or reference()")
        return models[0]

    @property
    def device(self) -> torch.device:
        return self.models()[0].device

    def backend(self, role: str) -> RoleBackend:
        """Sampling for `role` (the rollout's Policies protocol)."""
        self._check_role(role)
        return self._backends[role]

    def sampler(self, roles: tuple[str, ...], seed: int) -> Sampler:
        """Continuous batching for a rollout: each model's rows in one batch, each row through its
        role's adapter (the roles of one base share a batch; separate_models step one after the other)."""
        for role in roles:
            self._check_role(role)
        decoders = {key: hf.decoder(seed + i) for i, (key, hf) in enumerate(self._hf.items())}
        return Sampler({r: (decoders[id(self.model_of(r))], self.adapter_of[r]) for r in roles})

    def activate(self, role: str):
        """Make `role`'s adapter the active one on its model and return that model."""
        model, adapter = self.model_of(role), self.adapter_of[role]
        held = [h for h in self._holds.get(id(model), []) if h != adapter]
        if held:
            raise RuntimeError(f"cannot switch to role {role!r} (adapter {adapter!r}) inside an open "
                               f"use_role/reference block holding {held[-1]!r} on the same model")
        model.set_adapter(adapter)
        self._keep_trainable(model)
        return model

    @contextmanager
    def use_role(self, role: str) -> Iterator[object]:
        """For training forwards: yields the model with `role`'s adapter active for the whole block."""
        model = self.activate(role)
        with self._hold(model, self.adapter_of[role]):
            yield model

    @contextmanager
    def sampling(self) -> Iterator[None]:
        """Decode inside this block (the rollout enters it): with a `sample_dtype`, every frozen base
        weight is swapped for its copy in that dtype (made once, then a pointer swap each way) and
        swapped back on exit; the adapters stay in the training dtype, and their LoRA term is
        computed in it, as PEFT does on a lower-precision base. Cached prefix KV is dropped on both
        sides: it belongs to the other precision. Without a sample_dtype, or nested, it does nothing."""
        if self.sample_dtype is None or self._sampling:
            yield
            return
        if self._low is None:
            frozen = {id(p): p for m in self.models() for p in m.parameters() if not p.requires_grad}
            self._low = [(p, p.data.to(self.sample_dtype)) for p in frozen.values()]
        full = [p.data for p, _ in self._low]
        self._clear_caches()
        self._sampling = True
        try:
            for p, low in self._low:
                p.data = low
            yield
        finally:
            for (p, _), data in zip(self._low, full):
                p.data = data
            self._sampling = False
            self._clear_caches()

    def _clear_caches(self) -> None:
        for hf in self._hf.values():
            hf.clear_cache()

    @contextmanager
    def reference(self) -> Iterator[object]:
        """The frozen base (adapters disabled): the KL reference. separate_models: the first role's copy.

        May be opened inside use_role(role) (policy forward, then reference forward, then backward):
        on exit the role's adapter is active again and its gradient is intact."""
        model = self.model_of(self.roles[0])
        with self._hold(model, _REFERENCE):
            try:
                with model.disable_adapter():
                    self._keep_trainable(model)
                    yield model
            finally:
                self._keep_trainable(model)

    def model_of(self, role: str):
        """The PeftModel holding `role`'s adapter."""
        self._check_role(role)
        return self._models[self.adapter_of[role]]

    def models(self) -> list:
        """Each distinct PeftModel once (one, unless separate_models)."""
        return list({id(m): m for m in self._models.values()}.values())

    def refresh_parameters(self) -> None:
        """Re-read each adapter's parameters after something replaced them (FSDP's fully_shard
        registers sharded copies): parameters(role) and the optimizers built on it must name the
        live tensors."""
        self._params = {a: adapter_parameters(m, a) for a, m in self._models.items()}
        for model in self.models():
            self._keep_trainable(model)

    def parameters(self, role: str) -> list[torch.nn.Parameter]:
        """Trainable weights of `role`'s adapter only (shared mode: the one shared adapter)."""
        self._check_role(role)
        return self._params[self.adapter_of[role]]

    def state_dict_digest(self, role: str) -> str:
        """sha256 of `role`'s adapter weights as saved (names, dtypes, shapes, bytes): for resume tests."""
        from peft import get_peft_model_state_dict

        self._check_role(role)
        adapter = self.adapter_of[role]
        state = get_peft_model_state_dict(self._models[adapter], adapter_name=adapter)
        h = hashlib.sha256()
        for name in sorted(state):
            t = state[name].detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def adapter_states(self) -> dict[str, dict[str, torch.Tensor]]:
        """adapter -> its weights by parameter name, whole: what `save` writes. Sharded (FSDP)
        weights are gathered, a collective every process must join."""
        from torch.distributed.tensor import DTensor

        states = {}
        for adapter in self.adapters:
            mine = {id(p) for p in self._params[adapter]}
            states[adapter] = {name: (p.full_tensor() if isinstance(p, DTensor) else p).detach()
                               for name, p in self._models[adapter].named_parameters() if id(p) in mine}
        return states

    def save(self, directory: str | Path, states: dict | None = None) -> Path:
        """PEFT adapters in directory/<adapter>/ and directory/policy.json (written last: its presence
        means the adapters before it are complete). states: `adapter_states()`, gathered by every
        process of a sharded run beforehand (default: read here, for unsharded policies)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        states = states if states is not None else self.adapter_states()
        for adapter in self.adapters:
            # PEFT writes an adapter not named "default" into save_directory/<adapter>/.
            self._models[adapter].save_pretrained(str(directory), selected_adapters=[adapter], state_dict=states[adapter])
        meta = {"mode": self.mode, "roles": list(self.roles), "adapters": self.adapter_of,
                "base_model": self.base_name}
        (directory / POLICY_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    def load_adapters(self, directory: str | Path) -> None:
        """Copy saved adapter weights into this PolicySet in place (resume: the optimizers built on
        parameters(role) keep pointing at the live tensors). Layout and roles must match."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        meta = read_policy_meta(directory)
        if meta["mode"] != self.mode or tuple(meta["roles"]) != self.roles:
            raise CahlInputError(f"{Path(directory) / POLICY_FILE}: saved mode {meta['mode']!r} roles {meta['roles']}, "
                                 f"expected mode {self.mode!r} roles {list(self.roles)}")
        for adapter in self.adapters:
            path = Path(directory) / adapter / "adapter_model.safetensors"
            state = load_file(str(path), device=str(self.device))
            result = set_peft_model_state_dict(self._models[adapter], state, adapter_name=adapter)
            if result.unexpected_keys or len(state) != len(self._params[adapter]):
                raise CahlInputError(f"{path}: {len(state)} tensors for {len(self._params[adapter])} adapter "
                                     f"weights (unexpected: {result.unexpected_keys[:3]}); was it saved with "
                                     f"another base model or LoRA config?")

    # --- internals ----------------------------------------------------------------------------

    def _check_role(self, role: str) -> None:
        if role not in self.adapter_of:
            raise CahlInputError(f"unknown policy role {role!r}; this PolicySet has roles {list(self.roles)}")

    def _keep_trainable(self, model) -> None:
        """Undo PEFT's requires_grad flips on `model`'s adapters (see the module docstring). Sharded,
        these are FSDP's sharded parameters: FSDP copies their flag to the gathered ones it
        registers in each forward."""
        for adapter, params in self._params.items():
            if self._models[adapter] is model:
                for p in params:
                    p.requires_grad_(True)

    @contextmanager
    def _hold(self, model, what: str) -> Iterator[None]:
        """Record an open block on `model` so that activate() refuses to switch its adapter meanwhile."""
        stack = self._holds.setdefault(id(model), [])
        stack.append(what)
        try:
            yield
        finally:
            stack.pop()


class MergedPolicies:
    """Evaluation's policies: each role's adapter merged into its own copy of the base weights
    (PEFT's `merge_and_unload` on a copy of the trained PolicySet), in the sampling dtype.

    Why: a decode step of the routed adapters computes every LoRA term beside the base matmul,
    in the adapters' float32 (PEFT's order on a bfloat16 base): on 2 CPU cores that was ~40% of
    the projections' time in a greedy evaluation. Merged, a step is a plain forward. Roles that
    share an adapter share one model and one decode batch; the planner's and the executor's
    models (layout `adapters` or `separate_models`) decode in a batch each, stepped together. The
    merged weights are rounded to the sampling dtype once, where the routed forward adds a float32
    LoRA term to a bfloat16 base product, so greedy tokens can differ where two logits are within
    that rounding (eval.merge_adapters=false decodes the adapters as trained). Not for training:
    nothing here has gradients or adapters to save."""

    def __init__(self, policies: PolicySet):
        import copy

        self.roles, self.tokenizer = policies.roles, policies.tokenizer
        self.adapter_of = dict(policies.adapter_of)
        self._hf: dict[str, HFBackend] = {}
        for adapter in policies.adapters:
            source = policies._models[adapter]
            max_batch = policies._hf[id(source)].max_batch
            model = copy.deepcopy(source)
            model.set_adapter(adapter)
            plain = model.merge_and_unload(adapter_names=[adapter])
            if policies.sample_dtype is not None:
                plain.to(policies.sample_dtype)
            plain.requires_grad_(False)
            plain.eval()
            self._hf[adapter] = HFBackend(plain, policies.tokenizer, max_batch=max_batch)

    def backend(self, role: str) -> HFBackend:
        if role not in self.adapter_of:
            raise CahlInputError(f"unknown policy role {role!r}; these policies have roles {list(self.roles)}")
        return self._hf[self.adapter_of[role]]

    def sampler(self, roles: tuple[str, ...], seed: int) -> Sampler:
        """Continuous batching: one batch per merged model (the roles of one adapter share it)."""
        decoders = {a: hf.decoder(seed + i) for i, (a, hf) in enumerate(self._hf.items())}
        for role in roles:
            self.backend(role)  # an unknown role: the error names the roles there are
        return Sampler({r: (decoders[self.adapter_of[r]], None) for r in roles})

    def models(self) -> list:
        return [hf.model for hf in self._hf.values()]
