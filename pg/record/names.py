"""Every name in the record, once.

These strings are a public format: users' stores hold them and ``analysis``,
``pg.reproduce`` and the MLflow UI read them back.  Change one only together with a reader
that still understands the old name, and a test that reads an old store
(``tests/data/store-0.1.0``).
"""

from __future__ import annotations

# -- run kinds (tag KIND) -------------------------------------------------------------
KIND_RUN = "run"  # a single training run (pg.run, pg.reproduce)
KIND_SWEEP = "sweep"  # the parent run of a sweep
KIND_TRIAL = "trial"  # one trial: the training run itself, or the parent of its seeds
KIND_SEED = "seed"  # one seed of a multi-seed trial
KIND_VALIDATION = "validation"  # one of the best configurations trained on a fresh seed

# -- tags -------------------------------------------------------------------------------
TAG_PREFIX = "pg."
KIND = "pg.kind"
VERSION = "pg.version"
COMMAND = "pg.command"
PYTHON = "pg.python"
GIT_COMMIT = "pg.git_commit"
GIT_DIRTY = "pg.git_dirty"
ENV = "pg.env"
ALGO = "pg.algo"
SEED = "pg.seed"
SEEDS = "pg.seeds"  # a multi-seed trial: its seeds, comma-separated
SEED_INDEX = "pg.seed_index"
OBJECTIVE = "pg.objective"  # name of the metric the run is judged by
SOLVED = "pg.solved"
STEPS = "pg.steps"
REPRODUCE = "pg.reproduce"
ERROR = "pg.error"
STOPPED = "pg.stopped"  # why a run was stopped early (pruned, Ctrl-C, orphaned)
SOURCE_RUN = "pg.source_run"  # a reproduction: the run it re-ran
SOURCE_TRIAL = "pg.source_trial"
RETRY_OF = "pg.retry_of"  # a sweep trial's runs: the number of the trial it re-runs
STUDY = "pg.study"
TRIAL_NUMBER = "pg.trial_number"
# Optuna's final state: COMPLETE | PRUNED | FAIL.  A PRUNED trial's runs end FINISHED
# with STOPPED saying why (older stores, e.g. tests/data, have them KILLED): pruning is the
# sweep working, and the UI paints KILLED red.
TRIAL_STATE = "pg.trial_state"
TRIAL_REASON = "pg.trial_reason"
STORAGE = "pg.storage"  # a sweep's study storage (redacted)
# Older spellings of STORAGE that readers still accept.
STORAGE_ALIASES = (STORAGE, "pg.study_storage", "pg.optuna_storage")
SAMPLER = "pg.sampler"
PRUNER = "pg.pruner"
DIRECTION = "pg.direction"
SWEEP_MODE = "pg.sweep_mode"  # a sweep's parent run: grid | search
BEST_TRIAL = "pg.best_trial"
BEST_VALUE = "pg.best_value"
BEST_RUN_ID = "pg.best_run_id"
VIDEO_STEPS = "pg.video_steps"  # env steps of the episode in POLICY_GIF (frames - 1)
VIDEO_RETURN = "pg.video_return"
VIDEO_SECONDS = "pg.video_seconds"  # rendering + encoding time, after training
MODEL_ID = "pg.model_id"  # on a registered version: the LoggedModel it points to
VALIDATED_TRIAL = "pg.validated_trial"  # a validation run: the search trial it re-trains
VALIDATED_BEST_TRIAL = "pg.validated_best_trial"  # a sweep's parent run, after validation
VALIDATED_BEST_VALUE = "pg.validated_best_value"  # its mean over the validation seeds
VALIDATED_BEST_RUN_IDS = "pg.validated_best_run_ids"  # its validation runs, space-separated
N_TRIALS_DONE = "pg.n_trials_done"
N_STATE_PREFIX = "pg.n_"  # pg.n_complete, pg.n_pruned, pg.n_fail, ...

# MLflow's own tags that pg sets or reads.
PARENT_RUN = "mlflow.parentRunId"
NOTE = "mlflow.note.content"
SOURCE_NAME = "mlflow.source.name"
SOURCE_TYPE = "mlflow.source.type"
SOURCE_GIT_COMMIT = "mlflow.source.git.commit"
# An experiment tag the MLflow UI reads: this value opens the model-training view
# (runs, charts, models) instead of the GenAI view (traces, sessions, judges).
EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
# MLflow 3.17's UI picks its view from the sidebar switch (remembered per browser, GenAI by
# default) or from this query in the address; links pg prints carry it.
UI_TRAINING_VIEW = "?workflowType=machine_learning"

# -- logged models (MLflow 3 LoggedModel) and the Model Registry ------------------------
MODEL_NAME = "policy"  # the LoggedModel's name on every run
MODEL_POLICY_ARTIFACT = "policy"  # the model's artifact folder holding pg's own files
MODEL_TYPE = "pg-policy"

# -- artifacts -------------------------------------------------------------------------
SNAPSHOT_DIR = "config"
SNAPSHOT_CONFIG = "config/config.yaml"
SNAPSHOT_OVERRIDES = "config/overrides.yaml"
SNAPSHOT_HYDRA = "config/hydra.yaml"
LOCK_FILE = "environment/requirements.txt"
SYSTEM_FILE = "environment/system.json"
MODEL_DIR = "model"
CURVE_FILE = "plots/learning_curve.png"
POLICY_GIF = "media/policy.gif"  # one greedy episode (single runs, a sweep's best trial)
TRACEBACK_FILE = "error/traceback.txt"
SWEEP_DEFINITION = "sweep/definition.yaml"
SWEEP_COMMAND = "sweep/command_line.txt"
TRIALS_CSV = "sweep/trials.csv"
BEST_YAML = "sweep/best_params.yaml"
HISTORY_PNG = "sweep/optimization_history.png"
IMPORTANCE_PNG = "sweep/param_importance.png"
CONFIGURATIONS_CSV = "sweep/configurations.csv"  # a grid: each configuration over its seeds
VALIDATION_CSV = "sweep/validation.csv"  # a search: its best configurations on fresh seeds
VALIDATED_YAML = "sweep/validated_params.yaml"  # ... and the validated winner, to train again

# -- metrics the record adds to the training's own (pg.core.metrics) -------------------
BEST_VALUE_METRIC = "best_value"  # on a sweep's parent run

# -- Optuna study and trial attributes ---------------------------------------------------
ATTR_OWNER = "pg.owner"  # trial system attr: host:pid of the process running it
ATTR_RUN_ID = "pg.run_id"  # trial system attr: its MLflow run, set when the run starts
ATTR_REASON = "pg.reason"  # trial system attr: why it failed or was pruned
ATTR_SWEEP_RUN = "pg.sweep_run_id"  # study user attr: the MLflow parent run
ATTR_MODE = "pg.mode"  # study user attr: grid | search (absent: a search, pg <= 0.1)
ATTR_GRID = "pg.grid"  # study user attr: a grid's axes and values
ATTR_MLFLOW_RUN = "mlflow_run_id"  # trial user attr: its MLflow run, set when it ends
ATTR_ENV_STEPS = "env_steps"  # trial user attr
ATTR_SEED_VALUES = "seed_values"  # trial user attr: one final objective per seed
ATTR_RETRY_OF = "pg.retry_of"  # trial user attr: the cut-short trial this one re-runs
ATTR_RETRIES = "pg.retries"  # trial user attr: orphaned attempts before this one (its chain)
# The validation stage: a study of its own beside the search's, ``<study>.validation``,
# with one queued trial per (configuration, fresh seed).
VALIDATION_STUDY_SUFFIX = ".validation"
MODE_VALIDATION = "validation"  # its ATTR_MODE
ATTR_VALIDATES = "pg.validates"  # validation trial user attr: the search trial number
ATTR_VALIDATION_SEED = "pg.validation_seed"  # validation trial user attr: its seed
ATTR_VALIDATION_PARAMS = "pg.validation_params"  # validation trial user attr: the params
