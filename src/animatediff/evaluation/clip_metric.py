"""The paper's CLIP metric: text alignment, domain similarity and smoothness of generated videos.

- text: mean cosine similarity between each frame's image embedding and the prompt's text embedding;
- domain: mean cosine similarity between each frame and the mean embedding of reference images
  (e.g. images the personalized model makes on its own);
- smooth: mean cosine similarity between the embeddings of consecutive frames.

Any CLIP model transformers can load (`CLIPModel` with its tokenizer and image processor) works.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel


def _features(output) -> torch.Tensor:
    return output if torch.is_tensor(output) else output.pooler_output


class ClipScorer:
    def __init__(self, path: str | os.PathLike, device: str = "cpu"):
        self.model = CLIPModel.from_pretrained(path).to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.processor = AutoImageProcessor.from_pretrained(path)
        self.device = device

    @torch.no_grad()
    def image_embeddings(self, frames: np.ndarray) -> torch.Tensor:
        pixels = self.processor(images=list(frames), return_tensors="pt")["pixel_values"].to(self.device)
        return F.normalize(_features(self.model.get_image_features(pixel_values=pixels)), dim=-1)

    @torch.no_grad()
    def text_embedding(self, prompt: str) -> torch.Tensor:
        tokens = self.tokenizer([prompt], padding="max_length", truncation=True, return_tensors="pt")
        output = self.model.get_text_features(input_ids=tokens.input_ids.to(self.device))
        return F.normalize(_features(output), dim=-1)[0]

    def reference_embedding(self, folder: str | os.PathLike) -> torch.Tensor:
        from PIL import Image

        images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(Path(folder).glob("*.png"))]
        return F.normalize(self.image_embeddings(np.stack(images)).mean(dim=0), dim=-1)

    def score(self, frames: np.ndarray, prompt: str, reference: torch.Tensor | None = None) -> dict[str, float]:
        images = self.image_embeddings(frames)
        scores = {
            "clip_text": float((images @ self.text_embedding(prompt)).mean()),
            "clip_smooth": float((images[1:] * images[:-1]).sum(-1).mean()) if len(images) > 1 else 1.0,
        }
        if reference is not None:
            scores["clip_domain"] = float((images @ reference).mean())
        return scores
