"""pg's Adam against ``torch.optim.Adam``: the same parameters, bit for bit, at every step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pg.core.adam import Adam


def twin_nets(seed: int) -> tuple[nn.Sequential, nn.Sequential]:
    torch.manual_seed(seed)
    a = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
    b = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("lr", [1e-4, 0.02, 0.3])
def test_identical_to_torch_adam_step_by_step(lr: float) -> None:
    ours_net, torch_net = twin_nets(0)
    ours = Adam(ours_net.parameters(), lr=lr)
    theirs = torch.optim.Adam(torch_net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(1)
    for step in range(300):
        x = torch.randn(32, 4, generator=gen) * (1 + step % 7)
        for net, opt in ((ours_net, ours), (torch_net, theirs)):
            opt.zero_grad()
            loss = -torch.log_softmax(net(x), dim=-1)[:, step % 2].mean()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        for p, q in zip(ours_net.parameters(), torch_net.parameters(), strict=True):
            assert torch.equal(p, q), f"differs at step {step}"


def test_a_parameter_without_gradient_is_left_alone_and_not_counted() -> None:
    """torch starts a parameter's step count with its first gradient; so does this."""
    ours_net, torch_net = twin_nets(2)
    ours = Adam(ours_net.parameters(), lr=0.01)
    theirs = torch.optim.Adam(torch_net.parameters(), lr=0.01)
    x = torch.ones(3, 4)
    for step in range(20):
        for net, opt in ((ours_net, ours), (torch_net, theirs)):
            opt.zero_grad()
            head = net[2] if step < 5 else net  # the first layer gets gradients from step 5
            inp = torch.tanh(net[0](x)).detach() if step < 5 else x
            head(inp).sum().backward()  # type: ignore[operator]
            opt.step()
        for p, q in zip(ours_net.parameters(), torch_net.parameters(), strict=True):
            assert torch.equal(p, q), f"differs at step {step}"


def test_hand_computed_first_step() -> None:
    """After one step each weight moves by -lr * sign(g) (up to eps): m/sqrt(v) = g/|g|."""
    w = nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = Adam([w], lr=0.1)
    (w * torch.tensor([2.0, -0.5, 0.0])).sum().backward()  # type: ignore[no-untyped-call]
    opt.step()
    assert w.tolist() == pytest.approx([0.9, -1.9, 3.0], abs=1e-6)
