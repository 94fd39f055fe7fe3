"""Shared fixtures: the embedded tokenizer, its chat format, and a tiny random Llama over its vocabulary."""

import pytest
import torch


@pytest.fixture(scope="session")
def tokenizer():
    from cahl.agents.model import load_tokenizer

    return load_tokenizer("embedded")


@pytest.fixture(scope="session")
def chat(tokenizer):
    from cahl.agents.chat import ChatFormat

    return ChatFormat(tokenizer)


@pytest.fixture(scope="session")
def tiny_model(tokenizer):
    """A 2-layer random Llama (~6M params, mostly embeddings); fast on CPU.

    initializer_range=0.2 spreads the logits so greedy choices have margins (~1e-3 and up) far
    above float32 noise from padding, and sampling at temperature 1 still varies. Matrices this
    small run ~10x faster on one thread than on several threads competing for shared cores.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=len(tokenizer), initializer_range=0.2,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield model
    torch.set_num_threads(threads)
