"""A base image model from nothing: the world tokenizer, the scaffold, the `vae` and `text_to_image`
stages, min-SNR weighting, and personalized models saved as diffusers folders."""

import json

import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from animatediff import apply_dreambooth, load_base
from animatediff.errors import CheckpointError, ConfigError
from animatediff.shapes.datasets import DatasetSpec, render_dataset
from animatediff.shapes.models import scaffold, world_tokenizer, world_words
from animatediff.shapes.world import HELD_OUT
from animatediff.training.config import TrainSettings, load_train_config
from animatediff.training.losses import autoencoder_loss, sample_losses, sample_noise
from animatediff.training.stages import latent_scaling_factor
from animatediff.training.trainer import train
from test_training import assert_unchanged, write_config


@pytest.fixture(scope="module")
def world_base(tmp_path_factory):
    return scaffold(tmp_path_factory.mktemp("scaffold") / "base", seed=0)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return render_dataset(
        tmp_path_factory.mktemp("images") / "images", DatasetSpec(kind="images", count=10, seed=3, size=32)
    )


def test_every_world_word_is_one_token_and_other_words_fall_back_to_characters():
    tokenizer = world_tokenizer()
    for word in world_words():
        ids = tokenizer(word).input_ids
        assert tokenizer.convert_ids_to_tokens(ids) == ["<|startoftext|>", f"{word}</w>", "<|endoftext|>"]
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("zebra").input_ids)[1:-1]
    assert "".join(pieces) == "zebra</w>" and len(pieces) > 1 and tokenizer.unk_token not in pieces


def test_scaffold_is_a_diffusers_folder_with_the_world_tokenizer(world_base):
    components = load_base(world_base)
    assert components.tokenizer.model_max_length == 32
    assert components.text_encoder.config.vocab_size == len(components.tokenizer)
    assert components.unet.config.cross_attention_dim == components.text_encoder.config.hidden_size
    ids = components.tokenizer("a red circle moving right on a blue background").input_ids
    assert len(ids) == 11  # one token per word, plus start and end
    index = json.loads((world_base / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"


def test_vae_stage_trains_only_the_vae_and_sets_the_latent_scale(tmp_path, world_base, images):
    config = load_train_config(
        write_config(
            tmp_path,
            world_base,
            images,
            "vae",
            data={"frames": 1, "size": 32},
            train={"steps": 3, "batch_size": 4, "contrast_weight": 8.0},
        )
    )
    run = train(config)
    trained, before = load_base(run.result), load_base(world_base)
    assert_unchanged(trained.unet, before.unet)
    assert_unchanged(trained.text_encoder, before.text_encoder)
    moved = [k for k, v in trained.vae.state_dict().items() if not torch.equal(v, before.vae.state_dict()[k])]
    assert len(moved) > 10
    # the saved scale makes the training latents unit-variance
    scale = trained.vae.config.scaling_factor
    assert scale != before.vae.config.scaling_factor
    assert latent_scaling_factor(trained.vae, config) == pytest.approx(scale, rel=1e-5)


def test_decoder_only_vae_stage_keeps_the_latent_space(tmp_path, world_base, images):
    config = write_config(
        tmp_path,
        world_base,
        images,
        "vae",
        data={"frames": 1, "size": 32},
        train={"steps": 2, "batch_size": 4, "learning_rate": 1e-3, "decoder_only": True},
    )
    trained, before = load_base(train(load_train_config(config)).result), load_base(world_base)
    assert_unchanged(trained.vae.encoder, before.vae.encoder)
    assert_unchanged(trained.vae.quant_conv, before.vae.quant_conv)
    assert_unchanged(trained.unet, before.unet)
    assert trained.vae.config.scaling_factor == before.vae.config.scaling_factor  # the UNet's latents, unchanged
    decoder, reference = trained.vae.decoder.state_dict(), before.vae.decoder.state_dict()
    assert sum(not torch.equal(v, reference[k]) for k, v in decoder.items()) > 10


def test_any_style_image_set_mixes_plain_and_every_style(tmp_path):
    folder = render_dataset(tmp_path / "codec", DatasetSpec(kind="images", count=30, seed=7, size=32, style="any"))
    truths = [json.loads(line) for line in (folder / "ground_truth.jsonl").read_text().splitlines()]
    assert {t["style"] for t in truths} == {None, "outlined", "striped"}
    again = render_dataset(tmp_path / "again", DatasetSpec(kind="images", count=30, seed=7, size=32, style="any"))
    assert (again / "ground_truth.jsonl").read_text() == (folder / "ground_truth.jsonl").read_text()
    with pytest.raises(ConfigError, match="style must be one of"):
        render_dataset(tmp_path / "bad", DatasetSpec(kind="images", count=2, style="dotted"))


def test_text_to_image_stage_trains_unet_and_text_encoder_together(tmp_path, world_base, images):
    config = write_config(
        tmp_path,
        world_base,
        images,
        "text_to_image",
        data={"frames": 1, "size": 32},
        train={"steps": 2, "batch_size": 4, "snr_gamma": 5.0},
    )
    run = train(load_train_config(config))
    trained, before = load_base(run.result), load_base(world_base)
    assert_unchanged(trained.vae, before.vae)
    for name in ("unet", "text_encoder"):
        state, reference = getattr(trained, name).state_dict(), getattr(before, name).state_dict()
        assert any(not torch.equal(v, reference[k]) for k, v in state.items()), name
    assert (run.result / "tokenizer" / "tokenizer.json").is_file()


def test_text_to_image_stage_can_keep_the_text_encoder_frozen(tmp_path, world_base, images):
    config = write_config(
        tmp_path,
        world_base,
        images,
        "text_to_image",
        data={"frames": 1, "size": 32},
        train={"steps": 2, "batch_size": 4, "train_text_encoder": False},
    )
    run = train(load_train_config(config))
    trained, before = load_base(run.result), load_base(world_base)
    assert_unchanged(trained.text_encoder, before.text_encoder)
    assert any(not torch.equal(v, before.unet.state_dict()[k]) for k, v in trained.unet.state_dict().items())


def test_min_snr_and_v_loss_weighting_match_their_formulas(world_base):
    components = load_base(world_base)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear")
    predictions = []

    class Recorder(torch.nn.Module):
        def forward(self, noisy, timesteps, text):
            predictions.append((noisy, timesteps))
            return torch.zeros_like(noisy)

    batch = {"pixels": torch.rand(3, 1, 3, 32, 32) * 2 - 1, "captions": ["a red circle"] * 3, "seeds": [1, 2, 3]}

    def loss(**settings):
        return sample_losses(Recorder(), components, scheduler, batch, "cpu", TrainSettings(**settings)).mean()

    plain = loss()
    weighted = loss(snr_gamma=5.0)
    timesteps = predictions[0][1]
    alphas = scheduler.alphas_cumprod[timesteps]
    snr = alphas / (1 - alphas)
    # with a zero prediction each sample's error is its noise's mean square; recompute it from the seeds
    _, noise, drawn = sample_noise([1, 2, 3], ((1, 4, 8, 8), (4, 1, 8, 8)), 1000)
    assert torch.equal(drawn, timesteps)
    errors = noise.pow(2).mean(dim=(1, 2, 3, 4))
    assert plain.item() == pytest.approx(errors.mean().item(), rel=1e-5)
    expected = (errors * torch.clamp(snr, max=5.0) / snr).mean()
    assert weighted.item() == pytest.approx(expected.item(), rel=1e-5)
    # as a v-prediction model's loss: the zero ε prediction implies x0 = x_t / √ᾱ and so a v prediction;
    # its error against diffusers' v target is what loss="v" reports
    v_loss = loss(loss="v")
    noisy = predictions[-1][0]
    root, rest = alphas.sqrt()[:, None, None, None, None], (1 - alphas).sqrt()[:, None, None, None, None]
    clean = (noisy - rest * noise) / root
    implied = -rest * noisy / root
    target = scheduler.get_velocity(clean, noise, timesteps)
    expected_v = (target - implied).pow(2).mean(dim=(1, 2, 3, 4)).mean()
    assert v_loss.item() == pytest.approx(expected_v.item(), rel=1e-4)


def test_image_finetune_result_is_a_dreambooth_folder(tmp_path, world_base, images):
    config = write_config(
        tmp_path,
        world_base,
        images,
        "image_finetune",
        data={"frames": 1, "size": 32},
        train={"steps": 1, "batch_size": 2, "learning_rate": 1e-3},
    )
    run = train(load_train_config(config))
    base = load_base(world_base)
    personalized = apply_dreambooth(load_base(world_base), run.result, world_base)
    assert_unchanged(personalized.unet, run.stage.components.unet)
    assert any(not torch.equal(v, base.unet.state_dict()[k]) for k, v in personalized.unet.state_dict().items())
    assert personalized.vae is not None and personalized.tokenizer is not None
    with pytest.raises(CheckpointError, match="expected a diffusers UNet folder"):
        apply_dreambooth(base, tmp_path, world_base)


def test_training_sets_leave_out_the_held_out_combinations(tmp_path):
    folder = render_dataset(tmp_path / "clips", DatasetSpec(kind="clips", count=300, seed=0, size=16, frames=2))
    truths = [json.loads(line) for line in (folder / "ground_truth.jsonl").read_text().splitlines()]
    shown = {(t["objects"][0]["colour"], t["objects"][0]["shape"], t["motion"]) for t in truths}
    assert not shown & set(HELD_OUT)
    assert len(shown) > 100  # most other combinations occur
    everything = render_dataset(
        tmp_path / "all", DatasetSpec(kind="clips", count=300, seed=0, size=16, frames=2, held_out=True)
    )
    truths = [json.loads(line) for line in (everything / "ground_truth.jsonl").read_text().splitlines()]
    assert {(t["objects"][0]["colour"], t["objects"][0]["shape"], t["motion"]) for t in truths} & set(HELD_OUT)


def test_image_set_mixes_motion_captions_and_camera_scenes(images):
    captions = [json.loads(line)["caption"] for line in (images / "captions.jsonl").read_text().splitlines()]
    assert all(" moving " not in c and "spinning" not in c for c in captions[0::2])  # even: no motion
    assert all("," in captions[i] and " and " in captions[i] for i in (4, 9))  # every fifth: a scene
    odd_objects = [c for i, c in enumerate(captions) if i % 2 and i % 5 != 4]
    assert any(word in c for c in odd_objects for word in ("moving", "spinning", "growing", "shrinking", "staying"))


def test_contrast_weighting_counts_pixels_by_their_distance_from_the_median_colour():
    class Fixed(torch.nn.Module):  # reconstructs everything as zero, with a unit posterior
        def forward(self, pixels, seeds):
            posterior = DiagonalGaussianDistribution(torch.zeros(len(pixels), 8, 2, 2))
            return torch.zeros_like(pixels), posterior

    pixels = torch.zeros(1, 1, 3, 4, 4)
    pixels[0, 0, :, 1, 1] = torch.tensor([1.0, -0.5, 0.1])  # one pixel off the background by 1.0 at most
    batch = {"pixels": pixels, "seeds": [0]}
    plain = autoencoder_loss(Fixed(), batch, "cpu", contrast_weight=0.0)
    weighted = autoencoder_loss(Fixed(), batch, "cpu", contrast_weight=8.0)
    errors = pixels[0, 0].abs()  # the reconstruction is zero
    assert plain.item() == pytest.approx(errors.mean().item(), rel=1e-6)
    weights = torch.ones(4, 4)
    weights[1, 1] = 1 + 8.0 * 1.0
    expected = (errors * weights).mean() / weights.mean()
    assert weighted.item() == pytest.approx(expected.item(), rel=1e-6)
    assert weighted.item() > plain.item()  # the odd pixel's larger error now counts more
