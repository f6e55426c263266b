"""Entropy, KL and gradient statistics against closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pg.core.diagnostics import entropy, grad_stats, kl_divergence


def logits_of(probs: list[float]) -> torch.Tensor:
    return torch.log(torch.tensor([probs], dtype=torch.float64))


@pytest.mark.parametrize("k", [2, 3, 6])
def test_entropy_of_uniform_is_log_k(k: int) -> None:
    assert float(entropy(torch.zeros(1, k))) == pytest.approx(math.log(k))
    # logits are defined up to a constant
    assert float(entropy(torch.full((1, k), 7.5))) == pytest.approx(math.log(k))


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9, 0.999])
def test_entropy_of_two_actions(p: float) -> None:
    expected = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert float(entropy(logits_of([p, 1 - p]))) == pytest.approx(expected, rel=1e-9)


def test_entropy_by_hand_and_batch_mean() -> None:
    # -(0.2 ln 0.2 + 0.8 ln 0.8) = 0.3218876 + 0.1785148 = 0.5004024
    assert float(entropy(logits_of([0.2, 0.8]))) == pytest.approx(0.5004024, abs=1e-7)
    batch = torch.cat([logits_of([0.5, 0.5]), logits_of([0.2, 0.8])])
    assert float(entropy(batch)) == pytest.approx((math.log(2) + 0.5004024) / 2, abs=1e-7)


def test_entropy_of_near_deterministic_policy_is_near_zero() -> None:
    assert float(entropy(torch.tensor([[50.0, 0.0, 0.0]]))) == pytest.approx(0.0, abs=1e-12)


def bernoulli_kl(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def test_kl_bernoulli_by_hand_and_direction() -> None:
    old, new = logits_of([0.5, 0.5]), logits_of([0.2, 0.8])
    # KL(old || new) = 0.5 ln(0.5/0.2) + 0.5 ln(0.5/0.8) = 0.5 ln(1.5625) = 0.2231436
    assert float(kl_divergence(old, new)) == pytest.approx(0.2231436, abs=1e-7)
    # The other direction differs: 0.2 ln(0.2/0.5) + 0.8 ln(0.8/0.5) = 0.1927448
    assert float(kl_divergence(new, old)) == pytest.approx(0.1927448, abs=1e-7)


@pytest.mark.parametrize(("p", "q"), [(0.3, 0.6), (0.9, 0.1), (0.01, 0.02)])
def test_kl_bernoulli_closed_form(p: float, q: float) -> None:
    got = float(kl_divergence(logits_of([p, 1 - p]), logits_of([q, 1 - q])))
    assert got == pytest.approx(bernoulli_kl(p, q), rel=1e-9)


def test_kl_categorical_closed_form() -> None:
    p = [0.5, 0.25, 0.25]
    # KL(p || uniform3) = ln 3 - H(p) = 1.0986123 - 1.0397208 = 0.0588915
    got = float(kl_divergence(logits_of(p), torch.zeros(1, 3, dtype=torch.float64)))
    assert got == pytest.approx(0.0588915, abs=1e-7)
    q = [0.1, 0.6, 0.3]
    expected = sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))
    assert float(kl_divergence(logits_of(p), logits_of(q))) == pytest.approx(expected)


def test_kl_of_a_policy_with_itself_is_zero_and_batch_is_averaged() -> None:
    logits = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    assert float(kl_divergence(logits, logits)) == pytest.approx(0.0, abs=1e-6)
    assert float(kl_divergence(logits, logits + 3.0)) == pytest.approx(0.0, abs=1e-6)
    old = torch.cat([logits_of([0.5, 0.5]), logits_of([0.3, 0.7])])
    new = torch.cat([logits_of([0.2, 0.8]), logits_of([0.3, 0.7])])
    assert float(kl_divergence(old, new)) == pytest.approx(0.2231436 / 2, abs=1e-7)


def test_kl_is_non_negative() -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(10):
        a, b = torch.randn(8, 5, generator=gen), torch.randn(8, 5, generator=gen)
        assert float(kl_divergence(a, b)) >= 0.0


def test_grad_stats_with_hand_set_gradients() -> None:
    layer = nn.Linear(2, 1)
    layer.weight.grad = torch.tensor([[3.0, -4.0]])
    layer.bias.grad = torch.tensor([0.0])
    stats = grad_stats(layer.parameters())
    # all elements [3, -4, 0]: L2 = 5, max |g| = 4,
    # variance = mean(g^2) - mean(g)^2 = 25/3 - 1/9 = 74/9
    assert stats["grad_l2"] == pytest.approx(5.0)
    assert stats["grad_max"] == pytest.approx(4.0)
    assert stats["grad_var"] == pytest.approx(74 / 9)


def test_grad_stats_spans_all_parameters_and_skips_missing_grads() -> None:
    net = nn.Sequential(nn.Linear(1, 2), nn.Linear(2, 1))
    net[0].weight.grad = torch.tensor([[1.0], [-2.0]])
    net[0].bias.grad = torch.tensor([2.0, 0.0])
    # net[1] has no gradient: it must not count as zeros
    stats = grad_stats(net.parameters())
    # elements [1, -2, 2, 0]: L2 = 3, max 2, mean 0.25, mean sq 9/4 -> var 2.25 - 0.0625
    assert stats["grad_l2"] == pytest.approx(3.0)
    assert stats["grad_max"] == pytest.approx(2.0)
    assert stats["grad_var"] == pytest.approx(2.1875)


def test_grad_stats_without_gradients_is_zero() -> None:
    assert grad_stats(nn.Linear(3, 2).parameters()) == {
        "grad_l2": 0.0,
        "grad_max": 0.0,
        "grad_var": 0.0,
    }
