"""The builder's two errors: a build that failed, and a notebook that raised."""
from __future__ import annotations

from pathlib import Path

__all__ = ["BookError", "NotebookError"]


class BookError(Exception):
    """The book could not be built (not bad user input: that is :class:`~rramlib.core.errors.RramlibError`)."""

    exit_code = 1

    @property
    def message(self) -> str:
        return f"error: {self}"


class NotebookError(BookError):
    """A notebook raised while executing. ``exit_code`` is 2 (and the message is the command
    line's ``error: ...``) when the notebook raised :class:`RramlibError`, i.e. for bad input."""

    def __init__(self, notebook: str, ename: str, evalue: str, cell: int | None = None,
                 traceback: str = "", executed: Path | None = None):
        self.notebook, self.ename, self.evalue, self.cell = notebook, ename, evalue, cell
        self.traceback, self.executed = traceback, executed
        super().__init__(f"notebook {notebook} failed" + (f" at In [{cell}]" if cell is not None else "")
                         + f": {ename}: {evalue}")

    def __reduce__(self):  # crosses process boundaries intact (builds that run notebooks side by side)
        return type(self), (self.notebook, self.ename, self.evalue, self.cell, self.traceback, self.executed)

    @property
    def bad_input(self) -> bool:
        return self.ename.split(".")[-1] == "RramlibError"

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return 2 if self.bad_input else 1

    @property
    def message(self) -> str:
        if self.bad_input:
            return f"error: {self.evalue}"
        lines = [f"error: {self}"]
        tail = [line for line in self.traceback.splitlines() if line.strip()][-12:]
        if tail:
            lines += ["  traceback (last lines):"] + [f"    {line}" for line in tail]
        if self.executed is not None:
            lines.append(f"  the executed notebook with the full traceback: {self.executed}")
        return "\n".join(lines)
