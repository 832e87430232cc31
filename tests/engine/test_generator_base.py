"""The shared generator methods (``sym3d.generator_base``) and the engine's one draw of samples."""

from __future__ import annotations

import torch

from sym3d.camera import look_at
from sym3d.config import LatentStageConfig
from sym3d.engine.latent_stage import LatentParams
from sym3d.generator_base import GeneratorMixin, latent_stats
from sym3d.testing import TinyGenerator3D
from sym3d_extras.synthetic import SymHeadsGenerator


def _cams() -> torch.Tensor:
    return torch.stack([look_at(0.3, 0.0), look_at(-0.2, 0.1)])


def test_tiny_matches_the_definition() -> None:
    """Mean of the mapped ``ws`` draws; spread of their first row (the previous formulas)."""
    gen = TinyGenerator3D()
    c = _cams()
    z = torch.randn(40, gen.z_dim, generator=torch.Generator().manual_seed(5))
    ws = gen.mapping(z, c[:1].expand(40, -1))  # [S, 4, 8]
    want_mean = ws.mean(0, keepdim=True).expand(2, -1, -1)
    w = ws[:, 0]
    want_std = (w - w.mean(0, keepdim=True)).square().sum(-1).mean().sqrt()
    mean, std = gen.latent_stats(c, num_samples=40, seed=5)
    torch.testing.assert_close(mean, want_mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(std, want_std.expand(2), rtol=1e-6, atol=1e-6)
    assert torch.equal(gen.mean_latent(c, num_samples=40, seed=5), mean)
    assert torch.equal(gen.latent_std(c, num_samples=40, seed=5), std)


def test_symheads_matches_the_definition() -> None:
    gen = SymHeadsGenerator()
    c = _cams()
    z = torch.randn(50, gen.z_dim, generator=torch.Generator().manual_seed(7))
    w = gen.mapping_network(z)  # [S, w_dim]
    mean, std = gen.latent_stats(c, num_samples=50, seed=7)
    assert mean.shape == (2, gen.num_ws, gen.w_dim)
    torch.testing.assert_close(mean, w.mean(0).expand(2, gen.num_ws, -1), rtol=1e-6, atol=1e-6)
    want_std = (w - w.mean(0)).square().sum(-1).mean().sqrt()
    torch.testing.assert_close(std, want_std.expand(2), rtol=1e-6, atol=1e-6)


def test_frozen_copy_is_frozen_and_independent() -> None:
    gen = TinyGenerator3D().train()
    frozen = gen.frozen_copy()
    assert type(frozen) is TinyGenerator3D and not frozen.training
    assert all(not p.requires_grad for p in frozen.parameters())
    assert all(p.requires_grad for p in gen.parameters()) and gen.training
    with torch.no_grad():
        next(frozen.parameters()).add_(1.0)
    assert not torch.equal(next(frozen.parameters()), next(gen.parameters()))


class _CountingTiny(TinyGenerator3D):
    draws = 0

    def _latent_samples(self, c: torch.Tensor, num_samples: int, seed: int) -> torch.Tensor:
        type(self).draws += 1
        return super()._latent_samples(c, num_samples, seed)


def test_engine_draws_the_mean_latent_samples_once() -> None:
    gen = _CountingTiny()
    cam = look_at(0.2, 0.0)[None]
    params = LatentParams(gen, cam, LatentStageConfig(steps=1), torch.Generator().manual_seed(0))
    assert _CountingTiny.draws == 1
    mean, std = TinyGenerator3D.latent_stats(gen, cam)  # the configured 600 samples, seed 123
    rows = params.var.shape[1]  # 1 in W space, num_ws in W+
    torch.testing.assert_close(params.var.detach(), mean[:, :rows])
    assert params.w_std == float(std.mean())


class _ProtocolOnly:
    """A plugin generator without the mixin: only the two protocol methods."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def mean_latent(self, c: torch.Tensor, *, num_samples: int, seed: int) -> torch.Tensor:
        self.calls.append(f"mean {num_samples} {seed}")
        return torch.zeros(c.shape[0], 2, 3)

    def latent_std(self, c: torch.Tensor, *, num_samples: int, seed: int) -> torch.Tensor:
        self.calls.append(f"std {num_samples} {seed}")
        return torch.ones(c.shape[0])


def test_latent_stats_falls_back_to_the_protocol_methods() -> None:
    gen = _ProtocolOnly()
    assert not isinstance(gen, GeneratorMixin)
    mean, std = latent_stats(gen, torch.zeros(1, 25), num_samples=9, seed=4)
    assert mean.shape == (1, 2, 3) and std.tolist() == [1.0]
    assert gen.calls == ["mean 9 4", "std 9 4"]
