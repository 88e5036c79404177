"""Several sources in one demo: shared model, faces of all sources batched, per-source outputs and bench."""
from __future__ import annotations

import json

import pytest

from edgeaffect.errors import EdgeAffectError
from tests.test_demo import FakeRunner


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two short real-face clips: one face for 8 frames, two faces for 10 frames."""
    from edgeaffect.demo.clips import render_clip

    d = tmp_path_factory.mktemp("clips")
    return (render_clip(d / "one.mp4", seconds=0.8, fps=10, size=(320, 240), faces=1, audio=False),
            render_clip(d / "two.mp4", seconds=1.0, fps=10, size=(400, 240), faces=2, audio=False, seed=1))


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_two_files_share_one_model_and_keep_their_own_outputs(clips, tmp_path):
    from edgeaffect.data.faces import HaarFaceDetector
    from edgeaffect.data.media import video_info
    from edgeaffect.demo.session import build_session

    runner = FakeRunner()
    s = build_session([str(c) for c in clips], runner=runner, detector=HaarFaceDetector(), sync=True,
                      detect_every=2, jsonl=tmp_path / "p.jsonl", output=tmp_path / "a.mp4")
    summary = s.run().summary()
    counts = [video_info(c)[0] for c in clips]
    for i, (n, faces) in enumerate(zip(counts, (1, 2))):
        lines = _lines(tmp_path / f"p.{i}.jsonl")
        assert [r["frame"] for r in lines] == list(range(n)) and {r["source"] for r in lines} == {i}
        assert all(len(r["faces"]) == faces and all(f["scores"] for f in r["faces"]) for r in lines[1:])
        assert (tmp_path / f"a.{i}.mp4").stat().st_size > 0
    # one call per round while both play: the one face of the first clip with the two of the second
    assert runner.batches.count(3) >= min(counts) - 1
    assert [x["source"] for x in summary["sources"]] == [str(c) for c in clips]
    assert [x["frames"] for x in summary["sources"]] == counts and summary["frames"] == sum(counts)
    assert summary["inferences"] == len(runner.batches) - 1          # every call but the warm-up
    assert all(x["inferences"] <= summary["inferences"] for x in summary["sources"])
    assert sum(x["inferences"] for x in summary["sources"]) > summary["inferences"]   # calls were shared


def test_one_source_records_have_no_source_field(clips, tmp_path):
    from edgeaffect.data.faces import HaarFaceDetector
    from edgeaffect.demo.session import build_session

    s = build_session([str(clips[0])], runner=FakeRunner(), detector=HaarFaceDetector(), sync=True,
                      jsonl=tmp_path / "p.jsonl")
    assert "sources" not in s.run().summary()
    assert all("source" not in r for r in _lines(tmp_path / "p.jsonl"))


def test_bad_multi_source_input_is_one_clear_line(clips, tmp_path):
    from edgeaffect.demo.session import build_session

    with pytest.raises(EdgeAffectError, match=r"2 sources each gets its own file .*out\.mp4"):
        build_session([str(c) for c in clips], runner=FakeRunner(), output=tmp_path / "out")
    with pytest.raises(EdgeAffectError, match=r"source 1 \(.*missing\.mp4\): .*does not exist"):
        build_session([str(clips[0]), str(tmp_path / "missing.mp4")], runner=FakeRunner(), detector="haar")


def test_web_page_has_a_tile_and_a_stream_per_source(clips, tmp_path):
    import urllib.request

    from edgeaffect.data.faces import HaarFaceDetector
    from edgeaffect.demo.session import build_session

    s = build_session([str(c) for c in clips], runner=FakeRunner(), detector=HaarFaceDetector(), sync=True,
                      serve="127.0.0.1:0")
    web = s.web
    try:
        s.demo.run(s.source)
        base = f"http://127.0.0.1:{web.port}/"
        state = json.loads(urllib.request.urlopen(base + "state.json", timeout=10).read())
        assert state["sources"] == [str(c) for c in clips]
        assert [r["source"] for r in state["records"]] == [0, 1] and len(state["records"][1]["faces"]) == 2
        for i in (0, 1):
            assert urllib.request.urlopen(base + f"frame.jpg?source={i}", timeout=10).read()[:2] == b"\xff\xd8"
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(base + "frame.jpg?source=2", timeout=10)
        page = urllib.request.urlopen(base, timeout=10).read()
        assert b"setSources" in page and b"stream.mjpg?source=" in page
    finally:
        web.close()
