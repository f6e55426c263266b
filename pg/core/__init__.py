"""The training core: config schema, envs, policy, rollout, returns, algorithms, the loop.

Nothing here imports MLflow or Optuna: metrics go to a sink and the objective leaves as
``(env_step, value)`` report points, so runs, sweeps and reproductions drive it alike.
"""
