"""Bad values on the command line are one line each (never a traceback, never silently taken), a custom face
detector must be a detector class, and an OpenVINO save on a full disk says so in one line."""
from __future__ import annotations

import errno
import shutil

import pytest

from edgeaffect.cli import main
from edgeaffect.errors import EdgeAffectError


def _one_line_refusal(capsys, argv, *needles, code=(1, 2)) -> str:
    """Run ``argv``; it must fail with an error that names every needle and holds no traceback."""
    assert main(argv) in code, argv
    cap = capsys.readouterr()
    text = " ".join((cap.err + cap.out).split())
    assert "Traceback" not in text and all(n in text for n in needles), (argv, text)
    return text


@pytest.mark.parametrize("argv, needle", [
    (["demo", "--folder-fps", "0", "--headless"], "--folder-fps"),
    (["demo", "--folder-fps", "-5", "--headless"], "--folder-fps"),
    (["demo", "--folder-fps", "nan", "--headless"], "--folder-fps"),
    (["demo", "--reconnect-retries", "-1", "--headless"], "--reconnect-retries"),
    (["demo", "--head-timeout", "0", "--serve", "127.0.0.1:0", "--headless"], "--head-timeout"),
    (["demo", "--max-per-client", "0", "--serve", "127.0.0.1:0", "--headless"], "--max-per-client"),
    (["data", "clip", "x.mp4", "--width", "100001"], "--width"),
    (["data", "clip", "x.mp4", "--height", "100001"], "--height"),
    (["data", "clip", "x.mp4", "--seconds", "1e9"], "--seconds"),
])
def test_absurd_values_are_refused_before_any_work(capsys, tmp_path, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    _one_line_refusal(capsys, argv, needle)
    assert list(tmp_path.iterdir()) == []          # nothing written, no clip rendered


def test_an_image_folder_source_refuses_a_rate_it_cannot_play(tmp_path):
    from edgeaffect.demo.sources import FolderSource, Reconnecting

    for fps in (0, -5, float("nan"), 1e6):
        with pytest.raises(EdgeAffectError, match="--folder-fps"):
            FolderSource(tmp_path, fps)
    assert FolderSource(tmp_path, 0.5).fps == 0.5
    with pytest.raises(EdgeAffectError, match="--reconnect-retries -1"):
        Reconnecting(FolderSource(tmp_path), max_retries=-1)


# --- a custom face detector ------------------------------------------------------------------------------

class NotADetector:
    """A class of this test module, importable, with no detect()."""


class BoxDetector:
    def detect(self, frame):
        return [(0, 0, 8, 8)]


class BrokenDetector:
    def __init__(self):
        raise ValueError("needs a config file")

    def detect(self, frame):
        return []


NOT_A_CLASS = 42


@pytest.mark.parametrize("name, needle", [
    ("os:path", "standard library"),
    ("subprocess:Popen", "standard library"),
    ("antigravity:X", "standard library"),            # importing it would open a browser: never imported
    ("os.path:join", "standard library"),
    ("just-a-name", "'package.module:Class'"),
    ("pkg:Class:extra", "'package.module:Class'"),
])
def test_a_detector_name_that_cannot_be_a_detector_is_refused_up_front(capsys, name, needle):
    import sys

    before = set(sys.modules)
    _one_line_refusal(capsys, ["demo", "--detector", name, "--source", "/no/such/source", "--headless"],
                      "--detector", needle)
    assert "antigravity" not in set(sys.modules) - before


@pytest.mark.parametrize("name, needle", [
    ("tests.test_input_checks:NotADetector", "a class without detect(frame)"),
    ("tests.test_input_checks:NOT_A_CLASS", "NOT_A_CLASS is not a class (int), not a face detector class"),
    ("tests.test_input_checks:NoSuch", "tests.test_input_checks has no NoSuch"),
    ("tests.no_such_module:X", "No module named 'tests.no_such_module'"),
    ("tests.test_input_checks:BrokenDetector", "BrokenDetector() failed: ValueError: needs a config file"),
])
def test_only_a_detector_class_is_built(name, needle):
    from edgeaffect.demo.session import make_detector

    with pytest.raises(EdgeAffectError) as err:
        make_detector(name)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_detector_class_is_built():
    from edgeaffect.demo.session import make_detector

    det = make_detector("tests.test_input_checks:BoxDetector")
    assert isinstance(det, BoxDetector) and det.detect(None) == [(0, 0, 8, 8)]


# --- OpenVINO on a full disk -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from tests.fakes.tiny_model import make_exported_run

    return make_exported_run(tmp_path_factory.mktemp("checks"))


@pytest.fixture
def run(exported, tmp_path):
    dest = tmp_path / "run"
    shutil.copytree(exported, dest)
    return dest


def _ov_save_fails(monkeypatch, exc: Exception, free: int) -> None:
    import openvino as ov

    def save_model(model, path, compress_to_fp16=False):
        with open(path, "wb") as f:          # half a file, as a full disk leaves it
            f.write(b"<?xml")
        raise exc

    monkeypatch.setattr(ov, "save_model", save_model)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, free))


BASIC_IOS = RuntimeError("Exception from src/core/src/pass/serialize.cpp:1204:\n" + "  frame\n" * 100
                         + "basic_ios::clear: iostream error")


def test_export_to_openvino_on_a_full_disk_is_one_line(run, capsys, monkeypatch):
    before = (run / "openvino" / "model.xml").read_bytes()
    _ov_save_fails(monkeypatch, BASIC_IOS, free=1 << 20)
    text = _one_line_refusal(capsys, ["export", str(run), "--format", "openvino"], "no space left on the device",
                             "model.xml", code=(1,))
    assert "basic_ios" not in text and len(capsys.readouterr().err.strip().splitlines()) <= 1
    assert (run / "openvino" / "model.xml").read_bytes() == before       # the old IR is untouched
    assert not [p for p in (run / "openvino").iterdir() if p.name.endswith(".tmp")]   # no staging left


def test_an_openvino_save_error_with_space_left_is_still_one_line(run, capsys, monkeypatch):
    _ov_save_fails(monkeypatch, BASIC_IOS, free=10 << 30)
    text = _one_line_refusal(capsys, ["export", str(run), "--format", "openvino"], "OpenVINO could not save",
                             "model.xml", code=(1,))
    assert "no space" not in text


def test_a_real_enospc_from_the_save_names_the_file(run, capsys, monkeypatch):
    _ov_save_fails(monkeypatch, OSError(errno.ENOSPC, "No space left on device"), free=0)
    _one_line_refusal(capsys, ["export", str(run), "--format", "openvino"], "model.xml: no space left on the device",
                      code=(1,))
