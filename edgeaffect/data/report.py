"""How every reader reports: one console line per split (counts and the first few files), every problem
in the manifest, and progress that a log file can read.

Readers collect problems as lines that start with the file they are about (``path:line: what``, or
``path: what``); :func:`summary` turns a split's lines into one console line and :func:`record` into the
manifest's entry.  :func:`progress` draws a bar on a terminal and prints plain lines otherwise (a
transient bar leaves nothing in a log).
"""
from __future__ import annotations

import contextlib
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ..logs import make_progress

FIRST = 3          # files named on the console per split; the manifest keeps them all


def where(line: str) -> str:
    """The file name (and line) a problem line is about: ``/a/b/v.txt:3: label 8 ...`` -> ``v.txt:3``."""
    m = re.match(r"^(.*?\.[A-Za-z0-9]{2,4})(:\d+)?:\s", line)
    return Path(m.group(1)).name + (m.group(2) or "") if m else line.split(":")[0][:60]


def summary(split: str, problems: Sequence[str], counts: Mapping[str, int] | None = None) -> str:
    """``train: 4 problems (bad_lines 3, bad_videos 1), e.g. a.txt:3, b.txt:2, c.txt:1 (all in manifest.json)``."""
    if not problems:
        return f"{split}: no problems"
    kinds = ", ".join(f"{k} {n}" for k, n in sorted((counts or {}).items()) if n)
    names = ", ".join(where(p) for p in problems[:FIRST])
    more = f" and {len(problems) - FIRST} more (all in manifest.json)" if len(problems) > FIRST else ""
    return f"{split}: {len(problems)} problem(s){f' ({kinds})' if kinds else ''}, e.g. {names}{more}"


def tell(console, split: str, problems: Sequence[str], counts: Mapping[str, int] | None = None) -> None:
    """Print :func:`summary` (yellow when there are problems)."""
    if console is not None:
        console.print(f"[{'yellow' if problems else 'dim'}]{summary(split, problems, counts)}[/]", highlight=False)


def record(problems: Sequence[str], counts: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The manifest's entry for one split: every problem line and the counts by kind."""
    return {"count": len(problems), "by_kind": dict(Counter(counts or {})), "lines": list(problems)}


@contextlib.contextmanager
def progress(console, label: str, total: int, every_s: float = 30.0) -> Iterator:
    """``advance()`` per item: a rich bar on a terminal; elsewhere a plain line at 10 % steps or every
    ``every_s`` seconds (and at the end), so a log shows that preprocessing runs."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    if console is None:
        yield lambda: None
        return
    with make_progress(console, label, TextColumn(f"[bold]{label}[/]"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn(), every_s=every_s, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)
