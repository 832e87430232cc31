"""The symmetric inversion engine: SPI's two stages for any Generator3D; baselines are presets."""

from sym3d.engine.api import invert, load_generator, load_pose_estimator, resolve_config
from sym3d.engine.checkpoint import RunState
from sym3d.engine.events import CheckpointSaved, Resumed, StageFinished, StageStarted, StepFinished
from sym3d.engine.presets import PRESETS, get_preset, preset_names
from sym3d.engine.result import InversionResult

__all__ = [
    "invert",
    "load_generator",
    "load_pose_estimator",
    "resolve_config",
    "InversionResult",
    "RunState",
    "PRESETS",
    "get_preset",
    "preset_names",
    "StageStarted",
    "StepFinished",
    "StageFinished",
    "CheckpointSaved",
    "Resumed",
]
