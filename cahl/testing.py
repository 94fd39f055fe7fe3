"""Helpers for tests: a tiny random Llama with the embedded model's tokenizer.

Why: tests of adapters, generation and training need a real transformers causal LM with the same
architecture and vocabulary as the embedded SmolLM2 (so prompts, chat templates and stop strings
behave the same), but loading 135M parameters per test would make the suite slow. This model has
two layers of width 64 (~3.2M parameters, almost all in the tied embedding), builds and saves in
well under 2 s, and is the same for every call (fixed seed), so `ModelConfig(name=tiny_model(p))`
works wherever a model name is accepted.
"""

from __future__ import annotations

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
