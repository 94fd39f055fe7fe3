"""Packing sequences as the prefix tree of their prompts (each shared start computed once) must
give every sequence exactly the log-probs and gradients it gets alone."""

import pytest
import torch

from cahl.agents.policy import PolicySet
from cahl.config import ModelConfig
from cahl.testing import tiny_model
from cahl.train.batching import pack, prompt_tree, shared_prefix_logprobs, token_logprobs, tree_tokens
from cahl.train.update import forward_units, grpo_step
from cahl.types import Trajectory

INSTR, TOOLS_A, TOOLS_B = list(range(10, 22)), list(range(30, 37)), list(range(40, 49))  # 12, 7, 9 tokens
SUB = [list(range(60, 64)), list(range(70, 74)), list(range(80, 84))]
# prompts as a hierarchy produces them: a group's members share a prompt, one task's sub-tasks its
# tools, every prompt the role's instructions; one prompt (index 3) is the start of others
PROMPTS = [INSTR + TOOLS_A + SUB[0], INSTR + TOOLS_A + SUB[0], INSTR + TOOLS_A + SUB[1], INSTR + TOOLS_A,
           INSTR + TOOLS_B + SUB[2], INSTR + TOOLS_B + SUB[2]]
GROUPS = [("a", "executor", "s0"), ("a", "executor", "s0"), ("a", "executor", "s1"), ("a", "executor", "s2"),
          ("b", "executor", "s0"), ("b", "executor", "s0")]


def _sequences(prompts, seed: int = 3):
    """Each prompt continued by a multi-turn member: sampled turn, untrained feedback, sampled turn."""
    g = torch.Generator().manual_seed(seed)
    seqs, masks, logprobs = [], [], []
    for p in prompts:
        n = int(torch.randint(2, 9, (1,), generator=g))
        turn, feedback, turn2 = [torch.randint(100, 200, (k,), generator=g).tolist() for k in (n, 3, 2)]
        seqs.append(p + turn + feedback + turn2)
        masks.append([0] * len(p) + [1] * n + [0] * 3 + [1] * 2)
        logprobs.append([0.0] * len(p) + (-torch.rand(n, generator=g)).tolist() + [0.0] * 3
                        + (-torch.rand(2, generator=g)).tolist())
    return seqs, masks, logprobs


@pytest.fixture
def policies(tmp_path):
    torch.manual_seed(0)
    policies = PolicySet.create(ModelConfig(name=tiny_model(tmp_path / "m"), lora_r=4), roles=("executor",))
    with torch.no_grad():
        for p in policies.parameters("executor"):
            p.add_(torch.randn_like(p) * 0.05)
    return policies


def test_prompt_tree_holds_each_shared_start_once():
    root = prompt_tree(PROMPTS)
    assert (root.start, root.n, root.members) == (0, 12, [])  # the instructions
    a, b = root.children
    assert (a.start, a.n, a.members) == (12, 7, [3])  # task a's tools; prompt 3 ends there
    assert [(c.start, c.n, c.members) for c in a.children] == [(19, 4, [0, 1]), (19, 4, [2])]
    assert (b.start, b.n, b.members, b.children) == (12, 13, [4, 5], [])  # one path: one node
    assert tree_tokens(PROMPTS) == 12 + 7 + 4 + 4 + 13
    assert tree_tokens([[1, 2], [3]]) == 3 and tree_tokens([[5, 6, 7]] * 3) == 3


@pytest.mark.parametrize("prompts", [PROMPTS, [[5] + p for p in PROMPTS[:3]] + [[6] + p for p in PROMPTS[3:]]],
                         ids=["shared root", "no shared first token"])
def test_prefix_tree_logprobs_equal_each_sequence_alone(policies, prompts):
    seqs, masks, _ = _sequences(prompts)
    with policies.use_role("executor") as model, torch.no_grad():
        logp, trained, R = shared_prefix_logprobs(model, seqs, masks, pad_id=0)
        assert R == (12 if prompts is PROMPTS else 0)
        for i, (s, m) in enumerate(zip(seqs, masks)):
            alone = token_logprobs(model, pack([s], [m]))[0]
            n = len(s) - R
            assert trained[i, :n].tolist() == [bool(x) for x in m[R:]]
            assert not trained[i, n:].any()
            torch.testing.assert_close(logp[i, :n], alone[R:], rtol=1e-5, atol=1e-5)


def _trajs(prompts):
    seqs, masks, logprobs = _sequences(prompts)
    return [Trajectory("executor", g[0], f"n{i}", None, g, s, m, lp, len(p))
            for i, (g, s, m, lp, p) in enumerate(zip(GROUPS, seqs, masks, logprobs, prompts))]


def _grads(policies, trajs, share: bool, max_tokens: int):
    opt = torch.optim.SGD(policies.parameters("executor"), lr=0.0)
    adv = [1.0, -0.5, 0.25, -0.75, 0.5, -1.0]
    m = grpo_step(policies, "executor", opt, trajs, adv, eps_low=0.2, eps_high=0.28, kl_beta=0.1,
                  max_tokens=max_tokens, grad_clip=1e9, pad_id=0, apply=False, share_prefix=share)
    return [p.grad.clone() for p in policies.parameters("executor")], m


def test_groups_packed_as_one_tree_give_the_separate_forwards_gradients(policies):
    trajs = _trajs(PROMPTS)
    assert forward_units(trajs, 10_000, True) == [[3, 0, 1, 2, 4, 5]]  # all groups, in the order of their prompts
    # trees of 23 prompt + 37 own tokens, then 36 + 24: at most 60 tokens per forward
    assert forward_units(trajs, 60, True) == [[3, 0, 1], [2, 4, 5]]
    # groups [0, 1] (23 + 24 tokens) and [4, 5] (25 + 17) exceed 40 tokens alone: one forward each
    assert forward_units(trajs, 40, True) == [[3], [0, 1], [2], [4, 5]]
    separate, m_sep = _grads(policies, trajs, False, 10_000)
    assert any(float(g.abs().sum()) > 0 for g in separate)
    for max_tokens in (10_000, 60, 40):
        shared, m = _grads(policies, trajs, True, max_tokens)
        for a, b in zip(shared, separate):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        assert abs(m["loss"] - m_sep["loss"]) < 1e-5 and abs(m["kl"] - m_sep["kl"]) < 1e-6 and m["kl"] > 0
