"""Verdicts: one :class:`CheckItem` per check that ran and the :class:`CheckResult` a learner sees
(text and HTML)."""


import html
import sys
from dataclasses import dataclass, field
from typing import Any, List, NamedTuple


# --------------------------------------------------------------------------------------------
# Showing a verdict or a hint when it is made
# --------------------------------------------------------------------------------------------
def _shell() -> Any:
    """The running IPython shell, or None (plain Python, pytest)."""
    ipython = sys.modules.get("IPython")
    try:
        return ipython.get_ipython() if ipython is not None else None
    except Exception:  # noqa: BLE001
        return None


def _cell_token(shell: Any) -> tuple:
    """Identifies the cell now running (its execution request, or its execution count)."""
    header = getattr(shell, "parent_header", None) or {}
    msg_id = header.get("header", {}).get("msg_id") if isinstance(header, dict) else None
    return (getattr(shell, "execution_count", None), msg_id)


class ShownWhenMade:
    """Mixin for what ``check`` and ``hint`` return: in IPython the object is displayed the
    moment it is made (:meth:`show_now`), wherever its call stands in the cell, and it is not
    displayed a second time as the same cell's value; in a later cell, or with ``display()``
    there, it shows again. In plain Python nothing is displayed: ``print`` it or read its
    fields."""

    def show_now(self) -> None:
        shell = _shell()
        if shell is not None:
            self._publish(shell)

    def _ipython_display_(self) -> None:
        shell = _shell()
        if shell is not None and getattr(self, "_shown_in", None) != _cell_token(shell):
            self._publish(shell)

    def _publish(self, shell: Any) -> None:
        from IPython.display import publish_display_data

        publish_display_data({"text/plain": str(self), "text/html": self._repr_html_()})
        self._shown_in = _cell_token(shell)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
class CheckItem(NamedTuple):
    """One check that ran: its name, whether it passed, and what it found."""

    name: str
    passed: bool
    message: str


@dataclass
class CheckResult(ShownWhenMade):
    """The verdict of :func:`check`.

    ``passed`` (bool), ``status`` ("passed" | "failed" | "not implemented"), ``checks`` (every
    :class:`CheckItem` that ran), ``diagnosis`` (the name of the mistake the output matches, or
    None), ``message`` (one line), ``printed`` (characters the learner's code printed; warnings
    are not counted), ``warned`` (warnings its calls issued) with the first few in
    ``warnings``, ``changes`` (global settings its calls changed; the check put them back).
    """

    id: str
    title: str
    status: str
    checks: List[CheckItem]
    message: str
    diagnosis: str | None = None
    rtol: float = 0.0
    printed: int = 0
    printed_text: str = ""
    not_run: int = 0
    warnings: List[str] = field(default_factory=list)
    warned: int = 0
    changes: List[str] = field(default_factory=list)

    def notes(self) -> List[str]:
        """What the learner's code did besides returning: printing, warnings, global changes."""
        out = []
        if self.printed:
            out.append(f"Your code printed {self.printed} characters during the check.")
        if self.warned:
            first = self.warnings[0] if self.warnings else "?"
            n = self.warned
            out.append(f"Your code issued {n} warning{'s' if n > 1 else ''} during the check "
                       f"(not printed); the first: {first}")
        if self.changes:
            out.append("Your code changed " + "; ".join(self.changes)
                       + " while it ran; the check put it back.")
        return out

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __bool__(self) -> bool:
        return self.passed

    def summary(self) -> str:
        """One line: the verdict and how many public checks ran."""
        return f"{self.id}: {self.message}"

    def _lines(self) -> List[str]:
        mark = {"passed": "PASS", "failed": "FAIL", "not implemented": "TODO"}[self.status]
        lines = [f"[{mark}] {self.id} - {self.title}: {self.message}"]
        for c in self.checks:
            lines.append(f"  {'ok ' if c.passed else 'X  '} {c.name}: {c.message}")
        if self.not_run:
            lines.append(f"  ... {self.not_run} further check(s) not run after the first error")
        if self.diagnosis:
            lines.append(f"  Likely cause: {self.diagnosis}")
        lines.extend(f"  {note}" for note in self.notes())
        if not self.passed:
            lines.append(f'  Stuck? hint("{self.id}", level=1)  (levels 1-3)')
        return lines

    def __str__(self) -> str:
        return "\n".join(self._lines())

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colours = {
            "passed": ("#276749", "#f0fff4"),
            "failed": ("#9b2c2c", "#fff5f5"),
            "not implemented": ("#975a16", "#fffff0"),
        }
        fg, bg = colours[self.status]
        esc = html.escape
        slug = self.status.replace(" ", "-")
        items = "".join(
            f'<li style="color:{"#276749" if c.passed else "#9b2c2c"}">'
            f"{'&#10003;' if c.passed else '&#10007;'} <b>{esc(c.name)}</b>: {esc(c.message)}</li>"
            for c in self.checks
        )
        if self.not_run:
            items += f"<li>{self.not_run} further check(s) not run after the first error</li>"
        parts = [
            f'<div class="gclab-verdict gclab-verdict-{slug}" data-exercise="{esc(self.id)}" '
            f'style="border:1px solid {fg};border-left:6px solid {fg};background:{bg};'
            f'color:#1a202c;padding:6px 10px;margin:4px 0;font-family:sans-serif;font-size:90%">',
            f'<div style="color:{fg}"><b>{esc(self.status.upper())}</b> &middot; '
            f"<code>{esc(self.id)}</code> &middot; {esc(self.title)}</div>",
            f"<div>{esc(self.message)}</div>",
        ]
        if self.diagnosis:
            parts.append(f"<div><b>Likely cause:</b> {esc(self.diagnosis)}</div>")
        parts.extend(f"<div>{esc(note)}</div>" for note in self.notes())
        if items:
            open_ = "" if self.passed else " open"
            parts.append(
                f"<details{open_}><summary>checks that ran ({len(self.checks)})</summary>"
                f'<ul style="margin:2px 0">{items}</ul></details>'
            )
        if not self.passed:
            parts.append(
                f'<div style="color:#4a5568">Stuck? <code>hint("{esc(self.id)}", level=1)</code>'
                " (levels 1-3)</div>"
            )
        parts.append("</div>")
        return "".join(parts)
