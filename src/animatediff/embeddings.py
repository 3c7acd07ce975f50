"""Textual-inversion embeddings: each file a word, named after its stem, with one or more learned token vectors.

Read layouts: A1111's (`string_to_param: {"*": (n, dim)}` in .pt; `emb_params: (n, dim)` in .safetensors) and
diffusers' (`{token: (dim) or (n, dim)}`). The word's vectors become tokens of the tokenizer and rows of the text
encoder's token embedding, named as diffusers' `TextualInversionLoaderMixin` names them (`word`, `word_1`, …), so
`prompting.expand_embeddings` turns the word into its n tokens in every prompt syntax.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers.loaders import TextualInversionLoaderMixin
from safetensors.torch import load_file
from transformers import CLIPTextModel, CLIPTokenizer

from animatediff.errors import CheckpointError, ConfigError


def read_embedding(path: Path) -> torch.Tensor:
    """The file's vectors (n, dim), whatever its layout."""
    path = Path(path)
    try:
        data = (
            load_file(path)
            if path.suffix == ".safetensors"
            else torch.load(path, weights_only=True, map_location="cpu")
        )
    except Exception as error:  # a damaged or pickled-code file: either way not loadable safely
        raise CheckpointError(f"{path}: not a readable embedding ({type(error).__name__}: {error}).") from error
    if isinstance(data, dict) and "string_to_param" in data:
        vectors = next(iter(data["string_to_param"].values()))
    elif isinstance(data, dict) and "emb_params" in data:
        vectors = data["emb_params"]
    elif isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), torch.Tensor):
        vectors = next(iter(data.values()))
    else:
        keys = list(data)[:5] if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"{path}: not a textual-inversion embedding (expected A1111's string_to_param or emb_params, or "
            f"diffusers' one {{token: tensor}}); found {keys}."
        )
    return vectors.detach().float().reshape(-1, vectors.shape[-1])


def load_embeddings(tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, paths: list[Path]) -> None:
    """Each file's vectors added as its word's tokens; an embedding of another width than the encoder's is refused."""
    width = text_encoder.get_input_embeddings().weight.shape[1]
    words, vectors = [], []
    for path in map(Path, paths):
        embedding = read_embedding(path)
        if embedding.shape[1] != width:
            raise ConfigError(
                f"embedding {path.name}: its vectors are {embedding.shape[1]} wide and the text encoder's tokens "
                f"{width}; it was trained for another text encoder."
            )
        if path.stem in tokenizer.get_vocab():
            raise ConfigError(f"embedding {path.name}: the word '{path.stem}' is already a token of the tokenizer.")
        tokens, rows = TextualInversionLoaderMixin._extend_tokens_and_embeddings([path.stem], [embedding], tokenizer)
        words += tokens
        vectors += rows
    if not words:
        return
    tokenizer.add_tokens(words)
    text_encoder.resize_token_embeddings(len(tokenizer))
    table = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        for word, vector in zip(words, vectors, strict=True):
            table[tokenizer.convert_tokens_to_ids(word)] = vector.to(table)
