"""The contracts plugins implement: generators, pose estimators, priors and losses.

Conventions (all enforced at public boundaries, see ``docs/conventions.md``):

* Images are BCHW float. Public values (loaders, losses, results) are in ``[0, 1]``; generators
  produce ``[-1, 1]``. :func:`sym3d.image.to_model_range` / :func:`sym3d.image.from_model_range`
  are the only converters.
* Multi-view outputs are ``[B, V, C, H, W]``: ``B`` latents, ``V`` views each.
* Depth is positive, in world units. ``depth`` is the expected distance along the unit ray
  through the pixel centre (EG3D's ``image_depth``); ``depth_z`` is camera-space z (what
  warping needs). :func:`sym3d.camera.ray_distance_to_z` converts.
* Latents ``ws`` are ``[B, num_ws, w_dim]``; "W" mode broadcasts one row to all ``num_ws``.
* Cameras are EG3D labels ``[..., 25]`` (see :mod:`sym3d.camera`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import attrs
import torch

__all__ = [
    "RenderOutput",
    "GeneratorInfo",
    "generator_info",
    "Generator3D",
    "FaceObservation",
    "PoseEstimator",
    "PriorContext",
    "PriorViews",
    "Prior",
    "Loss",
    "Reduction",
]

Reduction = Literal["none", "mean", "sum"]


@attrs.frozen(kw_only=True)
class RenderOutput:
    """What a generator renders for ``B`` latents seen from ``V`` cameras each.

    Attributes:
        image: ``[B, V, 3, H, W]`` final image in ``[-1, 1]`` (after any super-resolution).
        image_raw: ``[B, V, 3, h, w]`` the volume-rendered image at the neural resolution, ``[-1, 1]``.
        depth: ``[B, V, 1, h, w]`` expected distance along the unit ray (world units, > 0).
        depth_z: ``[B, V, 1, h, w]`` camera-space z of the same expected surface (world units).
        opacity: ``[B, V, 1, h, w]`` accumulated ray opacity in ``[0, 1]`` (1 = the ray hit the head).
        extras: generator-specific tensors (e.g. ``"feature_image"``); may be empty.
    """

    image: torch.Tensor
    image_raw: torch.Tensor
    depth: torch.Tensor
    depth_z: torch.Tensor
    opacity: torch.Tensor
    extras: Mapping[str, torch.Tensor] = attrs.field(factory=dict)

    @property
    def batch_views(self) -> tuple[int, int]:
        """``(B, V)``."""
        return int(self.image.shape[0]), int(self.image.shape[1])

    def view(self, index: int) -> RenderOutput:
        """The outputs of view ``index`` only, keeping a view dimension of 1."""
        return self.views(index, index + 1)

    def views(self, start: int, stop: int) -> RenderOutput:
        """The outputs of views ``start:stop`` (``[B, stop - start, ...]``)."""
        sl = slice(start, stop)
        return RenderOutput(
            image=self.image[:, sl],
            image_raw=self.image_raw[:, sl],
            depth=self.depth[:, sl],
            depth_z=self.depth_z[:, sl],
            opacity=self.opacity[:, sl],
            extras={k: v[:, sl] for k, v in self.extras.items()},
        )

    def detach(self) -> RenderOutput:
        """A copy with every tensor detached from the autograd graph."""
        return RenderOutput(
            image=self.image.detach(),
            image_raw=self.image_raw.detach(),
            depth=self.depth.detach(),
            depth_z=self.depth_z.detach(),
            opacity=self.opacity.detach(),
            extras={k: v.detach() for k, v in self.extras.items()},
        )


@attrs.frozen(kw_only=True)
class GeneratorInfo:
    """Optional facts about a generator, declared as its ``info`` attribute (all have defaults).

    Config precedence, lowest to highest: the defaults (SPI's hyperparameters) <
    ``recommended_overrides`` < the preset < a config file < explicit overrides (``--set``,
    ``overrides=``). The recommendations set the scale of a run for this generator (steps, loss
    resolution); a preset then says which method runs, so a recommendation never re-enables a
    term a preset turned off.

    Attributes:
        recommended_overrides: dotted settings suited to this generator, e.g. ``"tune.steps=100"``.
        ray_range: ``(near, far)`` of the renderer's rays, world units from the camera centre.
        mesh_level: iso-level of :meth:`Generator3D.sample_density` for mesh extraction (``None``:
            the exporter's default).
        image_range: value range of ``RenderOutput.image``; the engine supports ``(-1, 1)``.
        build_options: factory options that rebuild exactly this generator from the registry
            (e.g. EG3D's checkpoint path and its sha256). Optional: without them, the options a
            :meth:`sym3d.registry.Registry.build` call received are recorded instead.
    """

    recommended_overrides: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    ray_range: tuple[float, float] | None = None
    mesh_level: float | None = None
    image_range: tuple[float, float] = (-1.0, 1.0)
    build_options: Mapping[str, Any] | None = None


def generator_info(generator: object) -> GeneratorInfo:
    """The generator's declared :class:`GeneratorInfo` (its ``info`` attribute), else the defaults."""
    info = getattr(generator, "info", None)
    return info if isinstance(info, GeneratorInfo) else GeneratorInfo()


@runtime_checkable
class Generator3D(Protocol):
    """A 3D-aware generator the inversion engine can drive (an ``nn.Module`` in practice).

    Attributes:
        name: registry name of the generator family (``"eg3d"``, ``"symheads"``, ...).
        z_dim, w_dim, num_ws: latent sizes; ``ws`` is ``[B, num_ws, w_dim]``.
        img_resolution: side of ``RenderOutput.image``.
        neural_resolution: side of ``image_raw``/``depth`` (the volume-rendering resolution).
        tunable_scopes: names accepted by :meth:`tunable_parameters`; must include ``"all"``.

    Optional: an ``info`` attribute holding a :class:`GeneratorInfo` (read through
    :func:`generator_info`; nothing else optional is read).
    """

    name: str
    z_dim: int
    w_dim: int
    num_ws: int
    img_resolution: int
    neural_resolution: int
    tunable_scopes: tuple[str, ...]

    def mapping(
        self,
        z: torch.Tensor,
        c: torch.Tensor,
        *,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """Map ``z [B, z_dim]`` conditioned on cameras ``c [B, 25]`` to ``ws [B, num_ws, w_dim]``."""
        ...

    def mean_latent(
        self, c: torch.Tensor, *, num_samples: int = 600, seed: int = 123
    ) -> torch.Tensor:
        """Camera-conditioned mean latent and spread.

        Args:
            c: ``[B, 25]`` conditioning cameras (SPI conditions on the input view's camera).
            num_samples: ``z`` samples averaged in W space.
            seed: seed of the ``z`` draws.

        Returns:
            ``[B, num_ws, w_dim]`` mean ``ws``. The scalar spread (RMS distance of the samples'
            first ``w`` to the mean) is available from :meth:`latent_std` with the same arguments.
        """
        ...

    def latent_std(
        self, c: torch.Tensor, *, num_samples: int = 600, seed: int = 123
    ) -> torch.Tensor:
        """``[B]`` RMS distance of sampled ``w`` to their mean (scale of stage-1 latent noise)."""
        ...

    def render(
        self,
        ws: torch.Tensor,
        cameras: torch.Tensor,
        *,
        neural_resolution: int | None = None,
        generator: torch.Generator | None = None,
    ) -> RenderOutput:
        """Render ``ws [B, num_ws, w_dim]`` from ``cameras [B, V, 25]``.

        The backbone (tri-planes or equivalent) is evaluated **once per latent** and all ``V``
        views are rendered from it. Pure: must not change the module's state.

        Args:
            ws: ``[B, num_ws, w_dim]`` latents.
            cameras: ``[B, V, 25]`` camera labels.
            neural_resolution: override of the volume-rendering resolution.
            generator: random source of stochastic sampling (stratified jitter, importance
                draws): a **CPU** ``torch.Generator`` (draw on the CPU, then move the draws to
                the device). ``None`` renders deterministically (e.g. bin midpoints), so a ``V``-view
                call equals ``V`` single-view calls exactly. The same seeded generator gives
                identical outputs.
        """
        ...

    def sample_density(self, ws: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Volume density the renderer uses (after its activation, >= 0) at world points.

        Args:
            ws: ``[B, num_ws, w_dim]``.
            points: ``[B, N, 3]`` world coordinates.

        Returns:
            ``[B, N]`` density in inverse world units (used to extract meshes by marching cubes).
        """
        ...

    def tunable_parameters(self, scope: str = "all") -> dict[str, torch.nn.Parameter]:
        """Parameters fine-tuned in stage 2 for a named scope, keyed by ``named_parameters`` name.

        Raises:
            sym3d.errors.ConfigError: for a scope not in :attr:`tunable_scopes`.
        """
        ...

    def noise_buffers(self) -> list[torch.Tensor]:
        """Per-layer noise tensors the renderer adds (StyleGAN noise), optimisable in stage 1; may be empty."""
        ...

    def frozen_copy(self) -> Generator3D:
        """A deep copy in eval mode with every parameter frozen (``requires_grad=False``).

        Tuning the original afterwards must not change the copy.
        """
        ...

    # nn.Module methods the engine relies on (an nn.Module has them all)
    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...  # noqa: D102
    def named_parameters(  # noqa: D102
        self, *args: Any, **kwargs: Any
    ) -> Iterator[tuple[str, torch.nn.Parameter]]: ...
    def state_dict(self, *args: Any, **kwargs: Any) -> dict: ...  # noqa: D102
    def to(self, *args: Any, **kwargs: Any) -> Any: ...  # noqa: D102
    def eval(self) -> Any: ...  # noqa: D102
    def requires_grad_(self, requires_grad: bool = True) -> Any: ...  # noqa: D102


@attrs.frozen(kw_only=True)
class FaceObservation:
    """An aligned face crop with everything inversion needs, as produced by a :class:`PoseEstimator`.

    Attributes:
        image: ``[1, 3, S, S]`` aligned crop in ``[0, 1]`` (EG3D recipe for real photos).
        camera: ``[1, 25]`` estimated camera label of the crop.
        face_mask: ``[1, 1, S, S]`` in ``[0, 1]``: skin, brows, eyes, nose, mouth, lips, ears.
            Used by the authentic mask (pseudo-labels only where the face is).
        foreground_mask: ``[1, 1, S, S]`` in ``[0, 1]``: the head (face, hair, neck) vs background.
        landmarks: ``[1, N, 2]`` landmark pixel coordinates ``(x, y)`` in the crop, or ``None``.
        landmark_format: names the landmark layout (``"ibug68"``, ``"mediapipe468"``, ...).
        regions: facial-feature boxes ``name -> (x0, y0, x1, y1)`` in normalised crop coordinates
            ``[0, 1]`` (``"left_eye"``, ``"right_eye"``, ``"mouth"``, ``"nose"``), used by the
            stage-2 contextual loss. Left/right are the subject's.
        confidence: detector confidence in ``[0, 1]``.
        notes: human-readable remarks (e.g. "3 faces found; used the largest").
    """

    image: torch.Tensor
    camera: torch.Tensor
    face_mask: torch.Tensor | None = None
    foreground_mask: torch.Tensor | None = None
    landmarks: torch.Tensor | None = None
    landmark_format: str | None = None
    regions: Mapping[str, tuple[float, float, float, float]] = attrs.field(factory=dict)
    confidence: float = 1.0
    notes: tuple[str, ...] = ()


@runtime_checkable
class PoseEstimator(Protocol):
    """Turns a photo into an aligned crop with a camera label (and masks/landmarks when it can)."""

    name: str

    def __call__(self, image: torch.Tensor) -> FaceObservation:
        """Estimate from ``image [1, 3, H, W]`` in ``[0, 1]``.

        Raises:
            sym3d.errors.FaceNotFoundError: when no usable face is present.
        """
        ...


@attrs.frozen(kw_only=True)
class PriorContext:
    """What a :class:`Prior` sees at one optimisation step.

    Attributes:
        stage: ``"latent"`` (stage 1) or ``"generator"`` (stage 2).
        step: 0-based step within the stage; ``num_steps`` its length.
        generator: the generator being optimised (its tunable parameters require grad in stage 2).
        reference: the frozen pretrained generator (``frozen_copy()`` before tuning).
        ws: ``[1, num_ws, w_dim]`` current latent (requires grad in stage 1, frozen in stage 2).
        target: ``[1, 3, H, W]`` input image in ``[0, 1]``.
        camera: ``[1, 25]`` input camera.
        observation: the face observation (masks, regions) when known.
        render: this step's render of the input view (``V = 1``) with gradients, if computed.
        rng: the run's seeded random source (a CPU ``torch.Generator``); use it for every
            random draw so that runs are reproducible and resumable.
    """

    stage: Literal["latent", "generator"]
    step: int
    num_steps: int
    generator: Generator3D
    reference: Generator3D | None
    ws: torch.Tensor
    target: torch.Tensor
    camera: torch.Tensor
    observation: FaceObservation | None
    render: RenderOutput | None
    rng: torch.Generator


@attrs.frozen(kw_only=True)
class PriorViews:
    """The extra views a prior asked for, rendered by the generator being optimised.

    Attributes:
        cameras: ``[1, V, 25]`` the cameras returned by :meth:`Prior.views`.
        render: their render, ``[1, V, ...]`` tensors, with gradients.
    """

    cameras: torch.Tensor
    render: RenderOutput


@runtime_checkable
class Prior(Protocol):
    """An extra objective term composed into an inversion stage.

    A step runs in two phases so that every view of the step goes through **one** render call
    (one backbone pass): the engine first asks each active prior which extra cameras it needs
    (:meth:`views`), renders the input view and all requested views together, then calls each
    prior with its slice of the render.

    Attributes:
        name: unique name; its terms are logged as ``"<name>/<term>"``.
        stages: the stages it applies to (``"latent"``, ``"generator"``).
        every: run on steps where ``step % every == 0``.
    """

    name: str
    stages: Sequence[str]
    every: int

    def views(self, ctx: PriorContext) -> torch.Tensor | None:
        """Cameras ``[V, 25]`` this prior needs rendered by ``ctx.generator`` this step, or ``None``.

        Called before the step's render, so ``ctx.render`` is ``None`` here. Draw randomness
        from ``ctx.rng`` (a CPU ``torch.Generator``).
        """
        ...

    def __call__(self, ctx: PriorContext, views: PriorViews | None) -> dict[str, torch.Tensor]:
        """Return weighted scalar loss terms; the engine sums them into the step's loss.

        Terms whose name starts with ``"_"`` are diagnostics: logged, never optimised.

        Args:
            ctx: the step context; ``ctx.render`` holds the input view (``[1, 1, ...]``).
            views: the cameras returned by :meth:`views` and their render, or ``None``.
        """
        ...


@runtime_checkable
class Loss(Protocol):
    """An image-space loss on the public ``[0, 1]`` range."""

    def __call__(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        reduction: Reduction = "mean",
    ) -> torch.Tensor:
        """Compare ``pred`` and ``target`` ``[B, 3, H, W]`` in ``[0, 1]``.

        Args:
            mask: optional ``[B, 1, H, W]`` weights in ``[0, 1]``; masked-out pixels do not count.
            reduction: ``"none"`` returns ``[B]``; ``"mean"``/``"sum"`` a scalar.
        """
        ...
