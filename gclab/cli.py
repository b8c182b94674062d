"""The ``gclab`` command: one entry point, one sub-command per tool.

    gclab grade SUBMISSION...       grade learner notebooks in a sandbox (table, CSV, feedback)
    gclab notebooks [--check]       regenerate learner/solution copies from notebooks/src
    gclab reproduce [--quick]       train and evaluate the ablation table
    gclab bench                     time and measure the blocks against mmcv (and timm)
    gclab site --out DIR            build the course as a static website (offline, no execution)

Each sub-command lives in its own module, which exposes ``main(argv) -> int``.

A bare ``pip install gclab`` has torch, numpy and tqdm only. When a sub-command needs an optional
package that is missing (``gclab._extras.MissingExtra``, or an ``ImportError`` of a module that
``gclab._extras.EXTRA_OF`` knows), the command prints one line naming the extra to install
(``pip install "gclab[course]"``) and exits with status 2, whichever sub-command it came from.
``gclab COMMAND --help`` always answers: with the module's own help when it imports, else with
the command's summary and that line (exit 0).
"""

from __future__ import annotations

import importlib
import sys
from typing import List

from gclab._extras import EXTRA_OF, MissingExtra

COMMANDS = {
    "grade": ("gclab.grading.grade", "grade learner notebooks in a sandbox (one or a class)"),
    "notebooks": ("gclab.course.notebooks",
                  "generate learner and solution copies of the notebooks"),
    "reproduce": ("gclab.experiments.reproduce", "train and evaluate the ablation table"),
    "bench": ("gclab.experiments.bench", "benchmark the blocks against mmcv and timm"),
    "site": ("gclab.course.site",
             "build the course as a static website from the executed notebooks"),
}


def usage() -> str:
    lines = ["usage: gclab COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: List[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"gclab: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0])
    except ImportError as err:
        line = missing_extra_line(name, err)
        if line is None:
            raise
        if any(a in ("-h", "--help") for a in rest):
            print(f"usage: gclab {name} [ARGS...]\n\n{COMMANDS[name][1]}.\n\n{line}")
            return 0
        print(line, file=sys.stderr)
        return 2
    try:
        return int(module.main(rest) or 0)
    except ImportError as err:
        line = missing_extra_line(name, err)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 2


def missing_extra_line(command: str, err: ImportError) -> str | None:
    """One line for an optional dependency that is missing, or None for any other ImportError
    (a bug, which keeps its traceback)."""
    if isinstance(err, MissingExtra):
        text = str(err)
        return text if text.startswith(f"gclab {command}") else f"gclab {command}: {text}"
    top = (getattr(err, "name", None) or "").split(".")[0]
    if top not in EXTRA_OF:
        return None
    return (
        f"gclab {command}: needs the Python package {top!r}, which is not installed: "
        f'pip install "gclab[{EXTRA_OF[top]}]"'
    )


if __name__ == "__main__":
    sys.exit(main())
