"""Checkpoint files: reading them safely, telling what they are, and converting between layouts.

- `safe`: reading tensors without running pickled code, headers without reading tensors, writing safetensors
- `layouts`: the key layouts, and motion-module keys renamed official ⇄ diffusers
- `headers`: what a motion module file says about its release and config before it is loaded
- `identify`: what a file or folder is (`Kind`, `Layout`), for loaders' errors, `inspect` and the app's lists
- `motion`: motion-module files and diffusers `MotionAdapter` folders, loaded and saved
- `sparsectrl`: SparseCtrl encoder files and folders, loaded, saved and described
- `convert`: `animatediff convert`, one layout to the other

The names below are the ones the rest of the package uses. `sparsectrl`'s are imported from that module:
it builds the SparseCtrl model, whose video-UNet hooks (`inflation`) import this package.
"""

from animatediff.formats.convert import convert_checkpoint
from animatediff.formats.headers import (
    IMAGE_LORA_KEY,
    MOTION_MODULE_FORMAT,
    ModuleHeader,
    infer_motion_module_config,
    module_family,
    module_header,
    motion_module_family,
    motion_module_table,
    release_settings,
)
from animatediff.formats.identify import (
    KIND_NAMES,
    CheckpointInfo,
    Kind,
    classify_keys,
    identify,
    identify_folder,
    kind_of,
    read_checkpoint,
    require_kind,
)
from animatediff.formats.layouts import Layout, diffusers_to_official, official_to_diffusers
from animatediff.formats.motion import (
    load_motion_module,
    load_with_image_input,
    read_motion_module_weights,
    save_motion_module,
    to_motion_adapter,
)
from animatediff.formats.safe import (
    DIFFUSERS_MODEL_FILES,
    checkpoint_keys,
    read_state_dict,
    save_state_dict,
    stored_dtype,
)

__all__ = [
    "DIFFUSERS_MODEL_FILES",
    "IMAGE_LORA_KEY",
    "KIND_NAMES",
    "MOTION_MODULE_FORMAT",
    "CheckpointInfo",
    "Kind",
    "Layout",
    "ModuleHeader",
    "checkpoint_keys",
    "classify_keys",
    "convert_checkpoint",
    "diffusers_to_official",
    "identify",
    "identify_folder",
    "infer_motion_module_config",
    "kind_of",
    "load_motion_module",
    "load_with_image_input",
    "module_family",
    "module_header",
    "motion_module_family",
    "motion_module_table",
    "official_to_diffusers",
    "read_checkpoint",
    "read_motion_module_weights",
    "read_state_dict",
    "release_settings",
    "require_kind",
    "save_motion_module",
    "save_state_dict",
    "stored_dtype",
    "to_motion_adapter",
]
