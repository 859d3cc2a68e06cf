"""The package's declared dependencies match its imports, optional features name their extra, and what the wheel
ships stands on its own."""

import glob
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sian import extras
from sian.cli import app

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Paths of the source repository that a user who installed the wheel does not have.
REPOSITORY_PATHS = ("checkpoints/", "benchmarks/", "tools/", "configs/", "docs/")


def run_deptry(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deptry", "--no-ansi", "src"], cwd=project, capture_output=True, text=True
    )


def test_every_import_of_the_package_is_declared_and_every_declaration_used():
    result = run_deptry(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dependency_check_fails_when_a_declared_dependency_is_removed(tmp_path):
    shutil.copytree(ROOT / "src" / "sian", tmp_path / "src" / "sian", ignore=shutil.ignore_patterns("__pycache__"))
    text = (ROOT / "pyproject.toml").read_text()
    assert '"pypng>=0.20220715",' in text  # sian.io imports it as png; no other dependency brings it
    (tmp_path / "pyproject.toml").write_text(text.replace('"pypng>=0.20220715",', ""))
    result = run_deptry(tmp_path)
    assert result.returncode != 0
    # DEP001 (not installed) or DEP003 (installed only as another package's dependency): undeclared either way.
    assert re.search(r"DEP00[13] 'png' imported but (missing|it is a transitive)", result.stderr), result.stderr


def shipped_markdown() -> list[Path]:
    """The Markdown files the wheel ships: the package-data globs of pyproject.toml, as setuptools reads them."""
    package = ROOT / "src" / "sian"
    files = {Path(p) for pattern in PYPROJECT["tool"]["setuptools"]["package-data"]["sian"]
             for p in glob.glob(str(package / pattern))}  # fmt: skip
    return sorted(p for p in files if p.suffix == ".md")


def test_the_markdown_the_wheel_ships_cites_no_repository_paths():
    cards = shipped_markdown()
    assert any(p.parent.name == "pretrained" for p in cards), "no model card found among the package data"
    offending = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in cards
                 for n, line in enumerate(p.read_text().splitlines(), 1)
                 if any(path in line for path in REPOSITORY_PATHS)]  # fmt: skip
    assert not offending, "\n".join(offending)


def test_the_test_environment_has_every_extra():
    for extra in PYPROJECT["project"]["optional-dependencies"]:
        assert extras.missing_distributions(extra) == [], extra


@pytest.fixture
def without(monkeypatch):
    """Pretend these distributions are not installed (as in a core install)."""

    def hide(*names: str) -> None:
        real = metadata.version
        hidden = {extras._normalize(n) for n in names}

        def version(name: str) -> str:
            if extras._normalize(name) in hidden:
                raise metadata.PackageNotFoundError(name)
            return real(name)

        monkeypatch.setattr(extras.metadata, "version", version)

    return hide


def test_a_missing_distribution_names_its_extra(without):
    without("matplotlib")
    assert extras.missing_distributions("explain") == ["matplotlib"]
    assert extras.missing_distributions("all") == ["matplotlib"]  # through sian-derain[...] of the extra
    assert extras.missing_distributions("serve") == []
    with pytest.raises(extras.MissingExtraError, match=r"pip install 'sian-derain\[explain\]'"):
        extras.require_extra("explain", "sian explain")


@pytest.mark.parametrize(
    ("argv", "hidden", "extra"),
    [
        (["explain", "photo.png", "-o", "out"], "matplotlib", "explain"),
        (["serve"], "fastapi", "serve"),
        (["train", "config.yaml"], "omegaconf", "train"),
        (["export", "-o", "model.onnx"], "onnxruntime", "onnx"),
        (["bench", "--size", "32x32"], "tensorboard", "train"),
    ],
)
def test_a_command_whose_extra_is_missing_says_which_to_install(without, tmp_path, monkeypatch, argv, hidden, extra):
    monkeypatch.chdir(tmp_path)
    without(hidden)
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"pip install 'sian-derain[{extra}]'" in lines[0], result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_video_input_needs_the_video_extra(without, tmp_path):
    without("av")
    (tmp_path / "clip.mp4").write_bytes(b"\0" * 16)
    result = CliRunner().invoke(app, ["derain", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "pip install 'sian-derain[video]'" in result.output
