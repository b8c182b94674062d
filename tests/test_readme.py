"""The README's Python examples run as written (so the front page cannot rot)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_the_examples():
    assert len(BLOCKS) >= 4, "README lost its Python examples"


@pytest.mark.parametrize("index", [1, 2, 3], ids=["quick_start", "numpy", "your_project"])
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the project example writes ckpt.pth and model.onnx
    namespace: dict = {}
    prelude = "import torch\n"
    if index == 2:  # the NumPy example continues the quick start
        exec(prelude + BLOCKS[1], namespace)
    exec(prelude + BLOCKS[index], namespace)
    if index == 3:
        assert (tmp_path / "model.onnx").stat().st_size > 0
