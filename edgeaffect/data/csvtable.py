"""Label CSVs as datasets ship them: BOM-tolerant, header names matched loosely, errors as ``file:line``."""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Iterator

from ..errors import DataError


def norm(name: str) -> str:
    """Header key: lower case, letters and digits only ("File_ID" == "file id" == "FileID")."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def read_table(csv_path: str | os.PathLike, want: dict[str, str],
               optional: tuple[str, ...] = ()) -> tuple[dict[str, int], list[tuple[int, list[str]]]]:
    """Column index per wanted key (and per ``optional`` key present), and the (line number, fields) of each
    non-blank row.

    ``want`` maps normalised keys to the names shown in errors. A file that is not CSV, is empty,
    lacks a wanted column or has a short row raises DataError naming the file (and line).
    """
    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path} is not a readable CSV: {exc}") from None
    if not rows:
        raise DataError(f"{csv_path} is empty")
    header = [norm(h) for h in rows[0]]
    missing = [shown for key, shown in want.items() if key not in header]
    if missing:
        raise DataError(f"{csv_path} is missing column(s): {', '.join(missing)}")
    body = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise DataError(f"{csv_path}:{line_no}: expected {len(header)} fields, found {len(row)}")
        body.append((line_no, row))
    keys = [*want, *(k for k in optional if k in header)]
    return {key: header.index(key) for key in keys}, body


def unique_keys(csv_path, rows: list[tuple[int, list[str]]], column: int, what: str,
                empty_what: str | None = None) -> Iterator[tuple[int, list[str], str]]:
    """(line number, fields, key) per row, with an empty or repeated key in ``column`` as a DataError."""
    seen: set[str] = set()
    for line_no, row in rows:
        key = row[column].strip()
        if not key:
            raise DataError(f"{csv_path}:{line_no}: empty {empty_what or what}")
        if key in seen:
            raise DataError(f"{csv_path}:{line_no}: {what} {key!r} listed twice")
        seen.add(key)
        yield line_no, row, key
