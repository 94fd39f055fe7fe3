"""GRPO group-normalised advantages (DESIGN §4).

Every sample's scalar reward is compared with the other samples of its group: the planner group
is the G_H plans of one task, the executor group is the G_L attempts at one sub-task. Group ids are
any hashable, in practice `(task_id, role, node)`.

Decisions (each differs somewhere in the GRPO family, so they are stated here once):
- Std is the *population* std (`unbiased=False`). DeepSeekMath's GRPO says only "std"; TRL's
  GRPOTrainer and verl's `compute_grpo_outcome_advantage` use torch's default Bessel-corrected
  std, which makes advantages smaller by sqrt((G-1)/G) (0.87 at G=4, 0.97 at G=16). With the
  population std a two-valued group with equal counts, e.g. rewards [1, 0, 0, 1], gets exactly
  +-1 (up to eps), whatever its size.
- `scale_by_std=False` is Dr. GRPO's advantage (mean-centred only): it removes the bias toward
  groups whose rewards barely differ, at the price of reward-scale-dependent step sizes.
- A group whose rewards are all equal within `tol` (singletons included) carries no signal: its
  advantages are exactly 0 and the samples are flagged, so the trainer can drop them (DAPO's
  dynamic sampling) and the share is logged. verl instead gives a singleton its raw reward
  (mean 0, std 1); we do not, because one sample has no baseline to be compared with.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from torch import Tensor

from cahl.types import CahlInputError


def group_index(group_ids: Sequence[Hashable] | Tensor, n: int) -> tuple[Tensor, int]:
    """Map arbitrary hashable group ids to dense indices 0..n_groups-1 in order of first appearance.

    A tensor of ids may be [N] (one id per sample) or [N, K] (each row is one id, e.g. encoded
    (task, role, node)); its rows are turned into tuples so equal rows share a group.
    """
    if isinstance(group_ids, Tensor):
        if group_ids.dim() not in (1, 2):
            raise CahlInputError(f"group_ids: expected a tensor of shape [N] or [N, K], got {tuple(group_ids.shape)}")
        group_ids = [tuple(row) if isinstance(row, list) else row for row in group_ids.tolist()]
    if len(group_ids) != n:
        raise CahlInputError(f"group_ids: expected {n} ids (one per reward), got {len(group_ids)}")
    dense: dict[Hashable, int] = {}
    try:
        index = [dense.setdefault(gid, len(dense)) for gid in group_ids]
    except TypeError as err:  # an unhashable id such as a list
        raise CahlInputError(f"group_ids: every id must be hashable (use tuples, not lists): {err}") from err
    return torch.tensor(index, dtype=torch.long), len(dense)


def group_advantages(
    rewards: Tensor,
    group_ids: Sequence[Hashable] | Tensor,
    *,
    scale_by_std: bool = True,
    eps: float = 1e-6,
    tol: float = 1e-6,
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """GRPO advantages: (r - mean_group) / (std_group + eps), or r - mean_group without scaling.

    Returns (advantages [N] in the rewards' float dtype, zero_variance [N] bool, metrics). A group
    is zero-variance when max - min <= tol; its advantages are exactly 0. Metrics: n_groups,
    n_zero_variance_groups, zero_variance_share (share of groups), adv_mean/std/min/max (over all
    N samples, zeros included; adv_std is the population std).
    """
    if not isinstance(rewards, Tensor) or rewards.dim() != 1:
        raise CahlInputError(f"rewards: expected a 1-D tensor [N], got {getattr(rewards, 'shape', type(rewards))}")
    n = rewards.shape[0]
    if n == 0:
        raise CahlInputError("rewards: expected at least one reward, got an empty tensor")
    if not torch.isfinite(rewards).all():
        bad = torch.nonzero(~torch.isfinite(rewards)).flatten().tolist()
        raise CahlInputError(f"rewards: expected finite values, got non-finite rewards at indices {bad[:10]}")
    out_dtype = rewards.dtype if rewards.is_floating_point() else torch.float32
    idx, n_groups = group_index(group_ids, n)  # idx [N] in 0..n_groups-1
    # [N] on CPU in float64: N is small, every device supports it there, and a mean over rewards
    # ~1e3 keeps the 1e-6 resolution that `tol` asks for.
    r = rewards.detach().to("cpu", torch.float64)

    counts = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, idx, torch.ones_like(r))  # [G]
    mean = torch.zeros_like(counts).index_add_(0, idx, r) / counts  # [G]
    centred = r - mean[idx]  # [N]
    var = torch.zeros_like(counts).index_add_(0, idx, centred**2) / counts  # [G] population variance
    g_max = torch.full_like(counts, -torch.inf).scatter_reduce_(0, idx, r, reduce="amax")  # [G]
    g_min = torch.full_like(counts, torch.inf).scatter_reduce_(0, idx, r, reduce="amin")  # [G]
    zero_var_group = (g_max - g_min) <= tol  # [G] singletons have max == min

    adv = centred / (var.sqrt()[idx] + eps) if scale_by_std else centred  # [N]
    zero_var = zero_var_group[idx]  # [N]
    adv = torch.where(zero_var, torch.zeros_like(adv), adv)

    n_zero = int(zero_var_group.sum())
    metrics = {
        "n_groups": float(n_groups),
        "n_zero_variance_groups": float(n_zero),
        "zero_variance_share": n_zero / n_groups,
        "adv_mean": adv.mean().item(),
        "adv_std": adv.std(unbiased=False).item(),
        "adv_min": adv.min().item(),
        "adv_max": adv.max().item(),
    }
    return adv.to(rewards.device, out_dtype), zero_var.to(rewards.device), metrics
