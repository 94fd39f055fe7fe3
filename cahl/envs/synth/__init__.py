"""Synthetic multi-step tool tasks whose ground truth is computed by running the tools.

    tools.py     the executable tools (pure functions), their schemas and unseen-name aliases
    tables.py    the fixed tables behind lookups and conversions
    generate.py  generate_tasks: seeded tasks with difficulty knobs
    env.py       SynthEnv: runs calls with schema checks and time limits
    answer.py    check_answer: the final-answer verdict
"""

from cahl.envs.synth.answer import check_answer
from cahl.envs.synth.env import SynthEnv, check_arguments
from cahl.envs.synth.generate import generate_tasks
from cahl.envs.synth.tools import TOOLS

__all__ = ["TOOLS", "SynthEnv", "check_answer", "check_arguments", "generate_tasks"]
