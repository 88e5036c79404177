"""Shared fixtures: a tiny synthetic ERI dataset generated once per session."""
from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

TINY_ERI = dict(clips=10, seconds=2.0, width=192, height=144)
TINY_MODEL = dict(frames=4, face_size=48, audio_seconds=2.0)


@pytest.fixture(scope="session")
def tiny_eri(tmp_path_factory):
    """10 clips of 2 s in the Hume-Reaction layout (6 train / 2 val / 2 test)."""
    from edgeaffect.data.synth.eri import ERISynthConfig, generate_eri

    root = tmp_path_factory.mktemp("eri")
    generate_eri(root, ERISynthConfig(seed=3, **TINY_ERI), workers=1)
    return root
