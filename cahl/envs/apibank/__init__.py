"""API-Bank as an executable environment (DESIGN §6): our implementations of the 50 APIs of the
level-1/2 dialogues, run over a private copy of the init databases per episode."""

from cahl.envs.apibank.env import PRIOR_CALLS_KEY, ApiBankEnv, replay_dialogue, results_agree
from cahl.envs.apibank.specs import API_SCHEMAS, API_SPECS, check_arguments, tools_for

__all__ = ["API_SCHEMAS", "API_SPECS", "PRIOR_CALLS_KEY", "ApiBankEnv", "check_arguments", "replay_dialogue",
           "results_agree", "tools_for"]
