"""What conditions a clip besides its text, as tensors the pipeline composes into its loop.

- `init_latents`: video-to-video. An input clip, encoded by the VAE and noised to the step its strength
  selects; sampling starts there. An init image (and a last one) the same way, blended into random
  latents with a weight that falls over the frames.
- `inpaint`: masked video-to-video. Outside a mask the input is kept (its latents noised to every step), or
  an inpainting UNet (9 input channels) sees the mask and the masked input; extending a clip is the same with
  the input's last frames kept.
- `controlnet`: control residuals. ControlNets run on every frame folded into the batch; their down and
  mid residuals enter the video UNet's blocks (the one hook that SparseCtrl uses too).
- `image_prompt`: IP-Adapter. An image's CLIP embedding, projected into extra key/value tokens of every
  cross-attention, the same for every frame.
- `preprocess`: control frames made from ordinary frames (edges).

Nothing here reads files: the command line reads videos and images (`animatediff.media`) and hands over
arrays."""

from animatediff.control.conditions import (
    Conditions,
    ControlNetInput,
    Extension,
    ImagePrompt,
    InitImage,
    InitVideo,
)

__all__ = ["Conditions", "ControlNetInput", "Extension", "ImagePrompt", "InitImage", "InitVideo"]
