"""The package's shape: no import circles, the shapes world a client of the library, release rules in the
release table only, training stages in a registry, and a command line that answers without torch."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import animatediff

PACKAGE = Path(animatediff.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every module of the package → the package's modules it imports: at the top, inside a function, or for
    type checkers alone (a type-only import is a dependency all the same)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("animatediff"):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
                imported |= {n for n in names if n in modules} or {node.module}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names if alias.name.startswith("animatediff")}
        graph[name] = {target for target in imported if target in modules and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of `graph` (each found once, from a depth-first search)."""
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                found.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


# what every part may use: the errors a user can cause, the release table, safe file writes
FOUNDATION = ("animatediff.errors", "animatediff.families", "animatediff.files")
# the top-level modules that compose the model, its conditions (`control`) and the samplers into clips
PIPELINE_LAYER = ("animatediff.pipeline", "animatediff.conditioning", "animatediff.loading", "animatediff.generation")
# the paper's model: the motion module and the video UNet it makes of an image UNet
PAPER_CORE = ("animatediff.inflation", "animatediff.motion_module")


def part(module: str) -> str:
    """The part of the package a module belongs to: the foundation; a subpackage (`control`, `sampling`, …); the
    command line; the pipeline layer; or the core library between them (the models, the motion module's and the
    SparseCtrl encoder's among them, their files and settings; `formats` is core, a module or a package)."""
    pieces = module.split(".")
    if module in FOUNDATION:
        return "foundation"
    if module in PIPELINE_LAYER:
        return "pipeline"
    if module in ("animatediff.cli", "animatediff.__main__"):
        return "animatediff.cli"
    if len(pieces) > 1 and (PACKAGE / pieces[1] / "__init__.py").is_file() and pieces[1] != "formats":
        return ".".join(pieces[:2])
    return "core"


def reachable(graph: dict[str, set[str]], module: str) -> set[str]:
    """Every module that importing `module` imports, directly or through others."""
    found, todo = set(), [module]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in found:
                found.add(target)
                todo.append(target)
    return found


def test_no_module_imports_itself_through_others():
    assert cycles(import_graph()) == []


def test_the_parts_of_the_package_depend_on_each_other_one_way():
    graph = import_graph()
    parts: dict[str, set[str]] = {}
    for module, targets in graph.items():
        parts.setdefault(part(module), set()).update(part(t) for t in targets if part(t) != part(module))
    assert cycles(parts) == []


@pytest.mark.parametrize("core", PAPER_CORE)
def test_the_paper_core_is_built_on_nothing_of_the_second_wave_the_app_or_the_command_line(core):
    later = {"control", "sparsectrl", "app", "settings", "cli"}
    imported = reachable(import_graph(), core)
    assert sorted(module for module in imported if module.partition(".")[2].split(".")[0] in later) == []


def test_the_library_is_not_built_on_the_shapes_world():
    graph = import_graph()
    users = {module for module, targets in graph.items() if any(t.startswith("animatediff.shapes") for t in targets)}
    assert {part(module) for module in users} <= {"animatediff.shapes", "animatediff.cli"}


def test_release_rules_live_in_the_release_table_only():
    rule = re.compile(r"== 24|24 if|== 32")
    found = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "families.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if rule.search(line)
    ]
    assert found == []


def test_the_trainer_names_no_stage():
    source = (PACKAGE / "training" / "trainer.py").read_text()
    from animatediff.training.stages import STAGES

    assert [name for name in STAGES if f'"{name}"' in source] == []


def test_every_stage_says_what_it_saves_and_how_it_learns():
    from animatediff.training.stages import STAGES, TrainingStage

    for name, stage in STAGES.items():
        assert issubclass(stage, TrainingStage) and stage.name == name
        assert stage.result_name and stage.save is not TrainingStage.save and stage.build is not TrainingStage.build


@pytest.mark.parametrize(
    "argv", [["--help"], ["generate", "--help"], ["generate", "--frames", "0"], ["shapes", "--help"]]
)
def test_help_and_argument_errors_load_no_model_library(argv):
    script = (
        "import sys\nfrom animatediff.cli import main\ncode = main(sys.argv[1:])\n"
        "heavy = sorted({'torch', 'diffusers', 'transformers', 'scipy'} & set(sys.modules))\n"
        "print('HEAVY', heavy, code)"
    )
    result = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, check=False)
    assert result.stdout.strip().splitlines()[-1] in ("HEAVY [] 0", "HEAVY [] 2"), result.stdout + result.stderr


def test_settings_and_requests_hold_values_and_read_no_files():
    """Reading headers and configs is the planner's job; the values it fills do no file I/O."""
    graph = import_graph()
    for name in ("animatediff.settings", "animatediff.request", "animatediff.sampling.clip"):
        source = (PACKAGE.parent / (name.replace(".", "/") + ".py")).read_text()
        assert not {"animatediff.files", "animatediff.formats", "animatediff.embedded"} & graph[name], name
        assert not re.search(r"\bopen\(|read_text|read_bytes|import yaml|safe_open", source), name


def test_the_sampling_loop_imports_nothing_of_the_front_ends():
    graph = import_graph()
    front_ends = {"animatediff.settings", "animatediff.request", "animatediff.planner", "animatediff.cli"}
    assert not front_ends & graph["animatediff.pipeline"]


def test_the_first_command_imports_no_web_app_and_no_image_processing(tmp_path):
    """`animatediff generate PROMPT -o out.gif` on the embedded default (a user's first command) runs without
    importing the web app's libraries, OpenCV, FFmpeg's bindings (a GIF needs none), diffusers' ControlNet
    registry or the package's loader of control inputs: each would add its import time to every clip."""
    unused = ["gradio", "fastapi", "uvicorn", "starlette", "cv2", "av", "diffusers.models.controlnets"]
    unused += ["animatediff.conditioning", "animatediff.control.image_prompt", "animatediff.media"]
    script = (
        "import sys\nfrom animatediff.cli import main\ncode = main(sys.argv[1:])\n"
        f"unused = sorted({set(unused)!r} & set(sys.modules))\n"
        "print('UNUSED', unused, code)"
    )
    argv = ["generate", "a red circle", "--frames", "4", "--steps", "1", "-o", str(tmp_path / "out.gif")]
    result = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, check=False)
    assert result.stdout.strip().splitlines()[-1] == "UNUSED [] 0", result.stdout + result.stderr
    assert (tmp_path / "out.gif").is_file()
