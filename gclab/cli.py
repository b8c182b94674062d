"""The ``gclab`` command: one entry point, one sub-command per tool.

    gclab grade SUBMISSION...       grade learner notebooks in a sandbox (table, CSV, feedback)
    gclab notebooks [--check]       regenerate learner/solution copies from notebooks/src
    gclab reproduce [--quick]       train and evaluate the ablation table
    gclab bench                     time and measure the blocks against mmcv (and timm)

Each sub-command lives in its own module, which exposes ``main(argv) -> int``.
"""

from __future__ import annotations

import importlib
import sys
from typing import List

COMMANDS = {
    "grade": ("gclab.exercises.grade", "grade learner notebooks in a sandbox (one or a class)"),
    "notebooks": ("gclab.course", "generate learner and solution copies of the notebooks"),
    "reproduce": ("gclab.experiments.reproduce", "train and evaluate the ablation table"),
    "bench": ("gclab.experiments.bench", "benchmark the blocks against mmcv and timm"),
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
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
