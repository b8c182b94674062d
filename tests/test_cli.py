"""The ``gclab`` command: dispatch, and a missing optional package as one line, exit 2.

(tests/test_bare_install.py checks the same on a real bare install; here the missing package
is simulated, so these run in a second.)"""

from __future__ import annotations

import sys
import types

import pytest

from gclab import cli
from gclab._extras import EXTRA_OF, MissingExtra, require


@pytest.fixture
def fake_command(monkeypatch):
    """Register a sub-command 'fake' whose module is built by the test."""

    def install(main=None, import_error: ImportError | None = None):
        name = "gclab._fake_command"
        if import_error is not None:
            class Finder:  # importing the module raises import_error
                def find_spec(self, fullname, path=None, target=None):
                    if fullname == name:
                        raise import_error
                    return None

            monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])
        else:
            module = types.ModuleType(name)
            module.main = main
            monkeypatch.setitem(sys.modules, name, module)
        monkeypatch.setitem(cli.COMMANDS, "fake", (name, "a fake command"))

    return install


def _missing(name: str) -> ModuleNotFoundError:
    return ModuleNotFoundError(f"No module named {name!r}", name=name)


def test_usage_and_unknown_command(capsys):
    assert cli.main([]) == 2 and "commands:" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    for name in ("grade", "notebooks", "reproduce", "bench"):
        assert name in cli.usage()
    assert cli.main(["gradee"]) == 2
    assert "unknown command 'gradee'" in capsys.readouterr().err


def test_missing_optional_package_inside_a_command_is_one_line_exit_2(fake_command, capsys):
    def main(argv):
        raise _missing("nbformat")  # what `import nbformat` raises on a bare install

    fake_command(main=main)
    assert cli.main(["fake", "x.ipynb"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gclab fake: needs the Python package 'nbformat', which is not installed: "
                   'pip install "gclab[course]"'], err


def test_missing_extra_from_require_keeps_its_message(fake_command, capsys):
    def main(argv):
        require("surely_not_installed_pkg", extra="export", why="gclab fake")

    fake_command(main=main)
    assert cli.main(["fake"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("gclab fake needs the Python package 'surely_not_installed_pkg'")
    assert line.endswith('pip install "gclab[export]"')


def test_missing_package_at_import_time_still_serves_help(fake_command, capsys):
    fake_command(import_error=_missing("matplotlib"))
    assert cli.main(["fake", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: gclab fake") and 'pip install "gclab[course]"' in out
    assert cli.main(["fake", "--run"]) == 2
    assert 'pip install "gclab[course]"' in capsys.readouterr().err


def test_an_import_error_that_is_a_bug_keeps_its_traceback(fake_command):
    def main(argv):
        raise _missing("gclab.nn.typo")  # not an optional package: a bug in gclab

    fake_command(main=main)
    with pytest.raises(ModuleNotFoundError, match="typo"):
        cli.main(["fake"])


def test_every_extra_named_for_a_module_exists_in_pyproject():
    tomllib = pytest.importorskip("tomllib")
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    defined = set(pyproject["project"]["optional-dependencies"])
    assert set(EXTRA_OF.values()) <= defined, set(EXTRA_OF.values()) - defined
    assert issubclass(MissingExtra, ImportError)
