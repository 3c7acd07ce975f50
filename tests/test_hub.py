"""Models named by Hub id or catalog name resolve through the Hugging Face cache, offline, as a user's would.

The cache is built as `huggingface_hub` writes it (`models--OWNER--REPO/blobs` by content hash, `snapshots/COMMIT/…`
linking to them, `refs/main` naming the commit), holding tiny seeded weights under the real repository ids and file
names, in each release's own layout.
"""

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

from animatediff import hub
from animatediff.cli import main
from animatediff.families import FAMILIES
from animatediff.motion_module import MotionModuleConfig
from animatediff.planner import with_family
from animatediff.releases import RELEASES
from animatediff.settings import ModelSpec
from animatediff.sources import Sources
from helpers import random_motion_module, save_tiny_base, tiny_config
from test_cameractrl import release_file
from test_families import animatelcm_file, lightning_file
from test_image_input import i2v_file, pia_file
from test_image_models import kohya_lora
from test_lora_merges import adapter_state
from test_readme import official_motion_lora, sparsectrl_stand_ins
from test_sdxl import SDXL_WIDTHS

MAIN = "a" * 40  # the commit refs/main names
PINNED = "b" * 40  # an older commit of guoyww/animatediff
SMALL = ["--frames", "3", "--width", "32", "--height", "24", "--steps", "2", "--device", "cpu"]


def commit(cache: Path, repo: str, files: dict[str, Path], revision: str, branch: str | None = "main") -> Path:
    """Put `files` (path in the repository → a file made here) into the cache at `revision`, as huggingface_hub
    lays a download out; `branch` names the commit in refs/."""
    root = cache / f"models--{repo.replace('/', '--')}"
    for name, source in files.items():
        data = source.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = root / "snapshots" / revision / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if branch is not None:
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / branch).write_text(revision)
    return root / "snapshots" / revision


def folder_files(folder: Path) -> dict[str, Path]:
    return {file.relative_to(folder).as_posix(): file for file in folder.rglob("*") if file.is_file()}


def official_files(made: Path, unet: UNet2DConditionModel) -> dict[str, Path]:
    """guoyww/animatediff's files, tiny: the modules of each release, the v3 adapter and SparseCtrls, MotionLoRAs."""
    modules = {
        "mm_sd_v14.ckpt": tiny_config(mid_block=False, max_frames=24),
        "mm_sd_v15.ckpt": tiny_config(mid_block=False, max_frames=24),
        "mm_sd_v15_v2.ckpt": tiny_config(mid_block=True),
        "v3_sd15_mm.ckpt": tiny_config(mid_block=False),
        "mm_sdxl_v10_beta.ckpt": MotionModuleConfig(
            block_out_channels=SDXL_WIDTHS, layers_per_block=2, mid_block=False
        ),
    }
    for seed, (name, config) in enumerate(modules.items()):
        torch.save(random_motion_module(config, seed=seed, std=0.02).state_dict(), made / name)
    v2 = random_motion_module(modules["mm_sd_v15_v2.ckpt"], seed=2, std=0.02)
    for seed, release in enumerate(name for name in RELEASES if name.startswith("motionlora-")):
        torch.save(official_motion_lora(v2, seed), made / RELEASES[release].reference.path)
    torch.save(adapter_state(unet), made / "v3_sd15_adapter.ckpt")
    sparsectrl_stand_ins(made, unet)
    return {file.name: file for file in made.iterdir()}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A Hub cache holding every catalog release (SD1.5 and the MSE VAE as folders) and a pinned older commit
    of the v3 module."""
    made, cache = tmp_path_factory.mktemp("made"), tmp_path_factory.mktemp("hub")
    base = save_tiny_base(made / "sd15")
    commit(cache, "stable-diffusion-v1-5/stable-diffusion-v1-5", folder_files(base), MAIN)
    commit(cache, "stabilityai/sd-vae-ft-mse", folder_files(base / "vae"), MAIN)
    official = made / "official"
    official.mkdir()
    commit(
        cache, "guoyww/animatediff", official_files(official, UNet2DConditionModel.from_pretrained(base / "unet")), MAIN
    )
    torch.save(random_motion_module(tiny_config(mid_block=False), seed=11, std=0.02).state_dict(), made / "old.ckpt")
    commit(cache, "guoyww/animatediff", {"v3_sd15_mm.ckpt": made / "old.ckpt"}, PINNED, branch=None)
    save_file(kohya_lora(), made / "AnimateLCM_sd15_t2v_lora.safetensors")
    lcm = [animatelcm_file(made), made / "AnimateLCM_sd15_t2v_lora.safetensors"]
    commit(cache, "wangfuyun/AnimateLCM", {file.name: file for file in lcm}, MAIN)
    lightning = {f"animatediff_lightning_{n}step_diffusers.safetensors": lightning_file(made, n) for n in (1, 2, 4, 8)}
    commit(cache, "ByteDance/AnimateDiff-Lightning", lightning, MAIN)
    commit(cache, "Leoxing/PIA", {"pia.ckpt": pia_file(made)}, MAIN)
    camera = release_file(random_motion_module(tiny_config(mid_block=False)), 2, made / "CameraCtrl.ckpt")
    commit(cache, "hehao13/CameraCtrl", {"CameraCtrl.ckpt": camera}, MAIN)
    i2v = {
        "AnimateLCM_sd15_i2v.ckpt": i2v_file(made),
        "AnimateLCM_sd15_i2v_lora.safetensors": made / "AnimateLCM_sd15_t2v_lora.safetensors",
    }
    commit(cache, "wangfuyun/AnimateLCM-I2V", i2v, MAIN)
    return cache


@pytest.fixture
def offline(cache, monkeypatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def snapshot(cache: Path, repo: str, revision: str = MAIN) -> Path:
    return cache / f"models--{repo.replace('/', '--')}" / "snapshots" / revision


def generate(output: Path, *models: str) -> int:
    return main(["generate", "a red circle moving right", *models, *SMALL, "--seed", "1", "-o", str(output)])


def sidecar(output: Path) -> dict:
    return json.loads(output.with_name(output.name + ".json").read_text())


def test_a_bare_repo_id_and_an_hf_file_generate_and_the_sidecar_records_their_commits(offline, tmp_path):
    output = tmp_path / "clip.gif"
    models = ["--base", "stable-diffusion-v1-5/stable-diffusion-v1-5"]
    assert generate(output, *models, "--motion-module", "hf://guoyww/animatediff/v3_sd15_mm.ckpt") == 0
    base, module = (
        snapshot(offline, "stable-diffusion-v1-5/stable-diffusion-v1-5"),
        snapshot(offline, "guoyww/animatediff"),
    )
    assert sidecar(output)["hub"] == [
        {"path": str(base), "id": "stable-diffusion-v1-5/stable-diffusion-v1-5", "revision": MAIN},
        {"path": str(module / "v3_sd15_mm.ckpt"), "id": "hf://guoyww/animatediff/v3_sd15_mm.ckpt", "revision": MAIN},
    ]


def test_a_pinned_revision_takes_that_commit_and_the_sidecar_says_so(offline, tmp_path):
    output = tmp_path / "clip.gif"
    pinned = f"hf://guoyww/animatediff/v3_sd15_mm.ckpt@{PINNED}"
    assert generate(output, "--base", "sd15", "--motion-module", pinned) == 0
    record = sidecar(output)
    assert record["hub"][1] == {
        "path": str(snapshot(offline, "guoyww/animatediff", PINNED) / "v3_sd15_mm.ckpt"),
        "id": "hf://guoyww/animatediff/v3_sd15_mm.ckpt",
        "revision": PINNED,
    }
    assert record["request"]["motion_module"] == pinned


def test_catalog_names_generate_with_a_motion_lora_and_a_vae(offline, tmp_path):
    output = tmp_path / "clip.gif"
    models = [
        "--base",
        "sd15",
        "--motion-module",
        "mm-v15-v2",
        "--motion-lora",
        "motionlora-zoom-in",
        "--vae",
        "vae-mse",
    ]
    assert generate(output, *models) == 0
    record = sidecar(output)
    assert record["family"]["name"] == "v2"
    assert [entry["id"] for entry in record["hub"]] == [
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "hf://guoyww/animatediff/mm_sd_v15_v2.ckpt",
        "stabilityai/sd-vae-ft-mse",
        "hf://guoyww/animatediff/v2_lora_ZoomIn.ckpt",
    ]


@pytest.mark.parametrize("name", [name for name, release in RELEASES.items() if release.flag == "--motion-module"])
def test_each_catalog_motion_module_is_its_release(offline, name):
    release = RELEASES[name]
    sources = Sources()
    path = sources.model("motion_module", name)
    assert path == snapshot(offline, release.reference.repo) / release.reference.path
    model = with_family(ModelSpec(base=sources.model("base", "sd15"), motion_module=path))
    assert model.family == release.family and release.family in FAMILIES


def test_a_prompt_config_names_models_by_catalog_name_and_hub_id(offline, tmp_path):
    entry = {"motion_module": "mm-v3", "prompt": ["a red circle"], "W": 32, "H": 24, "L": 3, "steps": 2, "seed": 1}
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps([entry, {**entry, "motion_module": "hf://guoyww/animatediff/v3_sd15_mm.ckpt"}]))
    base = ["--base", "stable-diffusion-v1-5/stable-diffusion-v1-5"]
    assert main(["generate", "--config", str(config), *base, "--output-dir", str(tmp_path / "o")]) == 0
    records = [json.loads(path.read_text()) for path in sorted((tmp_path / "o").glob("*.json"))]
    module = snapshot(offline, "guoyww/animatediff") / "v3_sd15_mm.ckpt"
    expected = {"path": str(module), "id": "hf://guoyww/animatediff/v3_sd15_mm.ckpt", "revision": MAIN}
    assert [record["hub"][1] for record in records] == [expected, expected]


@pytest.mark.parametrize("name", [name for name, release in RELEASES.items() if release.flag != "--motion-module"])
def test_each_other_catalog_entry_resolves_to_its_file_or_folder(offline, name):
    release = RELEASES[name]
    setting = release.flag.removeprefix("--").replace("-", "_").replace("lora", "loras")  # --motion-lora: motion_loras
    path = Sources().model(setting, name)
    expected = snapshot(offline, release.reference.repo)
    assert path == (expected if release.reference.path is None else expected / release.reference.path)
    assert path.exists()


def test_a_catalog_name_for_another_flag_is_refused_naming_its_flag(offline, capsys):
    assert generate(Path("never.gif"), "--base", "sd15", "--motion-module", "motionlora-zoom-in") == 2
    error = capsys.readouterr().err
    assert (
        "--motion-module: motionlora-zoom-in: the catalog's MotionLoRA: zoom-in; it goes with --motion-lora." in error
    )


def test_a_cache_miss_offline_is_one_paragraph_naming_the_id_and_how_to_get_it(offline, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert generate(tmp_path / "x.gif", "--base", "sd15", "--motion-module", "lightning-8") == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error and error.count("\n") == 1
    reference = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert f"--base: {reference}: not in the Hugging Face cache ({tmp_path})" in error
    assert f"animatediff models pull {reference}" in error and "HF_HUB_OFFLINE" in error
    assert not (tmp_path / "x.gif").exists()


@pytest.mark.parametrize("reference", ["hf://guoyww", "hf://guoyww/animatediff@", "hf://bad--name/repo"])
def test_a_malformed_hub_id_is_refused(offline, capsys, reference):
    assert generate(Path("never.gif"), "--base", "sd15", "--motion-module", reference) == 2
    error = capsys.readouterr().err
    assert f"--motion-module: {reference}: not" in error and "Traceback" not in error


def test_a_private_repo_without_a_token_says_to_log_in(offline, monkeypatch, capsys):
    import httpx2
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    def unauthorized(*args, **kwargs):
        response = httpx2.Response(401, request=httpx2.Request("GET", "https://huggingface.co/someone/private"))
        raise RepositoryNotFoundError("401 Client Error: Repository Not Found", response=response)

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unauthorized)
    assert generate(Path("never.gif"), "--base", "sd15", "--motion-module", "hf://someone/private/mm.ckpt") == 2
    error = capsys.readouterr().err
    assert "the Hub has no repository someone/private that this machine may read" in error
    assert "HF_TOKEN" in error and "Traceback" not in error


def test_a_path_that_exists_is_never_looked_up_on_the_hub(offline, monkeypatch, tmp_path):
    local = save_tiny_base(tmp_path / "stable-diffusion-v1-5" / "stable-diffusion-v1-5")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hub, "fetch", lambda reference: pytest.fail(f"looked up {reference}"))
    assert Sources().model("base", "stable-diffusion-v1-5/stable-diffusion-v1-5").resolve() == local.resolve()


def cached_marks(capsys) -> dict[str, str]:
    assert main(["models"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    return {row[0]: row[2] for row in rows if row and row[0] in RELEASES}


def test_models_lists_the_catalog_and_marks_what_is_cached(offline, monkeypatch, capsys, tmp_path):
    assert cached_marks(capsys) == {name: "yes" for name in RELEASES}
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert cached_marks(capsys) == {name: "-" for name in RELEASES}


def test_models_pull_names_what_is_cached_and_fails_offline_on_the_rest(offline, monkeypatch, capsys, tmp_path):
    assert main(["models", "pull", "mm-v3", "sd15"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"mm-v3: {snapshot(offline, 'guoyww/animatediff') / 'v3_sd15_mm.ckpt'}",
        f"sd15: {snapshot(offline, 'stable-diffusion-v1-5/stable-diffusion-v1-5')}",
    ]
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert main(["models", "pull", "lightning-8"]) == 2


def test_a_folder_downloads_one_copy_of_each_weight_and_only_what_loading_reads():
    sd15 = [
        "model_index.json",
        "v1-5-pruned.ckpt",
        "v1-5-pruned-emaonly.safetensors",
        "feature_extractor/preprocessor_config.json",
        "safety_checker/model.safetensors",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "text_encoder/model.fp16.safetensors",
        "text_encoder/pytorch_model.bin",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "unet/config.json",
        "unet/diffusion_pytorch_model.bin",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.non_ema.safetensors",
        "unet/diffusion_pytorch_model.fp16.bin",
        "vae/config.json",
        "vae/diffusion_pytorch_model.bin",
    ]
    assert sorted(hub.needed(sd15)) == [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.bin",
    ]
    adapter = ["README.md", "config.json", "diffusion_pytorch_model.bin", "diffusion_pytorch_model.safetensors"]
    assert hub.needed(adapter) == ["config.json", "diffusion_pytorch_model.safetensors"]


def test_bare_names_are_hub_ids_only_when_they_are_no_file_name():
    assert hub.parse("guoyww/animatediff-motion-adapter-v1-5-3@v1") == hub.HubReference(
        "guoyww/animatediff-motion-adapter-v1-5-3", None, "v1"
    )
    assert hub.parse("models/mm_sd_v15.ckpt") is None and hub.parse("mm_sd_v15.ckpt") is None
    assert hub.parse("hf://a/b/unet/config.json@refs/pr/1") == hub.HubReference("a/b", "unet/config.json", "refs/pr/1")


def test_online_a_folder_downloads_only_the_needed_files_into_the_env_cache(monkeypatch, tmp_path):
    import huggingface_hub

    asked = {}

    def snapshot_download(repo, **options):
        asked.update(options, repo=repo)
        return str(tmp_path / "models--a--b" / "snapshots" / MAIN)

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    listing = ["config.json", "diffusion_pytorch_model.bin", "diffusion_pytorch_model.safetensors"]
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", lambda self, repo, revision=None: listing)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert hub.fetch(hub.HubReference("a/b", None, "v2")) == tmp_path / "models--a--b" / "snapshots" / MAIN
    assert asked["repo"] == "a/b" and asked["revision"] == "v2" and asked["cache_dir"] == tmp_path
    assert asked["allow_patterns"] == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert asked["local_files_only"] is False


def test_serve_lists_the_models_of_a_hub_repository(offline, tmp_path):
    from animatediff.app.command import serve_options
    from animatediff.cli import build_parser
    from animatediff.errors import ConfigError

    args = build_parser().parse_args(["serve", "--models", "guoyww/animatediff", "--outputs", str(tmp_path)])
    options = serve_options(args)
    assert options.models == snapshot(offline, "guoyww/animatediff")
    from animatediff.app.catalog import scan

    listed = scan(options.models).listing()
    assert "mm_sd_v15_v2.ckpt" in listed["motion_module"] and "v2_lora_ZoomIn.ckpt" in listed["motion_lora"]
    args = build_parser().parse_args(["serve", "--models", "nobody/nothing", "--outputs", str(tmp_path)])
    with pytest.raises(ConfigError, match="nobody/nothing"):
        serve_options(args)


def test_a_hub_repositorys_listed_files_keep_their_names_and_load(offline):
    from animatediff.app.catalog import scan
    from animatediff.formats import load_motion_module

    catalog = scan(snapshot(offline, "guoyww/animatediff"))
    path = catalog.path("motion_module", "mm_sd_v15_v2.ckpt")
    assert path.name == "mm_sd_v15_v2.ckpt" and load_motion_module(path).config.mid_block
