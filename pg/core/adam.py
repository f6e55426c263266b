r"""Adam, computed exactly as ``torch.optim.Adam`` computes it for these policies.

Why not ``torch.optim.Adam`` itself: every ``torch.optim`` optimizer imports
``torch._dynamo`` (the compiler) on construction, ``zero_grad`` and ``step``, which costs
a training process ~1.4 s before its first update: more than a solved CartPole run
trains.  This is the same algorithm with the same tensor operations in the same order as
torch's CPU code path for default flags (``_single_tensor_adam``: no AMSGrad, no weight
decay, not maximizing, not capturable), so a run's numbers are bit-identical to one made
with ``torch.optim.Adam`` (``tests/test_adam.py`` checks it step by step; the reference
record and ``pg.reproduce`` of runs recorded with torch's optimizer check it end to end).

For each parameter :math:`\theta` with gradient :math:`g` at step :math:`t`:

.. math::

    m_t = \beta_1 m_{t-1} + (1 - \beta_1) g \qquad
    v_t = \beta_2 v_{t-1} + (1 - \beta_2) g^2

    \theta_t = \theta_{t-1} - \frac{\alpha}{1 - \beta_1^t}
        \cdot \frac{m_t}{\sqrt{v_t} / \sqrt{1 - \beta_2^t} + \epsilon}
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class Adam:
    """Adam with torch's defaults (``betas=(0.9, 0.999)``, ``eps=1e-8``)."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.lr = float(lr)
        self.beta1, self.beta2 = betas
        self.eps = eps
        # Per parameter, as torch keeps them: a parameter's count starts with its first
        # gradient.  torch holds it in a float32 tensor, exact far beyond any budget here.
        self.steps = [0] * len(self.params)
        self.exp_avg = [
            torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params
        ]
        self.exp_avg_sq = [
            torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params
        ]

    def zero_grad(self) -> None:
        """Drop the gradients (torch's ``zero_grad(set_to_none=True)``)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()  # type: ignore[untyped-decorator]
    def step(self) -> None:
        beta1, beta2, lr, eps = self.beta1, self.beta2, self.lr, self.eps
        for i, param in enumerate(self.params):
            grad = param.grad
            if grad is None:
                continue
            self.steps[i] += 1
            step = float(self.steps[i])  # torch reads its float32 counter with .item()
            exp_avg, exp_avg_sq = self.exp_avg[i], self.exp_avg_sq[i]
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = lr / bias_correction1
            bias_correction2_sqrt = bias_correction2**0.5
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)
