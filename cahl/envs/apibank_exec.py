"""Entry point named in the task list; the implementation lives in the package cahl.envs.apibank."""

from cahl.envs.apibank import (API_SCHEMAS, API_SPECS, PRIOR_CALLS_KEY, ApiBankEnv, check_arguments,
                               replay_dialogue, results_agree, tools_for)

__all__ = ["API_SCHEMAS", "API_SPECS", "PRIOR_CALLS_KEY", "ApiBankEnv", "check_arguments", "replay_dialogue",
           "results_agree", "tools_for"]
