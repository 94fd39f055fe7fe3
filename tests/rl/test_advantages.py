"""group_advantages against a naive per-group loop and hand-computed cases."""

import math
import random

import pytest
import torch

from cahl.rl.advantages import group_advantages
from cahl.types import CahlInputError


def naive_group_advantages(rewards, ids, scale_by_std=True, eps=1e-6, tol=1e-6):
    groups = {}
    for r, gid in zip(rewards, ids):
        groups.setdefault(gid, []).append(r)
    out, flagged = [], []
    for r, gid in zip(rewards, ids):
        g = groups[gid]
        mean = sum(g) / len(g)
        std = math.sqrt(sum((x - mean) ** 2 for x in g) / len(g))  # population std
        if max(g) - min(g) <= tol:
            out.append(0.0)
            flagged.append(True)
        else:
            out.append((r - mean) / (std + eps) if scale_by_std else r - mean)
            flagged.append(False)
    return out, flagged, len(groups), sum(max(g) - min(g) <= tol for g in groups.values())


def random_batch(seed):
    rng = random.Random(seed)
    ids, rewards = [], []
    for task in range(rng.randint(1, 8)):
        for role, node in (("planner", 0), ("executor", 1), ("executor", 2)):
            size = rng.choice([1, 2, 4, 5, 8])
            # discrete rewards make equal-reward groups common, as with real verifiable rewards
            pool = rng.choice([[0.0, 1.0], [0.5], [-1.0, 0.25, 0.75, 1.0]])
            ids += [(f"t{task}", role, node)] * size
            rewards += [rng.choice(pool) + rng.choice([0.0, 0.0, rng.uniform(-2, 2)]) for _ in range(size)]
    order = list(range(len(ids)))
    rng.shuffle(order)  # group members need not be contiguous
    return [rewards[i] for i in order], [ids[i] for i in order]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("scale_by_std", [True, False])
def test_matches_naive_loop(seed, scale_by_std):
    rewards, ids = random_batch(seed)
    adv, zero_var, metrics = group_advantages(torch.tensor(rewards), ids, scale_by_std=scale_by_std)
    want, want_flag, n_groups, n_zero = naive_group_advantages(rewards, ids, scale_by_std=scale_by_std)
    torch.testing.assert_close(adv, torch.tensor(want), rtol=1e-5, atol=1e-5)
    assert zero_var.tolist() == want_flag
    assert metrics["n_groups"] == n_groups
    assert metrics["n_zero_variance_groups"] == n_zero
    assert metrics["zero_variance_share"] == pytest.approx(n_zero / n_groups)
    assert metrics["adv_min"] == pytest.approx(min(want), abs=1e-5)
    assert metrics["adv_max"] == pytest.approx(max(want), abs=1e-5)
    assert metrics["adv_mean"] == pytest.approx(sum(want) / len(want), abs=1e-5)


def test_two_valued_group_gets_plus_minus_one_with_population_std():
    adv, zero_var, _ = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), ["g"] * 4)
    torch.testing.assert_close(adv, torch.tensor([1.0, -1.0, -1.0, 1.0]), atol=1e-5, rtol=0)
    assert not zero_var.any()
    # a pair too: Bessel's correction would give +-0.707 here
    adv, _, _ = group_advantages(torch.tensor([3.0, 1.0]), ["h", "h"])
    torch.testing.assert_close(adv, torch.tensor([1.0, -1.0]), atol=1e-5, rtol=0)


def test_without_std_scaling_advantages_are_mean_centred_rewards():
    adv, _, _ = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), ["g"] * 4, scale_by_std=False)
    torch.testing.assert_close(adv, torch.tensor([0.75, -0.25, -0.25, -0.25]))


def test_zero_variance_and_singleton_groups_are_zeroed_flagged_and_counted():
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 0.5, 0.7, 2.0, 2.0 + 5e-7])
    ids = [("t1", "planner", 0)] * 2 + [("t1", "executor", 1)] * 3 + [("t2", "executor", 1)] + [("t3", "planner", 0)] * 2
    adv, zero_var, metrics = group_advantages(rewards, ids)
    assert zero_var.tolist() == [False, False, True, True, True, True, True, True]
    assert (adv[zero_var] == 0).all()  # exactly zero, not merely small
    assert metrics["n_groups"] == 4
    assert metrics["n_zero_variance_groups"] == 3  # equal group, singleton, equal within 1e-6
    assert metrics["zero_variance_share"] == pytest.approx(0.75)


def test_group_ids_as_tensors():
    rewards = torch.tensor([1.0, 0.0, 2.0, 4.0])
    by_list, _, _ = group_advantages(rewards, [7, 7, 9, 9])
    by_tensor, _, _ = group_advantages(rewards, torch.tensor([7, 7, 9, 9]))
    by_rows, _, m = group_advantages(rewards, torch.tensor([[1, 0], [1, 0], [2, 1], [2, 1]]))
    torch.testing.assert_close(by_tensor, by_list)
    torch.testing.assert_close(by_rows, by_list)
    assert m["n_groups"] == 2


def test_integer_rewards_give_float_advantages():
    adv, _, _ = group_advantages(torch.tensor([1, 0]), ["g", "g"])
    assert adv.dtype == torch.float32


@pytest.mark.parametrize(
    "rewards, ids, needle",
    [
        (torch.tensor([1.0, float("nan")]), ["g", "g"], "indices [1]"),
        (torch.tensor([1.0, 0.0]), ["g"], "expected 2 ids"),
        (torch.tensor([1.0, 0.0]), [["g"], ["g"]], "hashable"),
        (torch.tensor([[1.0, 0.0]]), ["g"], "1-D"),
        (torch.tensor([]), [], "at least one"),
    ],
)
def test_bad_input_names_the_problem(rewards, ids, needle):
    with pytest.raises(CahlInputError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        group_advantages(rewards, ids)
