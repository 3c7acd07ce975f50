"""Every command and config README.md shows runs as written, and so do those of the docs/ pages that show any.

The README's blocks, then those pages' (`DOCUMENTS`), run in order in one scratch folder: each
`animatediff` command through the program's own entry point (`animatediff.cli.main`, in this process: the
imports are paid once), each `accelerate`, `torchrun` and `python` command as a process of its own. The
files a user brings (an SD1.5 folder, a DreamBooth checkpoint, the official motion modules, LoRAs, training
videos, a CLIP model) are stood in for by tiny seeded files of the same kinds under the same names.
Commands that train or measure for hours are shrunk by flags appended to them (their step counts, data
sizes, sampling budgets), and nothing else about them changes. The commands that download from the Hugging
Face Hub run offline against a cache holding the stand-ins under the ids they name. The install and test
commands of the first screen are what `.ci/run` runs. The files the README's own commands make (a clip, two
keyframe images) are not stood in for.
"""

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from PIL import Image
from safetensors.torch import save_file

from animatediff.cli import main
from animatediff.motion_module import MotionModuleConfig
from animatediff.shapes.datasets import DatasetSpec, render_dataset
from helpers import TOKENIZER, random_motion_module, tiny_config, tiny_text_encoder, tiny_unet
from ldm_layout import to_ldm_checkpoint
from test_cameractrl import release_file
from test_control import tiny_image_encoder, tiny_ip_adapter
from test_image_models import kohya_lora
from test_lora_merges import adapter_state
from test_shapes_world import tiny_clip

pytestmark = pytest.mark.host_dtype  # the commands run as a user's would: bfloat16 where this CPU has it

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
# the docs/ pages whose code blocks are part of the guide: their blocks run after the README's, as the README's do
DOCUMENTS = [README, *((ROOT / page).read_text() for page in ("docs/reference.md",))]
CORGI = "animatediff generate a corgi running on the beach --base path/to/stable-diffusion-v1-5"
HUB_CORGI = "animatediff generate a corgi running on the beach --base"  # with a catalog name or a Hub id
SHRINK = {  # command prefix → flags appended, for the commands that train or measure at full scale
    "animatediff train": ["--steps", "1"],
    "accelerate launch -m animatediff train": ["--steps", "1"],
    "torchrun --nproc_per_node 2 -m animatediff train": ["--steps", "1"],
    "animatediff shapes retrain": ["--steps-scale", "0.002", "--data-scale", "0.002"],
    "animatediff shapes ablations": [
        "--steps-scale",
        "0.001",
        "--sampling-steps",
        "2",
        "--max-prompts",
        "1",
        "--seeds",
        "1",
    ],
    "animatediff shapes results": ["--sampling-steps", "2", "--max-prompts", "1", "--seeds", "1"],
    "animatediff shapes render": ["--count", "8"],
    # SD1.5-sized stand-ins (512×512, 25 steps): a few frames and steps say the same
    "animatediff generate an oil painting": ["--frames", "4", "--steps", "2"],
    "animatediff generate an aerial view": ["--frames", "16", "--steps", "2"],
    "animatediff generate --base path/to/stable-diffusion-v1-5 --config sparsectrl.yaml": ["--steps", "2"],
    f"{CORGI} --dreambooth": ["--frames", "4", "--steps", "2"],
    f"{CORGI} --motion-module v3_sd15_mm.ckpt --controlnet": ["--frames", "4", "--steps", "2"],
    f"{CORGI} --motion-module v3_sd15_mm.ckpt --ip-adapter": ["--frames", "4", "--steps", "2"],
    f"{CORGI} --motion-module v3_sd15_mm.ckpt --camera-ctrl": ["--frames", "4", "--steps", "2"],
    f"{CORGI} --motion-module AnimateLCM": ["--frames", "4"],  # the few-step families keep their own steps
    f"{CORGI} --motion-module animatediff_lightning": ["--frames", "4"],
    f"{HUB_CORGI} sd15": ["--frames", "4", "--steps", "2"],
    f"{HUB_CORGI} stable-diffusion-v1-5/stable-diffusion-v1-5": ["--frames", "4", "--steps", "2"],
}
INSTALLING = ("python3 -m venv", ". .venv/bin/activate", "pip install", "ruff check", "ruff format", "python -m pytest")


def blocks(language: str, documents: list[str] = DOCUMENTS) -> list[str]:
    """The `language` code blocks of `documents` (the README, then the docs pages that show commands), in order."""
    return [block for text in documents for block in re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)]


def section(title: str) -> str:
    """The README's section under the heading `## title…`, up to the next `## ` heading."""
    start = README.index(f"\n## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def commands(block: str) -> list[list[str]]:
    """The block's commands as argument lists: continued lines joined, `&&` chains split, comments dropped."""
    found = []
    for line in block.replace("\\\n", " ").splitlines():
        for part in line.split(" && "):
            words = shlex.split(part, comments=True)
            if words and not " ".join(words).startswith(INSTALLING):
                found.append(words)
    return found


def shrunk(words: list[str]) -> list[str]:
    line = " ".join(words)
    extra = next((flags for prefix, flags in SHRINK.items() if line.startswith(prefix)), [])
    return words + extra


def stand_in_base(folder: Path) -> Path:
    """An SD1.5-like diffusers folder: 512×512 frames (sample size 16, a VAE that downscales 32×)."""
    unet = UNet2DConditionModel.from_config({**tiny_unet().config, "sample_size": 16})
    unet.load_state_dict(tiny_unet().state_dict())
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(32,) * 6,
        down_block_types=("DownEncoderBlock2D",) * 6,
        up_block_types=("UpDecoderBlock2D",) * 6,
        latent_channels=4,
        norm_num_groups=32,
        layers_per_block=1,
    )
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    tiny_text_encoder().save_pretrained(folder / "text_encoder")
    (folder / "tokenizer").mkdir(parents=True)
    for file in TOKENIZER.iterdir():
        (folder / "tokenizer" / file.name).write_bytes(file.read_bytes())
    return folder


def official_motion_lora(module, seed: int) -> dict[str, torch.Tensor]:
    """An official-layout MotionLoRA (rank 2) on every attention projection of `module`."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, layer in module.named_modules():
        if isinstance(layer, torch.nn.Linear) and ".attention_blocks." in name and ".to_" in name:
            attention, projection = name.rsplit(".to_", 1)
            prefix = f"{attention}.processor.to_{projection.removesuffix('.0')}_lora"
            state[f"{prefix}.down.weight"] = torch.randn(2, layer.in_features, generator=generator) * 0.05
            state[f"{prefix}.up.weight"] = torch.randn(layer.out_features, 2, generator=generator) * 0.05
    return state


def stand_ins(folder: Path) -> None:
    """Every file the README's commands name that a user would bring, as a tiny file of its kind."""
    base = stand_in_base(folder / "path/to/stable-diffusion-v1-5")
    stand_in_base(folder / "models/stable-diffusion-v1-5")
    unet = UNet2DConditionModel.from_pretrained(base / "unet")
    vae = AutoencoderKL.from_pretrained(base / "vae")
    save_file(to_ldm_checkpoint(tiny_unet(7), vae, tiny_text_encoder(7)), folder / "toonyou_beta6.safetensors")
    save_file(kohya_lora(), folder / "style.safetensors")
    v3 = random_motion_module(tiny_config(mid_block=False), seed=1, std=0.02)
    torch.save(v3.state_dict(), folder / "v3_sd15_mm.ckpt")
    release_file(v3, 32, folder / "CameraCtrl.ckpt")  # for the stand-in base's VAE, which downscales 32×
    torch.save(
        random_motion_module(tiny_config(mid_block=True), seed=2, std=0.02).state_dict(), folder / "mm_sd_v15_v2.ckpt"
    )
    torch.save(adapter_state(unet), folder / "v3_sd15_adapter.ckpt")
    torch.save(official_motion_lora(v3, 3), folder / "v2_lora_ZoomIn.ckpt")
    torch.save(official_motion_lora(v3, 4), folder / "v2_lora_PanLeft.ckpt")
    (folder / "runs/adapter").mkdir(parents=True)
    save_file(adapter_state(unet, seed=5), folder / "runs/adapter/domain_adapter.safetensors")
    clips = DatasetSpec(kind="clips", count=4, seed=1, size=32, frames=64, layout="webvid")
    render_dataset(folder / "data", clips)  # results.csv and videos/ (16 frames 4 apart need 61 of them)
    tiny_clip(folder / "path/to/clip", TOKENIZER)
    control_stand_ins(folder, unet)
    family_stand_ins(folder)
    hub_stand_ins(folder)
    (folder / "tests").symlink_to(ROOT / "tests")  # the tiny-model recipe imports the tests' helpers
    (folder / "prompts.yaml").write_text(
        yaml.safe_dump([{"prompt": ["a red circle moving right", "a blue square"], "seed": [1, 2], "steps": 2, "L": 4}])
    )
    for config in blocks("yaml"):  # a block names its file in a first-line comment, else it is the training config
        named = re.match(r"# (\S+\.yaml)\n", config)
        path = folder / (named[1] if named else "motion.yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(config)


def control_stand_ins(folder: Path, unet: UNet2DConditionModel) -> None:
    """A canny ControlNet for the stand-in base (its VAE downscales 32×), an IP-Adapter with its image
    encoder folder, and an image."""
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16,) * 5 + (32,))
    controlnet.save_pretrained(folder / "control_v11p_sd15_canny")
    encoder, processor = tiny_image_encoder()
    encoder.save_pretrained(folder / "image_encoder")
    processor.save_pretrained(folder / "image_encoder")
    save_file(tiny_ip_adapter(unet), folder / "ip-adapter_sd15.safetensors")
    Image.fromarray(np.full((48, 64, 3), 200, np.uint8)).save(folder / "corgi.png")
    Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(folder / "painting.png")
    scribble = np.zeros((64, 64, 3), np.uint8)
    scribble[30:34] = 255
    Image.fromarray(scribble).save(folder / "scribble.png")
    sparsectrl_stand_ins(folder, unet)


def sparsectrl_stand_ins(folder: Path, unet: UNet2DConditionModel) -> None:
    """The official RGB and scribble SparseCtrl files for the stand-in base (tensors under `controlnet`)."""
    from animatediff.sparsectrl import SparseCtrlConfig, build_sparsectrl

    rgb = build_sparsectrl(unet, SparseCtrlConfig())
    torch.save({"controlnet": rgb.official_state_dict()}, folder / "v3_sd15_sparsectrl_rgb.ckpt")
    scribble = SparseCtrlConfig(latent_condition=False, conditioning_channels=3, embedding_channels=(16,) * 5 + (32,))
    torch.save(
        {"controlnet": build_sparsectrl(unet, scribble).official_state_dict()},
        folder / "v3_sd15_sparsectrl_scribble.ckpt",
    )


def family_stand_ins(folder: Path) -> None:
    """AnimateLCM's module (official keys, no position tables) and its image LoRA, and a Lightning module
    (diffusers keys, v2's mid block), under their released names."""
    from test_families import animatelcm_file, lightning_file
    from test_sdxl import SDXL_WIDTHS, save_tiny_sdxl_base

    animatelcm_file(folder)
    save_file(kohya_lora(), folder / "AnimateLCM_sd15_t2v_lora.safetensors")
    lightning_file(folder)
    save_tiny_sdxl_base(folder / "path/to/stable-diffusion-xl-base-1.0")
    config = MotionModuleConfig(block_out_channels=SDXL_WIDTHS, layers_per_block=2, mid_block=False)
    torch.save(random_motion_module(config, seed=5, std=0.02).state_dict(), folder / "mm_sdxl_v10_beta.ckpt")


def hub_stand_ins(folder: Path) -> None:
    """A Hugging Face cache (`hub-cache`, as huggingface_hub lays it out) holding the stand-ins under the ids the
    README names, for its commands that download: they run offline against it."""
    from test_hub import MAIN, commit, folder_files

    cache = folder / "hub-cache"
    sd15 = folder_files(folder / "path/to/stable-diffusion-v1-5")
    commit(cache, "stable-diffusion-v1-5/stable-diffusion-v1-5", sd15, MAIN)
    files = ("mm_sd_v15_v2.ckpt", "v3_sd15_mm.ckpt", "v2_lora_ZoomIn.ckpt")
    commit(cache, "guoyww/animatediff", {name: folder / name for name in files}, MAIN)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    stand_ins(folder)
    return folder


def run(words: list[str], folder: Path) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run(words, cwd=folder, env=environment, capture_output=True, text=True, check=False)


def test_the_first_screen_gives_the_install_and_test_commands_ci_runs():
    install, tests = blocks("bash", [README])[:2]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "animatediff generate" in install and "pip install -e ." in install
    for step in (
        "pip install torch==2.13.0",
        'pip install -e ".[test]" -c constraints.txt',
        "ruff check src tests bench lab",
        "ruff format --check src tests bench lab",
        "python -m pytest -q",
    ):
        assert step in tests and step in ci.replace("pip install -q", "pip install")


def test_the_readme_states_the_python_that_pyproject_requires():
    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = re.fullmatch(r">=\s*(\d+\.\d+)", required.strip())[1]
    stated = re.findall(r"Python ≥ (\d+\.\d+)", README)
    assert stated and set(stated) == {minimum}, (stated, required)


def test_the_keyframe_images_are_made_by_a_readme_command_before_one_reads_them(tmp_path):
    lines = [words for block in blocks("bash") for words in commands(block)]
    reading = next(i for i, words in enumerate(lines) if any(word.split(":")[-1] == "first.png" for word in words))
    for words in lines[:reading]:
        if words[0] == "python":  # the cheap ones: the generate commands before it make no images
            assert run(words, tmp_path).returncode == 0, words
    assert all(Image.open(tmp_path / name).size == (32, 32) for name in ("first.png", "last.png"))


def test_the_web_app_section_names_the_extra_it_needs():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    web = section("Web app")
    assert "app" in extras and "gradio" in " ".join(extras["app"])
    assert "pip install -e '.[app]'" in web and "pip install 'animatediff[app]'" in web


def test_the_lab_commands_say_they_run_from_a_clone():
    (lab,) = [block for block in blocks("bash", [README]) if "animatediff shapes results" in block]
    assert "animatediff shapes ablations" in lab
    around = README[README.rindex("\n## ", 0, README.index(lab)) : README.index(lab)]
    assert "from a clone" in around and "`lab/`" in around


def test_every_docs_page_with_code_blocks_is_run_with_the_readme():
    shown = {
        page.relative_to(ROOT).as_posix()
        for page in (ROOT / "docs").glob("*.md")
        if re.search(r"^```(bash|yaml|python|console)\n", page.read_text(), flags=re.M)
    }
    assert {text for text in DOCUMENTS[1:]} == {(ROOT / page).read_text() for page in shown}, shown


def serve_briefly(app, **options) -> None:
    """`animatediff serve` in the README's commands: the app answers through a test client, then returns."""
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        answer = client.get("/api/models", auth=("ann", "secret"))
        assert answer.status_code == 200 and "shapes" in answer.json()["models"]["base"], answer.text
        assert client.get("/").status_code in (200, 401)  # the page (behind its login when --auth is given)


def test_every_shrunk_prefix_is_a_readme_command():
    lines = [" ".join(words) for block in blocks("bash") for words in commands(block)]
    assert all(any(line.startswith(prefix) for line in lines) for prefix in SHRINK), [
        prefix for prefix in SHRINK if not any(line.startswith(prefix) for line in lines)
    ]


def test_every_readme_command_runs_as_written(sandbox, monkeypatch, capsys):
    import uvicorn

    monkeypatch.chdir(sandbox)
    monkeypatch.setattr(uvicorn, "run", serve_briefly)
    monkeypatch.setenv("HF_HUB_CACHE", str(sandbox / "hub-cache"))  # the commands that download read it, offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ran = []
    for block in blocks("bash"):
        for words in commands(block):
            if words[0] == "animatediff":
                code, error = main(shrunk(words)[1:]), capsys.readouterr().err
            else:
                result = run(shrunk(words), sandbox)
                code, error = result.returncode, result.stderr
            assert code == 0, f"{' '.join(words)}\n{error[-3000:]}"
            assert "Traceback" not in error, error[-3000:]
            ran.append(words[0] if words[0] != "animatediff" else " ".join(words[:2]))
    assert len(ran) >= 24 and {"animatediff train", "torchrun", "accelerate", "python"} <= set(ran)
    assert (sandbox / "corgi.mp4").is_file() and (sandbox / "mm_v2_diffusers" / "config.json").is_file()
    assert (sandbox / "src/animatediff/embedded/shapes/motion_module.safetensors").is_file()


def test_the_readme_python_example_runs_as_written(sandbox, monkeypatch):
    (python,) = blocks("python")
    monkeypatch.chdir(sandbox)
    exec(compile(python, "README.md", "exec"), {})
    assert (sandbox / "corgi.gif").is_file() and (sandbox / "corgi.gif.json").is_file()


def test_the_map_names_every_room_of_the_package():
    table = README.partition("## How it fits together")[2]
    package = ROOT / "src" / "animatediff"
    rooms = [path.name for path in package.glob("*.py") if path.stem not in ("__init__", "__main__")]
    rooms += [f"{path.name}/" for path in package.iterdir() if (path / "__init__.py").is_file()]
    assert [room for room in rooms if f"`{room}`" not in table] == []
