"""Prompt syntax (a1111, comfy, plain) and textual-inversion embeddings, checked against their references:
compel (parsing and the chunking of long prompts), A1111's `sd_hijack_clip`/`emphasis.py` arithmetic and
ComfyUI's `sd1_clip.ClipTokenWeightEncoder` written out by hand here."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import save_file
from transformers import CLIPTokenizer

from animatediff.embeddings import load_embeddings
from animatediff.errors import ConfigError
from animatediff.pipeline import encode_text
from animatediff.prompting import chunks, encode_prompts, parse_a1111, parse_comfy
from helpers import TOKENIZER, tiny_text_encoder


@pytest.fixture
def tokenizer():
    return CLIPTokenizer.from_pretrained(TOKENIZER)


@pytest.fixture
def encoder():
    return tiny_text_encoder()


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False).input_ids


def framed(tokenizer, tokens):
    """[start] tokens [end] padding, as A1111's `next_chunk` frames a chunk."""
    return [tokenizer.bos_token_id, *tokens, tokenizer.eos_token_id] + [tokenizer.pad_token_id] * (75 - len(tokens))


@pytest.mark.parametrize(
    "a1111, compel",
    [("a (red:1.3) cat", "a (red)1.3 cat"), ("a (red) cat", "a red+ cat"), ("a ((red)) cat", "a red++ cat")],
)
def test_a1111_weights_match_compels_for_the_same_emphasis(a1111, compel):
    from compel import Compel

    (flat,) = Compel.parse_prompt_string(compel).prompts
    theirs = [(f.text.strip(), f.weight) for f in flat.children]
    ours = [(text.strip(), weight) for text, weight in parse_a1111(a1111)]
    assert [t for t, _ in ours] == [t for t, _ in theirs]
    assert [w for _, w in ours] == pytest.approx([w for _, w in theirs])


def test_square_brackets_and_escapes_as_a1111_parses_them():
    assert parse_a1111(r"a [cat] \(b\)") == [("a ", 1.0), ("cat", pytest.approx(1 / 1.1)), (" (b)", 1.0)]
    assert parse_a1111("x BREAK y") == [("x", 1.0), ("BREAK", -1.0), ("y", 1.0)]


def test_unbalanced_parentheses_read_to_the_end_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="animatediff"):
        assert parse_a1111("a (red cat") == [("a ", 1.0), ("red cat", pytest.approx(1.1))]
    assert "unclosed" in caplog.text


def test_comfy_sets_the_weight_of_a_nested_group_and_reads_brackets_as_text():
    assert parse_comfy("((a:1.5)) [b]") == [("a", 1.5), (" [b]", 1.0)]


def test_long_prompt_chunks_match_compels_unsplit_chunking(tokenizer, encoder):
    from compel.embeddings_provider import EmbeddingsProvider, SplitLongTextMode

    provider = EmbeddingsProvider(tokenizer, encoder, truncate=False, split_long_text_mode=SplitLongTextMode.BRUTAL)
    theirs, weights, _ = provider.get_token_ids_and_expand_weights(["a red circle " * 30, "cat"], [1.0, 1.3], "cpu")
    ours = chunks(tokenizer, [("a red circle " * 30, 1.0), ("cat", 1.3)])
    assert len(ours) > 2
    assert sum((c.tokens for c in ours), []) == theirs.tolist()
    assert sum((c.weights for c in ours), []) == pytest.approx(weights.tolist())


def test_long_unweighted_prompt_states_match_compels(tokenizer, encoder):
    from compel import Compel
    from compel.embeddings_provider import SplitLongTextMode

    prompt = "a red circle on a blue background " * 12
    brutal = SplitLongTextMode.BRUTAL  # compel's default splits at sentences, and copies the first chunk's EOS state
    compel = Compel(tokenizer=tokenizer, text_encoder=encoder, truncate_long_prompts=False, split_long_text_mode=brutal)
    with torch.no_grad():
        theirs = compel(prompt)
        ours = encode_prompts(tokenizer, encoder, [prompt], "a1111")
    assert ours.shape == theirs.shape and ours.shape[1] > 77
    torch.testing.assert_close(ours, theirs)


def test_a_comma_near_a_full_chunk_moves_the_words_after_it_on(tokenizer):
    # A1111's comma_padding_backtrack (20 by default); compel's BRUTAL split does not do this.
    text = "x " * 70 + ", a red circle"
    first, second = chunks(tokenizer, [(text, 1.0)])
    content = first.tokens[1 : first.tokens.index(tokenizer.eos_token_id)]
    assert content == ids(tokenizer, "x " * 70 + ",")
    assert second.tokens[1 : 1 + len(ids(tokenizer, " a red circle"))] == ids(tokenizer, " a red circle")


def test_a1111_emphasis_is_its_published_arithmetic(tokenizer, encoder):
    # modules/sd_hijack_clip.py: tokens per parsed piece, multipliers 1.0 at start/end/padding; emphasis.py
    # EmphasisOriginal: z *= multipliers; z *= original_mean / new_mean.
    tokens = ids(tokenizer, "a ") + ids(tokenizer, "red") + ids(tokenizer, " cat")
    weights = (
        [1.0] * len(ids(tokenizer, "a ")) + [1.3] * len(ids(tokenizer, "red")) + [1.0] * len(ids(tokenizer, " cat"))
    )
    multipliers = torch.tensor([1.0, *weights, 1.0] + [1.0] * (75 - len(tokens)))
    with torch.no_grad():
        z = encoder(torch.tensor([framed(tokenizer, tokens)]))[0]
        ours = encode_prompts(tokenizer, encoder, ["a (red:1.3) cat"], "a1111")
    original_mean = z.mean()
    z = z * multipliers.reshape(multipliers.shape + (1,)).expand(z.shape)
    expected = z * (original_mean / z.mean())
    torch.testing.assert_close(ours, expected)


def test_comfy_pushes_weighted_tokens_away_from_the_empty_prompt(tokenizer, encoder):
    # comfy/sd1_clip.py ClipTokenWeightEncoder: z[j] = (z[j] - z_empty[j]) * weight + z_empty[j] where weight != 1.
    tokens = ids(tokenizer, "a ") + ids(tokenizer, "red") + ids(tokenizer, " cat")
    red = range(1 + len(ids(tokenizer, "a ")), 1 + len(ids(tokenizer, "a ")) + len(ids(tokenizer, "red")))
    with torch.no_grad():
        z = encoder(torch.tensor([framed(tokenizer, tokens)]))[0][0]
        empty = encoder(torch.tensor([framed(tokenizer, [])]))[0][0]
        ours = encode_prompts(tokenizer, encoder, ["a (red:1.3) cat"], "comfy")[0]
    for j in red:
        z[j] = (z[j] - empty[j]) * 1.3 + empty[j]
    torch.testing.assert_close(ours, z)


@pytest.mark.parametrize("clip_skip", [1, 2])
def test_a_prompt_without_syntax_is_bit_identical_under_every_syntax(tokenizer, encoder, clip_skip):
    texts = ["blurry", "a red circle on a blue background"]
    with torch.no_grad():
        plain = encode_text(tokenizer, encoder, texts, clip_skip)
        for syntax in ("a1111", "comfy"):
            assert torch.equal(encode_prompts(tokenizer, encoder, texts, syntax, clip_skip), plain)


def test_break_starts_a_chunk_and_the_negative_prompt_is_padded_with_empty_chunks(tokenizer, encoder):
    with torch.no_grad():
        states = encode_prompts(tokenizer, encoder, ["", "a red circle BREAK blue"], "a1111")
        empty = encode_text(tokenizer, encoder, [""])[0]
        second = encode_text(tokenizer, encoder, ["blue"])[0]
    assert states.shape == (2, 154, 32)
    torch.testing.assert_close(states[0], torch.cat([empty, empty]))
    torch.testing.assert_close(states[1, 77:], second)


def test_plain_cuts_what_a1111_reads_in_a_second_chunk(tokenizer, encoder):
    long = "a red circle " * 30
    with torch.no_grad():
        plain = encode_prompts(tokenizer, encoder, [long + "green", long + "blue"], "plain")
        chunked = encode_prompts(tokenizer, encoder, [long + "green", long + "blue"], "a1111")
    assert torch.equal(plain[0], plain[1])
    assert not torch.allclose(chunked[0], chunked[1])


# Textual inversion


def layouts(vectors: torch.Tensor) -> dict:
    return {
        "a1111.pt": {"string_to_param": {"*": vectors}, "name": "other"},
        "emb.safetensors": {"emb_params": vectors},
        "diffusers.bin": {"<tok>": vectors},
    }


def save(path, data):
    if path.suffix == ".safetensors":
        save_file(data, path)
    else:
        torch.save(data, path)
    return path


@pytest.mark.parametrize("layout", ["a1111.pt", "emb.safetensors", "diffusers.bin"])
def test_an_embedding_in_each_layout_becomes_its_word(tmp_path, tokenizer, encoder, layout):
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(0))
    path = save(tmp_path / f"easyneg{layout[layout.index('.') :]}", layouts(vectors)[layout])
    load_embeddings(tokenizer, encoder, [path])
    with torch.no_grad():
        used = encode_prompts(tokenizer, encoder, ["a red easyneg circle"], "a1111")
        absent = encode_prompts(tokenizer, encoder, ["a red circle"], "a1111")
    assert not torch.allclose(used, absent)
    torch.testing.assert_close(used, inserted_by_hand(vectors, "a red ", " circle"))


def inserted_by_hand(vectors: torch.Tensor, before: str, after: str) -> torch.Tensor:
    """A fresh encoder's states with `vectors` written over the token embeddings of two placeholder tokens."""
    tokenizer, encoder = CLIPTokenizer.from_pretrained(TOKENIZER), tiny_text_encoder()
    words = ids(tokenizer, before) + [0, 0] + ids(tokenizer, after)
    start = 1 + len(ids(tokenizer, before))

    def insert(module, inputs, output):
        output[0, start : start + len(vectors)] = vectors
        return output

    encoder.get_input_embeddings().register_forward_hook(insert)
    with torch.no_grad():
        return encoder(torch.tensor([framed(tokenizer, words)]))[0]


def test_an_embedding_of_another_width_is_refused_naming_both(tmp_path, tokenizer, encoder):
    path = save(tmp_path / "wide.pt", {"string_to_param": {"*": torch.zeros(1, 768)}})
    with pytest.raises(ConfigError, match="768 wide.*32"):
        load_embeddings(tokenizer, encoder, [path])


def test_the_command_line_refuses_an_embedding_of_another_width_with_exit_2(
    tmp_path, tiny_base, tiny_motion_module_file, capsys
):
    from animatediff.cli import main

    (tmp_path / "embeddings").mkdir()
    save(tmp_path / "embeddings" / "wide.safetensors", {"emb_params": torch.zeros(1, 768)})
    models = ["--base", str(tiny_base), "--motion-module", str(tiny_motion_module_file)]
    small = [
        "--width",
        "16",
        "--height",
        "16",
        "--steps",
        "1",
        "--frames",
        "4",
        "--embeddings",
        str(tmp_path / "embeddings"),
    ]
    assert main(["generate", "a wide red circle", *models, *small, "-o", str(tmp_path / "o.gif")]) == 2
    error = capsys.readouterr().err
    assert "768" in error and "32" in error and "Traceback" not in error


# In the pipeline


def tiny_pipeline(tiny_base):
    from animatediff.image_models import load_base
    from animatediff.pipeline import AnimateDiffPipeline
    from helpers import random_motion_module

    return AnimateDiffPipeline.from_components(load_base(tiny_base), random_motion_module())


def test_prompt_travel_pads_keyframes_and_the_negative_prompt_to_the_most_chunks(tiny_base):
    pipeline = tiny_pipeline(tiny_base)
    travel = ((0, "a red circle"), (4, "a blue square " * 20 + "BREAK green"))
    sample = pipeline.sample("a red circle", num_frames=6, prompt_map=travel, prompt_syntax="a1111")
    states = pipeline.text_states(sample)
    tokenizer, encoder = pipeline.tokenizer, pipeline.text_encoder
    with torch.no_grad():
        last = encode_prompts(tokenizer, encoder, [travel[1][1]], "a1111")[0]
        first = encode_prompts(tokenizer, encoder, [travel[0][1]], "a1111")[0]
        empty = encode_text(tokenizer, encoder, [""])[0]
    count = len(last) // 77  # the long keyframe's chunks, its BREAK's among them
    assert states.shape == (2, 6, count * 77, 32) and count > 2
    torch.testing.assert_close(states[1, 5], last)
    torch.testing.assert_close(states[1, 0], torch.cat([first] + [empty] * (count - 1)))
    torch.testing.assert_close(states[0, 0], torch.cat([empty] * count))


def test_an_unknown_prompt_syntax_is_refused_naming_the_choices(tiny_base):
    pipeline = tiny_pipeline(tiny_base)
    with pytest.raises(ConfigError, match="a1111, comfy, plain; got 'webui'"):
        pipeline.text_states(pipeline.sample("a red circle", prompt_syntax="webui"))


def test_long_prompts_are_not_reported_cut_under_a1111(tiny_base, caplog):
    pipeline = tiny_pipeline(tiny_base)
    long = "a red circle " * 30
    with caplog.at_level(logging.WARNING, logger="animatediff"):
        pipeline.text_states(pipeline.sample(long, prompt_syntax="a1111"))
    assert "dropped" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="animatediff"):
        pipeline.text_states(pipeline.sample(long, prompt_syntax="plain"))
    assert "dropped" in caplog.text


def test_the_command_line_reads_an_embeddings_folder_and_records_each_file_and_hash(
    tmp_path, tiny_base, tiny_motion_module_file
):
    import hashlib
    import json

    from animatediff.cli import main

    (tmp_path / "embeddings").mkdir()
    path = save(tmp_path / "embeddings" / "easyneg.pt", {"string_to_param": {"*": torch.randn(2, 32)}})
    models = ["--base", str(tiny_base), "--motion-module", str(tiny_motion_module_file)]
    small = ["--width", "16", "--height", "16", "--steps", "1", "--frames", "4", "--embeddings", str(path.parent)]
    negative = ["--negative-prompt", "(easyneg:1.2)"]
    assert main(["generate", "a red circle", *models, *small, *negative, "-o", str(tmp_path / "o.gif")]) == 0
    recorded = json.loads((tmp_path / "o.gif.json").read_text())["embeddings"]
    assert recorded == [{"path": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:12]}]


def test_the_sidecar_records_how_many_chunks_the_prompts_took(tmp_path):
    import json

    from animatediff.cli import main

    long = "a red circle " + "very " * 40 + "slowly moving right"  # past the embedded encoder's 30-token chunk
    for syntax, prompt, count in (("a1111", long, 6), ("plain", long, 1), ("a1111", "a red circle", 1)):
        out = tmp_path / f"{syntax}-{count}.gif"
        flags = ["--frames", "2", "--steps", "1", "--prompt-syntax", syntax, "-o", str(out)]
        assert main(["generate", prompt, *flags]) == 0
        recorded = json.loads(out.with_suffix(".gif.json").read_text())
        assert (recorded["prompt_syntax"], recorded["prompt_chunks"]) == (syntax, count)
