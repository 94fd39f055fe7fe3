"""Rewards as pure functions over trajectories and tasks (DESIGN §3).

    format.py     per-turn grammar check, mean over a trajectory's turns
    calls.py      call correctness: ToolRL's graded score, Tool-N1's exact multiset; REWARDS registry
    hierarchy.py  executor r_L (with gold-call claiming), capability c(j), planner r_H, flat reward,
                  outcome (the benchmark's verdict), RewardConfig, score_episodes
"""

from cahl.rewards.calls import REWARDS, call_correctness, exact_multiset, toolrl_correctness
from cahl.rewards.format import format_score, trajectory_format
from cahl.rewards.hierarchy import (RewardConfig, capability, claim_gold, executor_reward, flat_reward, outcome,
                                    planner_reward, score_episodes, unclaimed_gold)

__all__ = ["REWARDS", "RewardConfig", "call_correctness", "capability", "claim_gold", "exact_multiset",
           "executor_reward", "flat_reward", "format_score", "outcome", "planner_reward", "score_episodes",
           "toolrl_correctness", "trajectory_format", "unclaimed_gold"]
