"""``gclab site``: the course as a static website, built offline from the committed notebooks.

The site is made with Sphinx and MyST-NB (``docs/course.md`` says why): lessons 0-8 are the
executed solution copies ``notebooks/solutions/NN_*.ipynb``, rendered with their committed
outputs (nothing is executed); the pages of ``docs/`` are the reference; ``README.md`` is the
landing page. Every exercise cell shows the learner copy's stub as the exercise, with the
solution folded under "Show the solution" (``--no-solutions``: left out), and the verdict below
it as JupyterLab shows it. An ipywidgets output, which needs a live kernel, is replaced by its
static fallback: the values of its controls and what its output area showed when the notebook
was executed (kept in the notebook's widget state). MathJax 3 comes from the
``django-static-mathjax`` package (MathJax's official build as plain files, no Django code) and
is copied into the site, so the site needs no network.

    gclab site --out DIR [--no-solutions]

prints a line per page and ``DIR/index.html`` at the end.
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence

from gclab._extras import require
from gclab.course.copies import lessons
from gclab.paths import ROOT

__all__ = ["build_site", "lesson_page", "main", "stage", "widget_fallback"]

_EXERCISE = re.compile(r"exercise ([A-Za-z_]\w*\.[\w.]+)")
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

CONF = '''\
# Sphinx configuration of the gclab course site, written by `gclab site`.
project = "gclab"
html_title = "gclab: global-context attention, built from scratch"
extensions = ["myst_nb"]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
nb_execution_mode = "off"
nb_merge_streams = True
html_theme = "furo"
html_static_path = ["_static"]
html_css_files = ["gclab-site.css"]
html_favicon = "_static/favicon.svg"
exclude_patterns = ["notebooks/learner", ".doctrees"]
# MathJax 3 (its official es5 build, as the django-static-mathjax package ships it), copied
# under _static: no CDN. SVG output draws glyphs from its own font data: no web font to fetch.
mathjax_path = "mathjax/tex-svg.js"
suppress_warnings = ["myst.header", "myst.xref_missing", "misc.highlighting_failure",
                     "toc.not_included", "mystnb.unknown_mime_type"]
html_show_sourcelink = False
html_copy_source = False

def setup(app):
    seen = []

    def progress(app, doctree):
        seen.append(app.env.docname)
        total = len(app.env.found_docs)
        print(f"[gclab site] page {{len(seen)}}/{{total}}: {{app.env.docname}}", flush=True)

    app.connect("doctree-read", progress)
'''

FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
           '<circle cx="8" cy="8" r="7" fill="#2b6cb0"/></svg>\n')

CSS = """\
.gclab-exercise { border-left: 4px solid #2b6cb0; }
.gclab-widget-fallback { color: #4a5568; font-style: italic; }
"""


# --------------------------------------------------------------------------------------------
# Lessons
# --------------------------------------------------------------------------------------------
def widget_fallback(view: dict, state: Dict[str, dict]) -> List[dict]:
    """The static fallback of one widget output: a line with the values of its controls (and
    the text of its HTML children, e.g. a progress bar's), then the outputs its output areas
    held when the notebook was executed. ``view`` is the output's widget-view data (with
    ``model_id``), ``state`` the notebook's widget state (model id -> model)."""
    controls: List[str] = []
    texts: List[str] = []
    outputs: List[dict] = []
    seen = set()

    def walk(ref: str) -> None:
        model_id = ref[len("IPY_MODEL_"):] if ref.startswith("IPY_MODEL_") else ref
        if model_id in seen or model_id not in state:
            return
        seen.add(model_id)
        model = state[model_id].get("state", {})
        name = state[model_id].get("model_name", "")
        if name == "OutputModel":
            outputs.extend(model.get("outputs", []))
        elif name == "HTMLModel" and model.get("value"):
            texts.append(str(model["value"]))
        elif "value" in model and model.get("description"):
            controls.append(f"{model['description']} = {model['value']}")
        for child in model.get("children", []):
            walk(child)

    walk(str(view.get("model_id", "")))
    if controls:
        note = ("Interactive in Jupyter (the controls do not move on this page); shown at "
                + ", ".join(html.escape(c) for c in controls) + ".")
    elif texts:
        note = " ".join(re.sub(r"<[^>]*>", "", t) for t in texts)
        note = html.escape(html.unescape(note))
    else:
        note = "An interactive widget: run the notebook in Jupyter to see it."
    head = {"output_type": "display_data", "metadata": {},
            "data": {"text/html": f'<p class="gclab-widget-fallback">{note}</p>',
                     "text/plain": note}}
    return [head, *outputs]


def _static_outputs(nb) -> None:
    """Replace every widget output by its static fallback; drop the widget state (a page that
    carries it would load the widget manager from a CDN)."""
    import nbformat

    state = nb.metadata.get("widgets", {}).get(_WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        new = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if _WIDGET_VIEW in data:
                new.extend(nbformat.from_dict(o) for o in widget_fallback(data[_WIDGET_VIEW],
                                                                          state))
            else:
                new.append(out)
        cell.outputs = new
    nb.metadata.pop("widgets", None)


def _fence(code: str) -> str:
    ticks = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", code)), default=0))
    return f"{ticks}python\n{code}\n{ticks}"


def lesson_page(solution, learner, name: str, solutions: bool = True):
    """The page of one lesson: the executed solution copy, in which each exercise cell (one
    whose learner copy differs) is preceded by the learner's stub, shown as the exercise, and
    its solution is folded (``solutions=False``: removed; its outputs stay). The text is the
    learner copy's, so worked derivations stay folded (``<details>``) as in JupyterLab."""
    import nbformat

    if len(solution.cells) != len(learner.cells):
        raise ValueError(f"{name}: the learner copy has {len(learner.cells)} cells and the "
                         f"solution copy {len(solution.cells)}: run python -m gclab notebooks")
    page = nbformat.v4.new_notebook(metadata=solution.metadata)
    run = (f"*Run this lesson:* download the learner copy {{download}}`{name}.ipynb "
           f"<learner/{name}.ipynb>` and open it in JupyterLab (`bash scripts/course.sh` "
           "sets everything up; see the landing page). This page shows the solution copy, "
           "executed.")
    page.cells.append(nbformat.v4.new_markdown_cell(run))
    for sol, lea in zip(solution.cells, learner.cells):
        if sol.cell_type == "markdown":  # the learner's text: worked derivations folded
            page.cells.append(lea)
            continue
        if sol.cell_type != "code" or sol.source == lea.source:
            page.cells.append(sol)
            continue
        ids = list(dict.fromkeys(_EXERCISE.findall(lea.source)))
        title = ", ".join(f"`{i}`" for i in ids) or "in this cell"
        page.cells.append(nbformat.v4.new_markdown_cell(
            f":::{{admonition}} Exercise {title}\n:class: gclab-exercise\n"
            f"{_fence(lea.source)}\n:::"))
        tags = [t for t in sol.metadata.get("tags", []) if t not in ("hide-input",)]
        sol.metadata["tags"] = tags + (["hide-input"] if solutions else ["remove-input"])
        sol.metadata["mystnb"] = {"code_prompt_show": "Show the solution",
                                  "code_prompt_hide": "Hide the solution"}
        page.cells.append(sol)
    _static_outputs(page)
    return page


# --------------------------------------------------------------------------------------------
# Staging: the Sphinx source folder
# --------------------------------------------------------------------------------------------
def _copy_mathjax(dest: Path) -> None:
    """Copy MathJax 3's es5 build (``tex-svg.js`` and the components it loads) to ``dest``."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")  # django-static-mathjax; not imported
    es5 = Path(spec.origin).parent / "static" / "mathjax" / "es5" if spec and spec.origin else None
    if es5 is None or not (es5 / "tex-svg.js").is_file():
        raise FileNotFoundError(
            "gclab site needs MathJax from the Python package 'django-static-mathjax', which is "
            'not installed: pip install "gclab[site]"')
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(es5 / "tex-svg.js", dest / "tex-svg.js")
    for folder in ("a11y", "adaptors", "input", "output", "sre", "ui"):
        shutil.copytree(es5 / folder, dest / folder, dirs_exist_ok=True)


def _copy_linked_files(text: str, page_dir: Path, src: Path, root: Path) -> None:
    """Copy each repository file that a markdown page links by a relative path into the
    staging tree at the same place, so the link resolves in the site too."""
    for target in re.findall(r"\]\(([^)#\s]+)", text):
        if "://" in target or target.startswith(("/", "mailto:")):
            continue
        file = (root / page_dir / target).resolve()
        if file.is_file() and root in file.parents:
            dest = src / file.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                shutil.copy2(file, dest)


def _index(readme: str, lesson_names: Sequence[str], doc_names: Sequence[str]) -> str:
    lessons_toc = "\n".join(f"notebooks/{n}" for n in lesson_names)
    docs_toc = "\n".join(f"docs/{n}" for n in doc_names)
    return (f"{readme.rstrip()}\n\n```{{toctree}}\n:caption: Lessons\n:maxdepth: 1\n\n"
            f"{lessons_toc}\n```\n\n```{{toctree}}\n:caption: Reference\n:maxdepth: 1\n\n"
            f"{docs_toc}\n```\n")


def stage(src: Path, root: Path = ROOT, solutions: bool = True, log=print) -> List[str]:
    """Write the Sphinx source folder ``src`` (pages, conf.py, MathJax); returns the pages."""
    import nbformat

    src = Path(src)
    (src / "notebooks" / "learner").mkdir(parents=True, exist_ok=True)
    names = []
    for lesson in lessons(root):
        if not lesson.solution.exists() or not lesson.learner.exists():
            raise FileNotFoundError(f"{lesson.name}: a committed copy is missing "
                                    "(python -m gclab notebooks --execute)")
        solution = nbformat.read(str(lesson.solution), as_version=4)
        learner = nbformat.read(str(lesson.learner), as_version=4)
        page = lesson_page(solution, learner, lesson.name, solutions=solutions)
        nbformat.write(page, str(src / "notebooks" / f"{lesson.name}.ipynb"))
        shutil.copy2(lesson.learner, src / "notebooks" / "learner" / lesson.learner.name)
        names.append(lesson.name)
    docs = sorted(p for p in (root / "docs").glob("*.md"))
    (src / "docs").mkdir(exist_ok=True)
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        (src / "docs" / doc.name).write_text(text, encoding="utf-8")
        _copy_linked_files(text, Path("docs"), src, root)
    readme = (root / "README.md").read_text(encoding="utf-8")
    _copy_linked_files(readme, Path("."), src, root)
    (src / "index.md").write_text(_index(readme, names, [d.stem for d in docs]),
                                  encoding="utf-8")
    static = src / "_static"
    static.mkdir(exist_ok=True)
    _copy_mathjax(static / "mathjax")
    (static / "gclab-site.css").write_text(CSS, encoding="utf-8")
    (static / "favicon.svg").write_text(FAVICON, encoding="utf-8")
    pages = ["index", *(f"notebooks/{n}" for n in names), *(f"docs/{d.stem}" for d in docs)]
    (src / "conf.py").write_text(CONF.format(), encoding="utf-8")
    log(f"[gclab site] staged {len(names)} lessons and {len(docs)} reference pages")
    return pages


def build_site(out: Path, root: Path = ROOT, solutions: bool = True, log=print) -> Path:
    """Build the site into ``out`` (created or refreshed); returns ``out/index.html``."""
    require("sphinx", extra="site", why="gclab site")
    require("myst_nb", extra="site", why="gclab site")
    require("furo", extra="site", why="gclab site")
    from sphinx.cmd.build import build_main

    out = Path(out).resolve()
    if out.is_dir() and any(out.iterdir()):
        if not (out / ".buildinfo").exists():
            raise ValueError(f"{out} is not empty and holds no earlier site (no .buildinfo): "
                             "give an empty or new folder")
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory(prefix="gclab-site-") as tmp:
        src = Path(tmp) / "src"
        stage(src, Path(root), solutions=solutions, log=log)
        # built beside the sources (MyST-NB writes a jupyter_execute folder next to its
        # output folder), then moved to ``out``
        html_dir = Path(tmp) / "build" / "html"
        status = build_main(["-b", "html", "-q", "-j", "1", "-d", str(Path(tmp) / "doctrees"),
                             str(src), str(html_dir)])
        if status != 0:
            raise RuntimeError(f"sphinx-build exited with status {status} (its messages above)")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(html_dir), str(out))
    index = out / "index.html"
    if not index.exists():
        raise RuntimeError(f"sphinx-build wrote no {index}")
    return index


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gclab site``."""
    parser = argparse.ArgumentParser(
        prog="gclab site",
        description="build the course as a static website from the committed notebooks "
        "(offline, nothing is executed)")
    parser.add_argument("--out", type=Path, default=Path("_site"),
                        help="output folder (default: ./_site; not committed)")
    parser.add_argument("--no-solutions", action="store_true",
                        help="leave the solutions out (a learner build); verdicts stay")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.out.exists() and not args.out.is_dir():
        print(f"[gclab site] --out {args.out}: expected a folder, got a file", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        index = build_site(args.out, args.root.resolve(), solutions=not args.no_solutions)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"[gclab site] {exc}", file=sys.stderr)
        return 1
    print(f"[gclab site] built in {time.perf_counter() - start:.1f} s: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
