"""Checks that trajectories are safe to train on (DESIGN §4), usable on any rollout or dump.

- token invariant: each turn's ids are exactly the sampled ids (no re-tokenisation), and the
  loss mask is 1 exactly on sampled positions, with their sampling log-probs;
- group ids match the tree (plans grouped per task, executor attempts per sub-task node);
- every trajectory and episode has a named end reason.
"""

from __future__ import annotations

from cahl.types import END_REASONS, Episode, Trajectory


def trajectory_problems(tr: Trajectory, sampled: dict[tuple[str, int], list[int]] | None = None) -> list[str]:
    p = []
    n = len(tr.ids)
    if not (len(tr.loss_mask) == len(tr.logprobs) == n):
        p.append(f"{tr.node}: ids/loss_mask/logprobs lengths differ ({n}, {len(tr.loss_mask)}, {len(tr.logprobs)})")
        return p
    expected = [0] * n
    for k, turn in enumerate(tr.turns):
        for i in range(turn.start, turn.end):
            expected[i] = 1
        if sampled is not None and (tr.node, k) in sampled and tr.ids[turn.start:turn.end] != sampled[(tr.node, k)]:
            p.append(f"{tr.node} turn {k}: trained ids differ from the sampled ids")
    if expected != list(tr.loss_mask):
        p.append(f"{tr.node}: loss mask is not exactly the sampled turns")
    if any(lp != 0.0 for lp, m in zip(tr.logprobs, tr.loss_mask) if not m):
        p.append(f"{tr.node}: log-probs on positions that were not sampled")
    if any(tr.loss_mask[: tr.prompt_len]):
        p.append(f"{tr.node}: loss mask covers the prompt")
    if tr.end_reason not in END_REASONS:
        p.append(f"{tr.node}: end reason {tr.end_reason!r} not in {END_REASONS}")
    return p


def episode_problems(ep: Episode) -> list[str]:
    p = []
    if ep.end_reason not in END_REASONS:
        p.append(f"{ep.node}: episode end reason {ep.end_reason!r}")
    head = ep.trajectories[0]
    for tr in ep.trajectories:
        p += trajectory_problems(tr)
        if tr.role == "executor" and tr.parent is not None:
            sub = tr.node.rsplit(".a", 1)[0]
            if tr.group_id != (ep.task.id, "executor", sub) or tr.parent != head.node:
                p.append(f"{tr.node}: group {tr.group_id} / parent {tr.parent} do not match the tree")
        elif tr.role in ("planner", "flat") and tr.group_id != (ep.task.id, tr.role, "root"):
            p.append(f"{tr.node}: group {tr.group_id} is not the task's root group")
    if head.role == "planner":
        for sub in head.meta.get("subtasks", []):
            chosen = [tr for tr in ep.trajectories if tr.node in sub["attempts"] and tr.meta.get("chosen")]
            if len(chosen) != 1:
                p.append(f"{sub['node']}: {len(chosen)} chosen attempts (expected 1)")
    return p
