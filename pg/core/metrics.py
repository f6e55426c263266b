"""Metric names: one name, one meaning, everywhere (MLflow, sweeps, analysis, tests).

Every metric is logged with ``step`` = environment steps taken so far.
"""

from __future__ import annotations

EP_RETURN = "rollout/ep_return"  # return of one finished episode
EP_RETURN_100 = "rollout/ep_return_100"  # mean return of the last 100 finished episodes
EP_LENGTH = "rollout/ep_length"  # length of one finished episode
EPISODES = "rollout/episodes"  # finished episodes so far
LOSS_POLICY = "losses/policy"
LOSS_ENTROPY = "losses/entropy"  # -entropy_beta * entropy
LOSS_TOTAL = "losses/total"
ENTROPY = "stats/entropy"  # mean policy entropy on the update batch (nats)
KL = "stats/kl"  # KL(old || new) on the update batch, measured after the update
GRAD_L2 = "stats/grad_l2"  # L2 norm of the whole gradient, before clipping
GRAD_MAX = "stats/grad_max"  # largest absolute gradient element
GRAD_VAR = "stats/grad_var"  # variance of all gradient elements
BASELINE = "stats/baseline"  # mean baseline subtracted on the update batch
BATCH_SCALE = "stats/scale"  # mean scale (return or advantage) multiplying log pi
EVAL_RETURN = "eval/return"  # mean return of the greedy policy on a separate env
SPS = "time/sps"  # environment steps per second of the training loop
OBJECTIVE = "objective"  # the value returned to a sweeper, logged once at the end

# Wall-clock metrics differ between two identical runs; reproduction ignores them.
TIME_PREFIX = "time/"
SYSTEM_PREFIX = "system/"  # MLflow's own system metrics (CPU, memory), sampled by wall clock
WALL_CLOCK_PREFIXES = (TIME_PREFIX, SYSTEM_PREFIX)  # never equal between two runs

OBJECTIVES = (EP_RETURN_100, EVAL_RETURN)
