"""Helpers for tests: a tiny random Llama with the embedded model's tokenizer.

Why: tests of adapters, generation and training need a real transformers causal LM with the same
architecture and vocabulary as the embedded SmolLM2 (so prompts, chat templates and stop strings
behave the same), but loading 135M parameters per test would make the suite slow. This model has
two layers of width 64 (~3.2M parameters, almost all in the tied embedding), builds and saves in
well under 2 s, and is the same for every call (fixed seed), so `ModelConfig(name=tiny_model(p))`
works wherever a model name is accepted.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from cahl.agents.model import EMBEDDED, load_tokenizer


def tiny_model(path: str | Path, seed: int = 0) -> str:
    """Save a tiny random LlamaForCausalLM + the embedded tokenizer to `path`; return the path."""
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    if (path / "config.json").is_file():  # deterministic, so an existing copy is the same model
        return str(path)
    tokenizer = load_tokenizer(EMBEDDED)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def parity_reward(trajectory, task) -> float:
    """A reward that varies between random samples (share of sampled ids that are even), so that
    tests with a tiny random model get GRPO groups with signal. Use via reward.custom."""
    sampled = [t for t, m in zip(trajectory.ids, trajectory.loss_mask) if m]
    return sum(t % 2 == 0 for t in sampled) / max(len(sampled), 1)


def train_args(model: str, out: str | Path, steps: int = 3, sft_cache: str | Path | None = None) -> list[str]:
    """Command line of the tiny training run (SFT warm start + `steps` joint GRPO steps on `model`,
    both roles) that the resume, determinism and distribution tests repeat; the parity reward gives
    GRPO groups signal. The warm start is cached in `sft_cache` (default: beside `out`, so the runs
    of one test share it, as the runs of one experiment do)."""
    cache = Path(sft_cache) if sft_cache is not None else Path(out).parent / "sft-cache"
    return [sys.executable, "-m", "cahl.cli", "train", "--out", str(out), f"model.name={model}", "model.lora_r=4",
            f"sft.cache_dir={cache}", "sft.check_items=0",
            "model.threads=1", "sft.steps=2", "sft.batch_size=2", f"train.steps={steps}", "train.tasks_per_step=2",
            "train.data=[synth]", "train.n_synth=12", "train.tensorboard=false", "rollout.plans_per_task=2",
            "rollout.attempts_per_subtask=2", "rollout.max_new_tokens=32", "rollout.think_tokens=2", "rollout.max_planner_turns=2",
            "rollout.max_context=1024", "train.lr_planner=0.01", "train.lr_executor=0.01", "sft.lr=0.01",
            "reward.custom=cahl.testing:parity_reward"]


def adapter_digest(folder: Path) -> str:
    """sha256 over every saved adapter (relative path and bytes) under `folder`."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("adapter_model.safetensors")):
        h.update(p.relative_to(folder).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def adapter_tensors(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Every saved adapter under `folder`: relative path -> its tensors by name."""
    from safetensors.torch import load_file

    return {p.relative_to(folder).as_posix(): load_file(p) for p in sorted(folder.rglob("adapter_model.safetensors"))}


def metric_lines(run: Path) -> list[dict]:
    """metrics.jsonl without the time/ keys (wall-clock figures differ between runs)."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in lines]
