"""Policy networks: logits over discrete actions."""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.functional import linear as affine

from pg.core.config import ModelConfig


@dataclass(frozen=True)
class PolicySpec:
    """Everything needed to rebuild a policy before loading its weights."""

    model: str
    hidden: tuple[int, ...]
    obs_shape: tuple[int, ...]
    n_actions: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> PolicySpec:
        raw = json.loads(text)
        return cls(
            model=str(raw["model"]),
            hidden=tuple(int(h) for h in raw["hidden"]),
            obs_shape=tuple(int(s) for s in raw["obs_shape"]),
            n_actions=int(raw["n_actions"]),
        )


class MLPPolicy(nn.Module):
    def __init__(self, obs_size: int, hidden: tuple[int, ...], n_actions: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size = obs_size
        for h in hidden:
            layers += [nn.Linear(size, h), nn.ReLU()]
            size = h
        layers.append(nn.Linear(size, n_actions))
        self.net = nn.Sequential(*layers)
        self.linears = [layer for layer in layers if isinstance(layer, nn.Linear)]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # ``self.net``'s layers called as the functions they are (nn.Linear and nn.ReLU
        # call exactly these): the same graph and values without the modules' hook
        # dispatch, a third of a forward at this size; an update makes two.
        x = obs.float().flatten(1)
        for linear in self.linears[:-1]:
            x = torch.relu(affine(x, linear.weight, linear.bias))
        last = self.linears[-1]
        logits: torch.Tensor = affine(x, last.weight, last.bias)
        return logits


class ConvPolicy(nn.Module):
    """The chapter's Atari network: three conv layers then a 512-unit hidden layer."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(obs_shape[0], 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            conv_out = self.conv(torch.zeros(1, *obs_shape)).shape[1]
        self.head = nn.Sequential(nn.Linear(conv_out, 512), nn.ReLU(), nn.Linear(512, n_actions))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # Frames arrive as uint8; scaling here keeps the rollout buffer 4x smaller.
        logits: torch.Tensor = self.head(self.conv(obs.float() / 255.0))
        return logits


class NumpyMLP:
    """A NumPy copy of an :class:`MLPPolicy` for acting.

    Acting runs once per vector step on a handful of observations; there torch's
    per-module dispatch costs more than the arithmetic, so the collector multiplies
    NumPy copies of the weights instead and refreshes them after each update.
    """

    def __init__(self, policy: MLPPolicy) -> None:
        self.policy = policy
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []
        self.outputs: dict[int, list[np.ndarray]] = {}
        self.sync()

    def sync(self) -> None:
        linears = [mod for mod in self.policy.net if isinstance(mod, nn.Linear)]
        self.layers = [
            (lin.weight.detach().numpy().T.copy(), lin.bias.detach().numpy().copy())
            for lin in linears
        ]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Logits for ``obs``, in an array this actor reuses on its next call.

        Reusing one output array per layer (and batch size) saves the allocations, the
        larger part of the cost at this size; the products are the same as ``x @ w + b``.
        """
        n = obs.shape[0]
        outs = self.outputs.get(n)
        if outs is None:
            outs = [np.empty((n, w.shape[1]), dtype=np.float32) for w, _ in self.layers]
            self.outputs[n] = outs
        x = obs.reshape(n, -1).astype(np.float32, copy=False)
        last = len(self.layers) - 1
        for i, ((w, b), out) in enumerate(zip(self.layers, outs, strict=True)):
            np.matmul(x, w, out=out)
            np.add(out, b, out=out)
            if i < last:
                np.maximum(out, 0.0, out=out)
            x = out
        return x


class TorchActor:
    """Logits from the torch module itself (conv nets, where the maths dominates)."""

    def __init__(self, policy: nn.Module) -> None:
        self.policy = policy

    def sync(self) -> None:
        return None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits: np.ndarray = self.policy(torch.as_tensor(obs)).numpy()
        return logits


def make_actor(policy: nn.Module) -> NumpyMLP | TorchActor:
    return NumpyMLP(policy) if isinstance(policy, MLPPolicy) else TorchActor(policy)


def make_spec(cfg: ModelConfig, obs_shape: tuple[int, ...], n_actions: int) -> PolicySpec:
    return PolicySpec(cfg.name, tuple(cfg.hidden), tuple(obs_shape), n_actions)


def build_policy(spec: PolicySpec) -> nn.Module:
    if spec.model == "mlp":
        size = 1
        for s in spec.obs_shape:
            size *= s
        return MLPPolicy(size, spec.hidden, spec.n_actions)
    if spec.model == "conv":
        if len(spec.obs_shape) != 3:
            raise ValueError(f"the conv model needs (C, H, W) observations, got {spec.obs_shape}")
        return ConvPolicy(spec.obs_shape, spec.n_actions)
    raise ValueError(f"unknown model {spec.model!r}")


WEIGHTS_FILE = "policy.pt"
SPEC_FILE = "spec.json"


def policy_files(policy: nn.Module, spec: PolicySpec) -> dict[str, str | bytes]:
    """The weights as a plain state dict plus the spec that rebuilds the network.

    Returned as ``{file name: content}`` so a tracker can upload them without a temporary
    directory; :func:`load_policy` reads a directory holding them back.
    """
    weights = io.BytesIO()
    torch.save(policy.state_dict(), weights)
    return {WEIGHTS_FILE: weights.getvalue(), SPEC_FILE: spec.to_json()}


def load_policy(directory: Path) -> nn.Module:
    """Rebuild a saved policy; ``weights_only`` means no pickled code is executed."""
    spec = PolicySpec.from_json((directory / SPEC_FILE).read_text())
    policy = build_policy(spec)
    state = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    policy.load_state_dict(state)
    policy.eval()
    return policy
