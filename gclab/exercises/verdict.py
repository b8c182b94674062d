"""Verdicts: one :class:`CheckItem` per check that ran and the :class:`CheckResult` a learner sees
(text and HTML)."""


import html
from dataclasses import dataclass
from typing import List, NamedTuple


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
class CheckItem(NamedTuple):
    """One check that ran: its name, whether it passed, and what it found."""

    name: str
    passed: bool
    message: str


@dataclass
class CheckResult:
    """The verdict of :func:`check`.

    ``passed`` (bool), ``status`` ("passed" | "failed" | "not implemented"), ``checks`` (every
    :class:`CheckItem` that ran), ``diagnosis`` (the name of the mistake the output matches, or
    None), ``message`` (one line), ``printed`` (characters the learner's code printed).
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
        if self.printed:
            lines.append(f"  Your code printed {self.printed} characters during the check.")
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
        if self.printed:
            parts.append(
                f"<div>Your code printed {self.printed} characters during the check.</div>"
            )
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
