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


def _closure(pyproject: dict, extras: set) -> dict:
    """Every requirement that ``pip install "gclab[extras]"`` installs directly (base + extras,
    following gclab's own ``gclab[...]`` references), by normalised name."""
    groups = pyproject["project"]["optional-dependencies"]
    reqs = {r.name.lower(): r for r in map(Requirement, pyproject["project"]["dependencies"])}
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        assert extra in groups, f"extra {extra!r} is not defined in pyproject.toml"
        seen.add(extra)
        for line in groups[extra]:
            req = Requirement(line)
            if req.name == "gclab":
                todo += sorted(req.extras)
            else:
                reqs[req.name.lower()] = req
    return reqs


def test_parity_dependencies_are_test_extras(pyproject):
    """The mmcv parity and export tests run in CI, never skipped: the test extra installs them."""
    test_deps = _closure(pyproject, {"test"})
    for name in ("mmcv-lite", "mmengine", "hypothesis", "pytest", "onnxruntime", "onnxscript"):
        assert name in test_deps, f"{name} missing from the test extra"
    assert set(_closure(pyproject, {"dev"})) == set(_closure(pyproject, {"course", "test", "site"}))


def test_export_extra_brings_what_onnx_export_needs(pyproject):
    assert {"onnx", "onnxscript", "onnxruntime"} <= set(_closure(pyproject, {"export"}))


# import name -> distribution name, where they differ
DIST_OF = {"sklearn": "scikit-learn", "mmcv": "mmcv-lite", "yaml": "pyyaml", "IPython": "ipython"}
# imported inside try/except ImportError with a fallback, on purpose not declared
UNDECLARED_OK = {"timm": "gclab bench compares with timm when present; it cannot be installed "
                         "beside the CPU torch here, so bench falls back to a timm-style SE"}
# modules a bare install imports (the README quick start, gclab.nn, gclab.numpy, the CLI)
BARE_MODULES = ("gclab/__init__.py", "gclab/cli.py", "gclab/_extras.py", "gclab/vocab.py",
                "gclab/nn", "gclab/numpy", "gclab/experiments/models")


def _third_party_imports(path: Path):
    """(top-level name, line, at module level?, inside a try that catches ImportError?)"""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded, top_level = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            names = set()
            for h in node.handlers:
                t = h.type
                for e in (t.elts if isinstance(t, ast.Tuple) else [t]):
                    names.add(getattr(e, "id", None))
            if names & {"ImportError", "ModuleNotFoundError", "Exception", None}:
                guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    for stmt in tree.body:
        top_level |= {id(n) for n in ast.walk(stmt)
                      if not isinstance(stmt, (ast.FunctionDef, ast.ClassDef))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods = [node.module]
        else:
            continue
        for mod in mods:
            top = mod.split(".")[0]
            if top != "gclab" and top not in sys.stdlib_module_names and top != "__future__":
                yield top, node.lineno, id(node) in top_level, id(node) in guarded


def test_every_third_party_import_of_gclab_is_declared(pyproject):
    """Scan gclab/ with ast: each import is in the base dependencies or in the extra that
    gclab._extras.EXTRA_OF names for it (which is what a missing-package message tells the
    user to install); a bare install's modules import only the base dependencies at load."""
    from gclab._extras import EXTRA_OF

    base = set(_closure(pyproject, set()))
    files = sorted((ROOT / "gclab").rglob("*.py"))
    assert len(files) > 20
    problems = []
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        bare = any(rel == m or rel.startswith(m + "/") for m in BARE_MODULES)
        for top, line, at_load, guarded in _third_party_imports(path):
            dist = DIST_OF.get(top, top).lower()
            where = f"{rel}:{line} imports {top}"
            if dist in base:
                continue
            if top in UNDECLARED_OK and guarded:
                continue
            if top not in EXTRA_OF:
                problems.append(f"{where}: not a base dependency and not in _extras.EXTRA_OF")
            elif dist not in _closure(pyproject, {EXTRA_OF[top]}):
                problems.append(f"{where}: the {EXTRA_OF[top]!r} extra does not install {dist}")
            if bare and at_load and not guarded:
                problems.append(f"{where} at import time, but a bare install lacks it")
    assert not problems, "\n".join(problems)


def test_import_scan_sees_what_it_must(tmp_path):
    """The scan above finds a guarded import, a lazy one and a module-level one."""
    src = tmp_path / "m.py"
    src.write_text("import numpy\ntry:\n    import timm\nexcept ImportError:\n    timm = None\n"
                   "def f():\n    from scipy import stats\n    import os\n")
    found = {(t, at, g) for t, _, at, g in _third_party_imports(src)}
    assert found == {("numpy", True, False), ("timm", True, True), ("scipy", False, False)}


def test_package_data_matches_real_files(pyproject):
    """Every package-data pattern matches a file, and the non-Python files in gclab/ are
    covered (a pattern that matches nothing ships nothing and hides a missing file)."""
    patterns = pyproject["tool"]["setuptools"]["package-data"]["gclab"]
    pkg = ROOT / "gclab"
    for pattern in patterns:
        assert list(pkg.glob(pattern)), f"package-data pattern {pattern!r} matches no file"
    tracked = {p.relative_to(pkg).as_posix() for p in pkg.rglob("*")
               if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    covered = {p.relative_to(pkg).as_posix() for pat in patterns for p in pkg.glob(pat)}
    assert tracked <= covered, f"files in gclab/ not shipped: {sorted(tracked - covered)}"


def test_license_file_is_mit_and_matches_the_metadata(pyproject):
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "gclab authors" in text and "2026" in text
    assert "MIT" in str(pyproject["project"]["license"])


def _setup_dry_run(tmp_path: Path, *args: str, **env: str):
    """Run scripts/setup.sh with GCLAB_DRY_RUN=1 in a scratch copy (no .venv there)."""
    import shutil
    import subprocess

    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    for name in ("pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    return subprocess.run(
        ["bash", "scripts/setup.sh", *args], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "GCLAB_DRY_RUN": "1", **env}, timeout=60,
    )


def _pip_lines(out: str) -> list:
    return [shlex.split(line) for line in out.splitlines() if " -m pip install " in line]


def test_setup_installs_course_by_default_and_dev_for_tests(tmp_path):
    proc = _setup_dry_run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    (pip,) = _pip_lines(proc.stdout)  # one install; no index flags: this machine's pip set-up
    assert pip[-1] == ".[course]" and pip[pip.index("-c") + 1] == "constraints.txt"
    assert not any(a.startswith(("--index-url", "--extra-index-url")) for a in pip)
    assert "1/3" in proc.stdout and "2/3" in proc.stdout  # a line per step
    lines = _commands(ROOT / "scripts" / "course.sh") + _commands(ROOT / "scripts" / "test.sh")
    assert "bash scripts/setup.sh course" in lines and "bash scripts/setup.sh dev" in lines


def test_setup_torch_cpu_option_takes_torch_from_the_cpu_index(tmp_path):
    proc = _setup_dry_run(tmp_path, "dev", GCLAB_TORCH="cpu")
    assert proc.returncode == 0, proc.stderr
    torch_pip, main_pip = _pip_lines(proc.stdout)
    # torch alone from PyTorch's CPU-only index, under the same pin; then the rest as usual
    assert torch_pip[torch_pip.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    assert torch_pip[-1] == "torch" and "constraints.txt" in torch_pip
    assert main_pip[-1] == ".[dev]" and "--index-url" not in main_pip


@pytest.mark.parametrize("args,env,expected", [
    (("everything",), {}, "expected 'course' or 'dev', got 'everything'"),
    ((), {"GCLAB_TORCH": "cuda"}, "GCLAB_TORCH: expected 'cpu' (or unset), got 'cuda'"),
])
def test_setup_rejects_bad_input_saying_what_it_expected(tmp_path, args, env, expected):
    proc = _setup_dry_run(tmp_path, *args, **env)
    assert proc.returncode == 2 and expected in proc.stderr, (proc.stdout, proc.stderr)


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
