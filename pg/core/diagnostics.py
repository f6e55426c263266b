r"""The chapter's training diagnostics, computed from logits and gradients."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def entropy(logits: torch.Tensor) -> torch.Tensor:
    r"""Mean entropy :math:`H(\pi) = -\sum_a \pi(a) \log \pi(a)` over the batch, in nats."""
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1).mean()


def kl_divergence(old_logits: torch.Tensor, new_logits: torch.Tensor) -> torch.Tensor:
    r"""Mean KL divergence of the new policy from the old one.

    .. math:: KL(\pi_o \| \pi_n) = \sum_a \pi_o(a) (\log \pi_o(a) - \log \pi_n(a))

    A large value after one update means the step changed the policy a lot: the signal
    the chapter uses to tell an unstable learning rate from a merely noisy one.
    """
    old_log_p = torch.log_softmax(old_logits, dim=-1)
    new_log_p = torch.log_softmax(new_logits, dim=-1)
    return (old_log_p.exp() * (old_log_p - new_log_p)).sum(dim=-1).mean()


def grad_stats(params: Iterable[torch.Tensor]) -> dict[str, float]:
    """L2 norm, largest absolute element and variance of the whole gradient.

    Taken over all ``params`` (a module's ``parameters()``) as one vector, before any
    clipping, so the numbers show what the optimiser would have received.
    """
    grads = [p.grad.detach().reshape(-1) for p in params if p.grad is not None]
    if not grads:
        return {"grad_l2": 0.0, "grad_max": 0.0, "grad_var": 0.0}
    flat = torch.cat(grads)
    return {
        "grad_l2": float(flat.norm(2)),
        "grad_max": float(flat.abs().max()),
        "grad_var": float(flat.var(unbiased=False)),
    }
