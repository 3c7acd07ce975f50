"""`animatediff shapes`: the commands that regenerate the repository's docs run from a clone's lab/ folder,
which the installed package neither carries nor imports; elsewhere they say where to run from."""

import ast
from pathlib import Path

import animatediff
from animatediff.cli import main
from animatediff.shapes import commands

REPOSITORY = Path(__file__).parents[1]


def test_in_a_clone_the_lab_is_found_beside_the_package_source():
    assert commands.lab_folder() == REPOSITORY / "lab"
    assert commands.import_lab("report").__file__ == str(REPOSITORY / "lab" / "report.py")


def test_results_and_ablations_without_the_lab_say_to_run_from_a_clone(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(commands, "lab_folder", lambda: tmp_path / "lab")  # an installed copy: no lab/ beside it
    assert main(["shapes", "results", "--output", str(tmp_path / "results.md")]) == 2
    assert main(["shapes", "ablations", str(tmp_path / "work"), "--output", str(tmp_path / "ablations.json")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2  # one paragraph each
    for error in errors:
        assert error.startswith("animatediff shapes: error: ")
        assert "regenerate the repository's docs" in error and str(tmp_path / "lab") in error
        assert "`git clone` the repository, then `pip install -e .` inside it" in error
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_installed_package_never_imports_the_lab():
    package = Path(animatediff.__file__).parent
    importers = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name == "lab" or name.startswith("lab.") for name in names):
                importers.append(path.relative_to(package).as_posix())
    assert importers == []  # `shapes results` and `shapes ablations` import it by name, when run (import_lab)
