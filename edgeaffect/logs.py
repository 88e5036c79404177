"""Console output that reads well both on a terminal and in a log file (CI, ``cmd > log 2>&1``).

On a terminal rich draws live bars and wraps to the window. Elsewhere rich would wrap every line at 80
columns and print a bar once, at the end, cut to fit (``0:0… 0:00:…``). :func:`make_console` gives a console
that never wraps a line there, and :func:`make_progress` a bar that becomes plain lines (each 10 % of a task,
at least every ``every_s`` seconds, and at its end), so a log shows that long work runs and how far it got.
"""
from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

LOG_WIDTH = 200
"""Columns tables are laid out in when the output is not a terminal (lines themselves are never wrapped)."""


def make_console(stderr: bool = True):
    """Rich's console on a terminal; elsewhere one that never wraps a line and lays tables out LOG_WIDTH wide."""
    from rich.console import Console

    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=LOG_WIDTH, soft_wrap=True)


def make_progress(console, label: str, *columns, every_s: float = 30.0, min_gap_s: float = 0.0, **kwargs):
    """A rich ``Progress(*columns, console=console, **kwargs)`` on a terminal, :class:`PlainProgress` elsewhere.

    ``label`` starts each plain line; a task added with ``log=False`` is left out of the log (e.g. a total that
    the caller already prints a line for); ``min_gap_s`` spaces the 10 % lines of quick tasks.
    """
    from rich import get_console
    from rich.progress import Progress

    console = console or get_console()
    if console.is_terminal:
        return Progress(*columns, console=console, **kwargs)
    return PlainProgress(console, label, disable=kwargs.get("disable", False), every_s=every_s, min_gap_s=min_gap_s)


@dataclass
class _Task:
    id: int
    description: str
    total: float | None
    completed: float = 0
    fields: dict[str, Any] = field(default_factory=dict)
    t0: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)
    step: int = 1          # the next tenth of the total a line is due at
    lines: int = 0
    ended: bool = False


class PlainProgress:
    """The part of rich's ``Progress`` our commands use, printing plain unwrapped lines instead of a live bar."""

    def __init__(self, console, label: str, disable: bool = False, every_s: float = 30.0, min_gap_s: float = 0.0):
        self.console, self.label, self.disable = console, label, disable
        self.every_s, self.min_gap_s = every_s, min_gap_s
        self._tasks: dict[int, _Task] = {}
        self._next_id = 0

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Nothing to draw: lines are printed as tasks advance."""

    def stop(self) -> None:
        """Nothing to clear: the lines stay in the log."""

    @property
    def tasks(self) -> list[_Task]:
        return list(self._tasks.values())

    def add_task(self, description: str, start: bool = True, total: float | None = 100.0, completed: float = 0,
                 visible: bool = True, **fields: Any) -> int:
        task = _Task(self._next_id, description, total, completed, fields)
        task.fields.setdefault("log", visible)
        self._tasks[task.id] = task
        self._next_id += 1
        return task.id

    def remove_task(self, task_id: int) -> None:
        self._tasks.pop(task_id, None)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, **fields: Any) -> None:
        task = self._tasks[task_id]
        if total is not None:
            task.total = total
        if description is not None:
            task.description = description
        task.fields.update({k: v for k, v in fields.items() if k not in ("visible", "refresh")})
        if completed is not None:
            task.completed = completed
        if advance:
            task.completed += advance
        if completed is not None or advance:
            self._maybe_say(task)

    def _maybe_say(self, task: _Task) -> None:
        """A line at each tenth of the total (``min_gap_s`` apart), every ``every_s`` seconds, and at the end."""
        now = time.monotonic()
        total = task.total or 0
        if total and task.completed >= total:
            due = not task.ended and (task.lines or now - task.t0 >= self.min_gap_s)
            task.ended = True
        elif total and task.completed >= task.step * total / 10 and now - task.last >= self.min_gap_s:
            due = True
        else:
            due = now - task.last >= self.every_s
        if total:
            task.step = max(task.step, int(task.completed * 10 // total) + 1)
        if due:
            self._say(task, now)

    def _say(self, task: _Task, now: float) -> None:
        task.last, task.lines = now, task.lines + 1
        if self.disable or not task.fields.get("log", True) or self.console is None:
            return
        done = f"{task.completed:g}" + (f"/{task.total:g}" if task.total else "")
        extra = "  ".join(str(v) for k, v in task.fields.items() if k != "log" and isinstance(v, str) and v)
        head = f"{self.label} {task.description}" if task.description and task.description != self.label else self.label
        self.console.print(f"{head}: {done}" + (f"  {extra}" if extra else "") + f"  ({now - task.t0:.0f} s)",
                           markup=False, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def quiet():
    """Silence exporter and converter chatter (progress lines, deprecation warnings) on stdout."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        log.setLevel(level)
