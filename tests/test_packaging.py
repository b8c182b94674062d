"""The project's packaging agrees with itself: pyproject.toml, constraints.txt, environment.yml,
the README's two commands and the CI entry point."""

from __future__ import annotations

import os
import re
import shlex
import stat
import sys
from pathlib import Path

import pytest
import torch
import yaml  # PyYAML, installed with mmengine (a test dependency)
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the course venv runs 3.11
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python < 3.11")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def env() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _requirements(pyproject: dict, group: str | None = None) -> dict:
    project = pyproject["project"]
    lines = project["dependencies"] if group is None else project["optional-dependencies"][group]
    reqs = [Requirement(line) for line in lines]
    return {r.name.lower(): r for r in reqs}


def _constraints() -> dict:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            pins[req.name.lower()] = req
    return pins


def _commands(path: Path) -> list:
    """The non-comment, non-empty lines of a shell script."""
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def test_top_level_layout():
    for name in ("notebooks", "gclab", "data", "tests"):
        assert (ROOT / name).is_dir(), f"missing folder {name}/"
    for name in ("environment.yml", "README.md", "pyproject.toml", ".ci/run"):
        assert (ROOT / name).is_file(), f"missing file {name}"


def test_torch_is_a_range_without_upper_pin(pyproject):
    torch_req = _requirements(pyproject)["torch"]
    spec = torch_req.specifier
    assert str(spec) == ">=2.1"
    assert all(s.operator in (">=", ">") for s in spec), f"upper bound or pin in {spec}"
    for ok in ("2.1", "2.1.0", "2.5.1", "2.13.0", "3.0"):
        assert spec.contains(ok), ok
    assert not spec.contains("2.0.1")


def test_constraints_pin_torch_2_13_0(pyproject):
    pins = _constraints()
    pin = pins["torch"]
    assert str(pin.specifier) == "==2.13.0"
    # the pin must lie inside what the package accepts
    assert _requirements(pyproject)["torch"].specifier.contains("2.13.0")
    for name, req in pins.items():
        assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", name


def test_the_installed_torch_is_the_pinned_one():
    """On the course machine the install resolved torch to the pinned CPU wheel."""
    installed = Version(torch.__version__).base_version
    assert installed == "2.13.0", f"constraints.txt pins 2.13.0, this venv has {torch.__version__}"


def test_environment_yml_name_python_pip(env):
    assert env["name"] == "gclab"
    deps = env["dependencies"]
    strings = [d for d in deps if isinstance(d, str)]
    assert "pip" in [re.split(r"[=<>]", s)[0] for s in strings]
    pythons = [s for s in strings if re.match(r"python\s*[=<>]", s) or s == "python"]
    assert len(pythons) == 1, f"environment.yml should name python once, got {pythons}"


def test_environment_python_satisfies_requires_python(env, pyproject):
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    (python,) = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    match = re.fullmatch(r"python\s*=+\s*([0-9.]+)\*?", python)
    assert match, f"pin python to a version in environment.yml, got {python!r}"
    assert requires.contains(match.group(1)), f"{python} vs requires-python {requires}"
    # and the interpreter running these tests satisfies it too
    assert requires.contains(".".join(map(str, sys.version_info[:3])))


def test_environment_pip_section_installs_the_project_with_constraints(env, pyproject):
    sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "environment.yml needs one pip: section"
    args = [a for line in sections[0] for a in shlex.split(line)]
    # -c constraints.txt (or --constraint / -c=...), pointing at the real file
    constraint_files = [
        args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-c", "--constraint")
    ] + [a.split("=", 1)[1] for a in args if a.startswith(("-c=", "--constraint="))]
    assert constraint_files == ["constraints.txt"], args
    assert (ROOT / constraint_files[0]).is_file()
    # the project itself: "." or "-e .", with extras that pyproject defines
    targets = [a for a in args if re.fullmatch(r"\.(\[[\w,\s-]+\])?", a)]
    assert len(targets) == 1, f"no install of the project ('.' or '-e .[...]') in {args}"
    extras = re.findall(r"[\w-]+", targets[0][1:])
    defined = set(pyproject["project"].get("optional-dependencies", {}))
    assert set(extras) <= defined, f"extras {extras} not all in pyproject's {sorted(defined)}"


def test_setup_script_installs_with_the_same_constraints():
    setup = " ".join(_commands(ROOT / "scripts" / "setup.sh"))
    assert re.search(r"pip install .*-c constraints\.txt", setup)


def test_parity_dependencies_are_test_extras(pyproject):
    """The mmcv parity tests run in CI, never skipped: mmcv-lite must be installed by it."""
    test_deps = _requirements(pyproject, "test")
    for name in ("mmcv-lite", "mmengine", "hypothesis", "pytest"):
        assert name in test_deps, f"{name} missing from the test extra"
    dev = pyproject["project"]["optional-dependencies"]["dev"]
    assert any("test" in Requirement(d).extras for d in dev)


def test_ci_runs_the_readme_test_command():
    run = ROOT / ".ci" / "run"
    assert run.stat().st_mode & stat.S_IXUSR, ".ci/run must be executable"
    shebang = run.read_text().splitlines()[0]
    assert shebang.startswith("#!") and "bash" in shebang
    lines = _commands(run)
    assert any(re.match(r"set -[a-z]*e", line) for line in lines), ".ci/run must stop on failure"
    assert any(re.fullmatch(r"(exec )?bash scripts/test\.sh( \"\$@\")?", line) for line in lines)


def test_test_script_fails_on_failure_and_runs_pytest():
    lines = _commands(ROOT / "scripts" / "test.sh")
    assert any(re.match(r"set -[a-z]*e", line) for line in lines)
    assert any("pytest" in line and "tests" in line for line in lines)
    assert any("ruff check" in line for line in lines)


def test_readme_shows_both_commands():
    readme = (ROOT / "README.md").read_text()
    blocks = "\n".join(re.findall(r"```(?:bash|sh|shell|console)?\n(.*?)```", readme, re.S))
    for command in ("bash scripts/course.sh", "bash scripts/test.sh"):
        assert command in blocks, f"README should show `{command}` in a code block"
        script = ROOT / command.split()[1]
        assert script.is_file() and os.access(script, os.X_OK)
