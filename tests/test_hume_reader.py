import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeaffect.data.hume import LABELS, read_data_info
from edgeaffect.errors import DataError

HEADER = "File_ID,Split," + ",".join(LABELS)


def _write(root, text, videos=()):
    (root / "data_info.csv").write_text(text)
    for split, fid in videos:
        (root / split).mkdir(exist_ok=True)
        (root / split / f"{fid}.mp4").write_bytes(b"x")


def test_reads_distributed_layout_keeps_leading_zeros_and_case(tmp_path):
    _write(tmp_path, HEADER + "\n00012,Train," + ",".join(["0.5"] * 7) + "\n7,VAL," + ",".join(["0"] * 7) + "\n",
           videos=[("train", "00012")])
    clips = read_data_info(tmp_path)
    assert [c.file_id for c in clips] == ["00012", "7"]
    assert [c.split for c in clips] == ["train", "val"]
    assert clips[0].video == tmp_path / "train" / "00012.mp4"
    assert clips[1].video is None  # listed but absent: counted later, not fatal here
    np.testing.assert_allclose(clips[0].labels, 0.5)


def test_header_variants_and_withheld_test_labels(tmp_path):
    hdr = "file_id, split, adoration,AMUSEMENT,anxiety,disgust,Empathic Pain,fear,surprise"
    _write(tmp_path, hdr + "\nA,Test,,,,,,,\n")
    (clip,) = read_data_info(tmp_path)
    assert clip.split == "test" and np.isnan(clip.labels).all()


@pytest.mark.parametrize("text,message", [
    ("File_ID,Split,Adoration\n1,Train,0.1\n", "missing column(s): Amusement, Anxiety"),
    (HEADER + "\n1,Holdout," + ",".join(["0"] * 7) + "\n", "unknown split 'Holdout'"),
    (HEADER + "\n1,Train," + ",".join(["0"] * 6) + ",1.5\n", "Surprise = 1.5 is outside [0, 1]"),
    (HEADER + "\n1,Train," + ",".join(["0"] * 6) + ",abc\n", "'abc' is not a number"),
    (HEADER + "\n1,Train," + ",".join(["0"] * 7) + "\n1,Val," + ",".join(["0"] * 7) + "\n", "listed twice"),
    (HEADER + "\n", "lists no clips"),
    ("", "is empty"),
])
def test_malformed_csv_is_one_clear_error(tmp_path, text, message):
    _write(tmp_path, text)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        read_data_info(tmp_path)


def test_missing_csv_and_folder(tmp_path):
    with pytest.raises(DataError, match="data_info.csv not found"):
        read_data_info(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        read_data_info(tmp_path / "nope")


cell = st.one_of(st.text(alphabet=string.printable, max_size=6), st.floats(allow_nan=True).map(str),
                 st.sampled_from(["Train", "Val", "Test", "0.5", "", "-1", "1"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(cell, min_size=0, max_size=11), max_size=6), keep_header=st.booleans())
def test_fuzzed_csv_only_ever_raises_data_error(tmp_path, rows, keep_header):
    lines = ([HEADER] if keep_header else []) + [",".join(r) for r in rows]
    (tmp_path / "data_info.csv").write_text("\n".join(lines))
    try:
        clips = read_data_info(tmp_path)
    except DataError as exc:
        assert "\n" not in str(exc)
        return
    for c in clips:
        assert c.split in ("train", "val", "test")
        finite = c.labels[np.isfinite(c.labels)]
        assert ((finite >= 0) & (finite <= 1)).all()
