"""A complete new objective term, as a third party would add it: this one module plus one preset
line (see ``test_terms.py::test_a_new_term_is_one_module_plus_one_preset_line``).

``center_depth`` pulls the depth of the frontal view's centre pixel toward ``target`` (world units).
"""

from __future__ import annotations

import attrs
import torch

from sym3d.camera import look_at
from sym3d.protocols import Prior, PriorContext, PriorViews
from sym3d.terms import BasePrior, TermConfig, TermEnv


@attrs.frozen(kw_only=True)
class CenterDepthConfig(TermConfig, name="center_depth", stages=("generator",)):
    """Settings of the term (TOML table ``[tune.terms.center_depth]``)."""

    weight: float = attrs.field(default=0.1, converter=float)
    target: float = attrs.field(default=2.5, converter=float)

    def setup(self, env: TermEnv) -> Prior:
        return CenterDepth(self, every=env.every)


class CenterDepth(BasePrior):
    def __init__(self, config: CenterDepthConfig, every: int) -> None:
        super().__init__("center_depth", ("generator",), every=every)
        self.config = config

    def views(self, ctx: PriorContext) -> torch.Tensor:
        return look_at(0.0, 0.0, device=ctx.camera.device)[None]

    def __call__(self, ctx: PriorContext, views: PriorViews | None) -> dict[str, torch.Tensor]:
        assert views is not None
        depth = views.render.depth[0, 0, 0]
        centre = depth[depth.shape[0] // 2, depth.shape[1] // 2]
        return {
            "depth": self.config.weight * (centre - self.config.target).square(),
            "_centre": centre.detach(),
        }
