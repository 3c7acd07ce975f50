"""Prompts as users write them for A1111 and ComfyUI: emphasis, `BREAK`, prompts longer than the encoder reads.

Three readings of a prompt (`Sample.prompt_syntax`):
- `a1111`: A1111's `prompt_parser.parse_prompt_attention` and `sd_hijack_clip` — `(word)` ×1.1, `[word]` ÷1.1,
  `(text:1.3)`, escapes, `BREAK`; tokens in chunks of `model_max_length - 2` (75 for CLIP), each encoded with
  its start and end token and the chunks' states concatenated along the token axis; emphasis multiplies a
  token's states by its weight, then rescales the chunk so its mean is the unweighted mean.
- `comfy`: ComfyUI's `sd1_clip` reading — parentheses only (`(text:1.3)` sets the weight rather than multiplying
  it), and a weighted token's states pushed away from the empty prompt's: `empty + (state - empty) * weight`.
- `plain`: the text as written, cut at the encoder's length (`pipeline.encode_text`, the official numerics).

A prompt with no syntax that fits one chunk gives the same states, bit for bit, under all three.
Textual-inversion words (`embeddings.load_embeddings`) expand to their vectors' tokens under every reading.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import torch
from transformers import CLIPTextModel, CLIPTokenizer

from animatediff.errors import ConfigError

log = logging.getLogger("animatediff")

SYNTAXES = ("a1111", "comfy", "plain")
BREAK = ("BREAK", -1.0)  # A1111's marker for a chunk break among the parsed pieces
COMMA_BACKTRACK = 20  # A1111's default `comma_padding_backtrack`: a full chunk moves the words after a late comma on

_A1111 = re.compile(
    r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|]|
[^\\()\[\]:]+|
:
""",
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_a1111(text: str) -> list[tuple[str, float]]:
    """A1111's `parse_prompt_attention`: (text, weight) pieces, `BREAK` as ("BREAK", -1); unclosed brackets
    weigh everything after them, as A1111 reads them (with a warning)."""
    pieces: list[list] = []
    opened: dict[str, list[int]] = {"(": [], "[": []}  # where each open bracket's pieces start
    for match in _A1111.finditer(text):
        part, weight = match.group(0), match.group(1)
        if part.startswith("\\"):
            pieces.append([part[1:], 1.0])
        elif part in opened:
            opened[part].append(len(pieces))
        elif weight is not None and opened["("]:
            _multiply(pieces, opened["("].pop(), float(weight))
        elif part in (")", "]") and opened["(" if part == ")" else "["]:
            _multiply(pieces, opened["(" if part == ")" else "["].pop(), _FACTORS[part])
        else:
            pieces += _text_pieces(part, text)
    if opened["("] or opened["["]:
        count = len(opened["("]) + len(opened["["])
        log.warning("prompt %r: %d unclosed bracket(s), read as A1111 reads them: to its end.", text[:60], count)
    for bracket, close in (("(", ")"), ("[", "]")):
        for start in opened[bracket]:
            _multiply(pieces, start, _FACTORS[close])
    return _merged(pieces or [["", 1.0]])


_FACTORS = {")": 1.1, "]": 1 / 1.1}


def _text_pieces(part: str, prompt: str) -> list[list]:
    """Unweighted text, split at `BREAK`; a bracket that closes nothing stays text (with a warning)."""
    if part in (")", "]"):
        log.warning("prompt %r: a %r closes no bracket, read as A1111 reads it: as text.", prompt[:60], part)
    pieces = []
    for index, chunk in enumerate(_BREAK.split(part)):
        pieces += [list(BREAK), [chunk, 1.0]] if index else [[chunk, 1.0]]
    return pieces


def _multiply(pieces: list[list], start: int, factor: float) -> None:
    for piece in pieces[start:]:
        piece[1] *= factor


def _merged(pieces: list[list]) -> list[tuple[str, float]]:
    """Neighbouring pieces of the same weight joined, as A1111 joins them."""
    merged = [pieces[0]]
    for text, weight in pieces[1:]:
        if weight == merged[-1][1]:
            merged[-1][0] += text
        else:
            merged.append([text, weight])
    return [(text, weight) for text, weight in merged]


def parse_comfy(text: str) -> list[tuple[str, float]]:
    """ComfyUI's `token_weights`: `(text)` ×1.1, `(text:w)` sets w, escaped parentheses kept as text; square
    brackets and `BREAK` are plain text there."""
    text = text.replace("\\)", "\0\1").replace("\\(", "\0\2")
    if text.count("(") != text.count(")"):
        log.warning("prompt %r: unbalanced parentheses, read as ComfyUI reads them.", text[:60])
    return [(part.replace("\0\1", ")").replace("\0\2", "("), weight) for part, weight in _comfy_weights(text, 1.0)]


def _comfy_weights(text: str, weight: float) -> list[tuple[str, float]]:
    out = []
    for part in _top_level_groups(text):
        if len(part) >= 2 and part[0] == "(" and part[-1] == ")":
            inner, inner_weight = part[1:-1], weight * 1.1
            colon = inner.rfind(":")
            if colon > 0:
                try:
                    inner, inner_weight = inner[:colon], float(inner[colon + 1 :])
                except ValueError:
                    pass
            out += _comfy_weights(inner, inner_weight)
        else:
            out.append((part, weight))
    return out


def _top_level_groups(text: str) -> list[str]:
    """ComfyUI's `parse_parentheses`: the text split into outermost parenthesised groups and the text between."""
    groups, current, depth = [], "", 0
    for char in text:
        if char == "(":
            if depth == 0 and current:
                groups.append(current)
                current = ""
            current += char
            depth += 1
        elif char == ")":
            depth -= 1
            current += char
            if depth == 0:
                groups.append(current)
                current = ""
        else:
            current += char
    return groups + [current] if current else groups


@dataclass
class Chunk:
    """One encoder input: start token, up to `model_max_length - 2` tokens, end token, padding; a weight each."""

    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


def chunks(tokenizer: CLIPTokenizer, pieces: list[tuple[str, float]]) -> list[Chunk]:
    """A1111's `tokenize_line`: the pieces' tokens in chunks, a new chunk at each `BREAK`, and a full chunk's
    words after a comma in its last `COMMA_BACKTRACK` tokens moved to the next."""
    length = tokenizer.model_max_length - 2
    comma = tokenizer.convert_tokens_to_ids(",</w>") if ",</w>" in tokenizer.get_vocab() else None
    done: list[Chunk] = []
    chunk, last_comma = Chunk(), -1

    def close(carry: Chunk | None = None) -> Chunk:
        nonlocal last_comma
        done.append(_framed(tokenizer, chunk))
        last_comma = -1
        return carry or Chunk()

    texts = [text for text, _ in pieces]
    for ids, (text, weight) in zip(tokenizer(texts, add_special_tokens=False).input_ids, pieces, strict=True):
        if (text, weight) == BREAK:
            chunk = close()
            continue
        for token in ids:
            if token == comma:
                last_comma = len(chunk.tokens)
            elif len(chunk.tokens) == length and last_comma != -1 and length - last_comma <= COMMA_BACKTRACK:
                cut = last_comma + 1
                carry = Chunk(chunk.tokens[cut:], chunk.weights[cut:])
                chunk.tokens, chunk.weights = chunk.tokens[:cut], chunk.weights[:cut]
                chunk = close(carry)
            if len(chunk.tokens) == length:
                chunk = close()
            chunk.tokens.append(token)
            chunk.weights.append(weight)
    if chunk.tokens or not done:
        close()
    return done


def _framed(tokenizer: CLIPTokenizer, chunk: Chunk) -> Chunk:
    """The chunk with its start and end token, padded to `model_max_length` (with the tokenizer's pad token,
    as the plain reading pads: the same as A1111's end-token padding for SD1.x's tokenizer)."""
    room = tokenizer.model_max_length - 2 - len(chunk.tokens)
    tokens = [tokenizer.bos_token_id, *chunk.tokens, tokenizer.eos_token_id] + [tokenizer.pad_token_id] * room
    return Chunk(tokens, [1.0, *chunk.weights, 1.0] + [1.0] * room)


def expand_embeddings(tokenizer: CLIPTokenizer, text: str) -> str:
    """A multi-vector textual-inversion word replaced by its tokens (`word word_1 … word_N-1`), as diffusers'
    `TextualInversionLoaderMixin` names and expands them."""
    added = tokenizer.added_tokens_encoder
    for word in sorted(w for w in added if f"{w}_1" in added and w in text):
        count = 1
        while f"{word}_{count}" in added:
            count += 1
        text = re.sub(
            rf"(?<![\w]){re.escape(word)}(?![\w])", " ".join([word] + [f"{word}_{i}" for i in range(1, count)]), text
        )
    return text


def hidden_states(text_encoder: CLIPTextModel, tokens: torch.Tensor, clip_skip: int = 1) -> torch.Tensor:
    """The encoder's states for token ids (batch, tokens): the last layer's, or with `clip_skip` N the N-th layer
    from the end through the final layer norm (A1111's CLIP skip, diffusers' `clip_skip` N - 1)."""
    if clip_skip == 1:
        return text_encoder(tokens.to(text_encoder.device))[0]
    hidden = text_encoder(tokens.to(text_encoder.device), output_hidden_states=True).hidden_states
    text_model = getattr(text_encoder, "text_model", text_encoder)  # transformers 5 drops the wrapper
    return text_model.final_layer_norm(hidden[-clip_skip])


def encode_weighted(
    tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, text: str, syntax: str, clip_skip: int = 1
) -> torch.Tensor:
    """One prompt's states under `a1111` or `comfy`: (chunks × model_max_length, dim)."""
    pieces = parse_a1111(text) if syntax == "a1111" else parse_comfy(text)
    parts = chunks(tokenizer, pieces)
    tokens = torch.tensor([chunk.tokens for chunk in parts])
    weights = torch.tensor([chunk.weights for chunk in parts])  # (chunks, tokens)
    states = hidden_states(text_encoder, tokens, clip_skip)  # (chunks, tokens, dim)
    if not (weights != 1.0).any():
        return states.flatten(0, 1)
    weights = weights.to(states)[..., None]
    if syntax == "a1111":  # A1111's "Original" emphasis, per chunk (A1111's mean spans its batch of one prompt)
        weighted = states * weights
        means = states.mean(dim=(1, 2), keepdim=True) / weighted.mean(dim=(1, 2), keepdim=True)
        return (weighted * means).flatten(0, 1)
    empty = hidden_states(text_encoder, torch.tensor([_framed(tokenizer, Chunk()).tokens]), clip_skip)
    return torch.where(weights != 1.0, empty + (states - empty) * weights, states).flatten(0, 1)


def encode_prompts(
    tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, texts: list[str], syntax: str, clip_skip: int = 1
) -> torch.Tensor:
    """The prompts' states (prompts, chunks × model_max_length, dim), the shorter padded with the empty
    prompt's chunk to the most chunks; `plain` is `pipeline.encode_text`."""
    if syntax not in SYNTAXES:
        raise ConfigError(f"prompt_syntax must be one of {', '.join(SYNTAXES)}; got {syntax!r}.")
    texts = [expand_embeddings(tokenizer, text) for text in texts]
    if syntax == "plain":
        ids = tokenizer(
            texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids
        return hidden_states(text_encoder, ids, clip_skip)
    return padded(
        [encode_weighted(tokenizer, text_encoder, text, syntax, clip_skip) for text in texts],
        tokenizer,
        text_encoder,
        clip_skip,
    )


def chunk_count(tokenizer: CLIPTokenizer, texts: list[str], syntax: str) -> int:
    """How many chunks the prompts are encoded in (the most of any; 1 under `plain`), from their tokens alone."""
    if syntax == "plain":
        return 1
    parse = parse_a1111 if syntax == "a1111" else parse_comfy
    return max(len(chunks(tokenizer, parse(expand_embeddings(tokenizer, text)))) for text in texts)


def padded(
    states: list[torch.Tensor], tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, clip_skip: int = 1
) -> torch.Tensor:
    """States of different chunk counts (tokens, dim) stacked, the shorter completed with empty-prompt chunks."""
    most = max(len(s) for s in states)
    if all(len(s) == most for s in states):
        return torch.stack(states)
    empty = hidden_states(text_encoder, torch.tensor([_framed(tokenizer, Chunk()).tokens]), clip_skip)[0]
    repeats = [(most - len(s)) // len(empty) for s in states]
    return torch.stack([torch.cat([s, empty.repeat(n, 1)]) for s, n in zip(states, repeats, strict=True)])
