"""A pg policy as an MLflow pyfunc model, logged as code (MLflow's "models from code").

MLflow copies this file into the logged model and runs it at load time instead of
unpickling a Python object: the only other files in the model are the weights (a torch
state dict read with ``weights_only=True``) and the JSON spec that rebuilds the network,
so loading a model executes no pickled code.  ``predict`` takes a batch of observations
and returns the greedy action of each.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc.model import PythonModel

POLICY_ARTIFACT = "policy"  # pg.record.names.MODEL_POLICY_ARTIFACT; this file runs alone

# MLflow asks every PythonModel without type hints on ``predict`` to add some; this one
# has an explicit tensor signature instead (see ``predict``).
warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method")


class PolicyModel(PythonModel):
    """Greedy actions of a pg policy network (the argmax of its logits)."""

    def load_context(self, context: Any) -> None:
        from pg.core.policy import load_policy

        self.policy = load_policy(Path(context.artifacts[POLICY_ARTIFACT]))

    # No annotations: MLflow would try to infer a signature from them (and warn that it
    # cannot); the logged model carries an explicit tensor signature instead.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        import torch

        obs = torch.as_tensor(np.asarray(model_input))
        with torch.inference_mode():
            logits = self.policy(obs)
        return logits.argmax(dim=-1).numpy()


set_model(PolicyModel())
