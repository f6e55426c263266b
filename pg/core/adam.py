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
        """One step for every parameter that has a gradient.

        Parameters whose counts agree (all of them, but for one first seen later) are
        stepped together by torch's ``_foreach`` ops, whose CPU kernels apply the same
        in-place op to each tensor in turn: the same values as one op per tensor, in a
        seventh of the calls (this runs after every update, ~100 us a step before).
        """
        groups: dict[int, list[int]] = {}
        for i, param in enumerate(self.params):
            if param.grad is not None:
                self.steps[i] += 1
                groups.setdefault(self.steps[i], []).append(i)
        for count, members in groups.items():
            self._step(float(count), members)  # torch reads its float32 counter with .item()

    def _step(self, step: float, members: list[int]) -> None:
        beta1, beta2, lr, eps = self.beta1, self.beta2, self.lr, self.eps
        params: list[torch.Tensor] = [self.params[i] for i in members]
        grads = [p.grad for p in params if p.grad is not None]  # all of them (see step)
        exp_avgs = [self.exp_avg[i] for i in members]
        exp_avg_sqs = [self.exp_avg_sq[i] for i in members]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denom, value=-step_size)
