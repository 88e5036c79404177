"""Aff-Wild2 (ABAW) cropped-aligned frames, shared by the EXPR and VA readers.

Layout as distributed::

    cropped_aligned/<video>/00001.jpg ...   (112x112 aligned faces; frame i <-> 00000i.jpg, i from 1)

Frames the face aligner failed on are simply absent, so a video's frame
numbers can have gaps; label files index frames by their line number.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..lazy import lazy_import

cv2 = lazy_import("cv2", "")

_FRAME = re.compile(r"^(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE)


def list_frames(video_dir: str | os.PathLike) -> dict[int, Path]:
    """Map frame number (1-based, as in the file name) -> image path for one video folder."""
    video_dir = Path(video_dir)
    if not video_dir.is_dir():
        raise DataError(f"no cropped-aligned frame folder {video_dir}")
    out = {}
    for entry in os.scandir(video_dir):
        m = _FRAME.match(entry.name)
        if m:
            out[int(m.group(1))] = Path(entry.path)
    return out


def read_face(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """One aligned face as BGR uint8 [S, S, 3] (resized to ``size`` if given)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"unreadable image {path}")
    if size is not None and img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img


def read_faces(paths: list[Path | None], size: int) -> np.ndarray:
    """Stack faces [N, S, S, 3]; a ``None`` path (frame absent) gives a zero image, as the reference does."""
    out = np.zeros((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        if p is not None:
            out[i] = read_face(p, size)
    return out


def frame_name(index: int) -> str:
    return f"{index:05d}.jpg"


def read_label_rows(path: str | os.PathLike, header: list[str] | tuple[str, ...],
                    *alternatives: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line number, text) of the non-blank rows of an ABAW label file after its header.

    The header is matched case-insensitively (the challenge files vary) against ``header`` or one of
    ``alternatives``; an unreadable, empty or wrongly headed file raises DataError naming ``file:line``.
    """
    return read_label_table(path, header, *alternatives)[1]


def read_label_table(path: str | os.PathLike, header: list[str] | tuple[str, ...],
                     *alternatives: tuple[str, ...]) -> tuple[tuple[str, ...], list[tuple[int, str]]]:
    """(the accepted header it has, rows) of an ABAW label file; see :func:`read_label_rows`."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read label file ({exc})") from None
    if not lines:
        raise DataError(f"{path}: empty label file")
    found = [h.strip().lower() for h in lines[0].split(",")]
    match = next((tuple(h) for h in (header, *alternatives) if found == [x.lower() for x in h]), None)
    if match is None:
        expected = " or ".join(repr(",".join(h)) for h in (header, *alternatives))
        raise DataError(f"{path}:1: header {lines[0].strip()!r} is not {expected}")
    return match, [(n, line.strip()) for n, line in enumerate(lines[1:], start=2) if line.strip()]
