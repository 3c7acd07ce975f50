"""AnimateDiff: animate personalized Stable Diffusion image models with a plug-in motion module."""

__version__ = "0.1.0"

from animatediff.errors import AnimateDiffError, CheckpointError, ConfigError  # noqa: E402
from animatediff.export import read_video, write_video  # noqa: E402
from animatediff.formats import load_motion_module, read_state_dict, save_motion_module  # noqa: E402
from animatediff.image_models import Components, apply_dreambooth, apply_image_lora, load_base  # noqa: E402
from animatediff.inflation import AnimateDiffUNet, inflate  # noqa: E402
from animatediff.lora import apply_domain_adapter, apply_motion_lora  # noqa: E402
from animatediff.motion_module import MotionModule, MotionModuleConfig  # noqa: E402
from animatediff.pipeline import AnimateDiffPipeline, initial_noise, official_scheduler  # noqa: E402

__all__ = [
    "AnimateDiffError",
    "AnimateDiffPipeline",
    "AnimateDiffUNet",
    "CheckpointError",
    "Components",
    "ConfigError",
    "MotionModule",
    "MotionModuleConfig",
    "apply_domain_adapter",
    "apply_dreambooth",
    "apply_image_lora",
    "apply_motion_lora",
    "inflate",
    "initial_noise",
    "load_base",
    "load_motion_module",
    "official_scheduler",
    "read_state_dict",
    "read_video",
    "save_motion_module",
    "write_video",
]
