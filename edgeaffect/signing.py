"""Signed artifacts: a run's or a bundle's model files signed with a private key, checked on the device.

Hashes in ``manifest.json`` catch accidents (a truncated copy, a stale file); anyone who can change a file can
rewrite its hash too.  A signature made with a private key that never leaves the build machine catches that:
without the key, a changed model, spec or bundle file cannot be signed again.  The crypto is the OpenSSF
``model-signing`` library (elliptic-curve keys, a Sigstore bundle with an in-toto statement); nothing here
implements any.

A signed folder (run or bundle) holds two more files at its root::

    model.sig      the signature (model-signing's Sigstore bundle) over the covered files
    signed.json    what was signed: the covered file list and the manifest at signing time

Covered: every file the manifest lists as an artifact (models, IR weights, calibration cache, a bundle's
files), ``checkpoint.pt``, a bundle's SHA256SUMS / requirements.txt / commands.sh / wheel, and
``signed.json``.  Not covered, because later commands rewrite them legitimately: ``manifest.json`` itself
(bench and eval add their results; its spec is compared with the signed copy instead), bench and eval
reports, ``.lock``, ``.verified.json``, training state (``stages/``), and TensorRT engines built on the device
(no private key there: they are checked against their hash only).
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path, PurePosixPath
from typing import Iterable

from .errors import EdgeAffectError, MissingDependencyError
from .fileio import read_json, write_bytes, write_json
from .lazy import lazy_import
from .runs import read_manifest
from .runtimes.registry import built_on_device

serialization = lazy_import("cryptography.hazmat.primitives.serialization", "sign", "signing keys")
ec = lazy_import("cryptography.hazmat.primitives.asymmetric.ec", "sign", "signing keys")

SIGNATURE = "model.sig"
SIGNED = "signed.json"
MANIFEST = "manifest.json"
CHECKPOINT = "checkpoint.pt"
TRUST_ENV = "EDGEAFFECT_TRUST"
PASSWORD_ENV = "EDGEAFFECT_SIGN_PASSWORD"
PRIVATE_KEY, PUBLIC_KEY = "edgeaffect-signing.key", "edgeaffect-signing.pub"
BUNDLE_FILES = ("SHA256SUMS", "requirements.txt", "commands.sh")
COMPARED = ("task", "model", "spec")   # the manifest sections that say what the model is


def _library():
    """model_signing, or the one line that names the extra."""
    try:
        import model_signing
    except ImportError:
        raise MissingDependencyError("model-signing", "sign", "signed artifacts") from None
    return model_signing


# ------------------------------------------------------------------------------------------ keys
def keygen(out: str | os.PathLike, overwrite: bool = False) -> tuple[Path, Path]:
    """Write an EC P-256 key pair (PEM) into ``out``: the private key (mode 0600, encrypted when
    ``EDGEAFFECT_SIGN_PASSWORD`` is set) stays on the build machine; the public key goes to the devices."""
    _library()
    out = Path(out)
    private, public = out / PRIVATE_KEY, out / PUBLIC_KEY
    if not overwrite and (private.exists() or public.exists()):
        raise EdgeAffectError(f"{out} already holds a signing key ({PRIVATE_KEY}); pick another --out or pass "
                              f"--overwrite (artifacts signed with the old key then no longer verify with the new one)")
    key = ec.generate_private_key(ec.SECP256R1())
    password = os.environ.get(PASSWORD_ENV)
    encryption = (serialization.BestAvailableEncryption(password.encode()) if password
                  else serialization.NoEncryption())
    mask = os.umask(0o077)   # the private key is never readable by others, not even for a moment
    try:
        write_bytes(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               encryption))
    finally:
        os.umask(mask)
    write_bytes(public, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def check_key(key: str | os.PathLike) -> None:
    """Refuse a missing or unusable private key before any work (export and pack check it first)."""
    ms = _library()
    key = Path(key)
    if not key.is_file():
        raise EdgeAffectError(f"no private signing key at {key}; make one with `edgeaffect sign keygen --out DIR`")
    try:
        ms.signing.Config().use_elliptic_key_signer(private_key=key, password=_password())
    except Exception as exc:   # not a PEM private key, an unsupported curve, a wrong or missing password
        raise EdgeAffectError(f"cannot use {key} as a private signing key ({_line(exc)}); an encrypted "
                              f"key reads its password from {PASSWORD_ENV}") from None


# ------------------------------------------------------------------------------------------ what is covered
def folder_of(target: str | os.PathLike) -> Path | None:
    """The run or bundle folder of ``target`` (itself, or the nearest folder above a file holding a manifest)."""
    target = Path(target)
    if target.is_dir():
        return target if (target / MANIFEST).is_file() else None
    for candidate in (target.parent, *target.parent.parents)[:3]:   # model.onnx, openvino/x.xml, tensorrt/x.engine
        if (candidate / MANIFEST).is_file():
            return candidate
    return None


def _inside(root: Path, rel: str) -> str:
    """``rel`` as a clean relative POSIX name, refused when it leaves ``root``."""
    p = PurePosixPath(str(rel).replace(os.sep, "/"))
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise EdgeAffectError(f"{root / MANIFEST} lists {rel!r}, which is not a path inside {root}")
    return p.as_posix()


def _device_built(rel: str) -> bool:
    """An engine built on the device (TensorRT) from the signed ONNX, where no private key is."""
    return built_on_device(rel)


def covered(root: Path, manifest: dict) -> list[str]:
    """The files of ``root`` a signature covers (see the module docstring), sorted."""
    listed = manifest.get("artifacts", {})
    if not isinstance(listed, dict):
        raise EdgeAffectError(f"{root / MANIFEST}: 'artifacts' is not a mapping of file names")
    names = {_inside(root, rel) for rel in listed}
    names = {n for n in names if not _device_built(n)}
    names |= {CHECKPOINT, *BUNDLE_FILES} | {p.name for p in root.glob("edgeaffect-*.whl")}
    return sorted(n for n in names if (root / n).is_file())


def _ignored(root: Path, keep: Iterable[str]) -> list[str]:
    """Every path under ``root`` outside ``keep`` (a folder holding none of them as one entry)."""
    keep = set(keep)
    dirs = {str(p) for k in keep for p in PurePosixPath(k).parents}
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else f"{rel_dir}/"
        for d in list(dirnames):
            if f"{prefix}{d}" not in dirs:
                out.append(f"{prefix}{d}")
                dirnames.remove(d)
        out += [f"{prefix}{f}" for f in filenames if f"{prefix}{f}" not in keep]
    return sorted(out)


# ------------------------------------------------------------------------------------------ sign / verify
def sign(target: str | os.PathLike, key: str | os.PathLike) -> Path:
    """Sign the run or bundle folder ``target`` with the private key ``key``; returns ``<folder>/model.sig``."""
    ms = _library()
    root, key = Path(target), Path(key)
    if not root.is_dir() or not (root / MANIFEST).is_file():
        raise EdgeAffectError(f"cannot sign {root}: not a run or bundle folder (no {MANIFEST})")
    check_key(key)
    manifest = read_manifest(root)
    files = covered(root, manifest)
    write_json(root / SIGNED, {"format": 1, "files": files, "manifest": manifest})
    keep = [*files, SIGNED]
    hashing = ms.hashing.Config().set_ignored_paths(paths=_ignored(root, keep), ignore_git_paths=False)
    signer = ms.signing.Config().use_elliptic_key_signer(private_key=key, password=_password())
    sig = root / SIGNATURE
    tmp = sig.with_name(f".{SIGNATURE}.tmp")
    try:
        signer.set_hashing_config(hashing).sign(root, tmp)
        os.replace(tmp, sig)
    except ValueError as exc:   # a symlink or special file in the folder
        (root / SIGNED).unlink(missing_ok=True)   # no half-signed folder: it reads as unsigned
        raise EdgeAffectError(f"cannot sign {root}: {_line(exc)}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return sig


def verify(target: str | os.PathLike, trust: str | os.PathLike) -> Path:
    """Refuse ``target`` (a run or bundle folder, or a model file in one) unless a signature by the key whose
    public half is ``trust`` covers it and every signed file is unchanged; returns the verified folder."""
    ms = _library()
    target, trust = Path(target), Path(trust)
    if not trust.is_file():
        raise EdgeAffectError(f"--trust/{TRUST_ENV}: no public key at {trust}")
    root = folder_of(target)
    if root is None:
        raise EdgeAffectError(f"{target} is not in a signed run or bundle folder, and trust is configured "
                              f"({trust}); use a folder signed with `export --sign` or `pack --sign`")
    if not (root / SIGNATURE).is_file() or not (root / SIGNED).is_file():
        raise EdgeAffectError(f"{root} is not signed (no {SIGNATURE} or {SIGNED}) and trust is configured "
                              f"({trust}); sign it on the build machine (export/pack --sign KEY)")
    try:
        config = ms.verifying.Config().use_elliptic_key_verifier(public_key=trust).set_ignore_unsigned_files(True)
        with contextlib.redirect_stdout(sys.stderr):   # the library prints warnings: keep stdout for results
            config.verify(root, root / SIGNATURE)
    except Exception as exc:   # a wrong key, a changed or missing file, a damaged signature: all one refusal
        raise EdgeAffectError(f"{root}: the signature does not verify with {trust} ({_mismatch(exc)}); the files "
                              f"were changed after signing, or signed with another key") from None
    _check_coverage(root, target)
    return root


def _check_coverage(root: Path, target: Path) -> None:
    """The (now authentic) signed list covers what will be loaded, and the manifest still describes it."""
    signed = read_json(root / SIGNED)
    files = set(signed.get("files", []))
    manifest = read_manifest(root)
    for section in COMPARED:
        if manifest.get(section) != signed.get("manifest", {}).get(section):
            raise EdgeAffectError(f"{root / MANIFEST}: its {section!r} differs from the signed one in {SIGNED}; "
                                  f"the manifest was changed after signing")
    if target.is_file():
        wanted = [Path(os.path.relpath(target.resolve(), root.resolve())).as_posix()]
    else:
        wanted = covered(root, manifest)
    unsigned = [n for n in wanted if n not in files and not _device_built(n)]
    if unsigned:
        raise EdgeAffectError(f"{root}: {', '.join(unsigned)} is not covered by its signature (added after "
                              f"signing); re-sign the folder on the build machine")


def check_trust(target: str | os.PathLike | None, trust: str | os.PathLike | None) -> None:
    """What every command that loads a model calls first: nothing without trust; with a public key
    (``--trust`` or ``EDGEAFFECT_TRUST``), an unsigned or wrongly signed artifact is refused in one line."""
    if trust is None or str(trust) == "":
        return
    if target is None:
        raise EdgeAffectError(f"trust is configured ({trust}): name a signed model (a run or bundle folder)")
    verify(target, trust)


def _mismatch(exc: BaseException) -> str:
    """The library's verdict without its digests: which files changed, went missing or were added."""
    text = str(exc)
    changed = re.findall(r"Hash mismatch for \\*'([^'\\]+)", text)   # quotes may come escaped (a list's repr)
    missing = re.findall(r"Missing files in model '[^']*': ([^\"\]]+)", text)
    parts = ([f"changed: {', '.join(changed)}"] if changed else []) + [f"missing: {m}" for m in missing]
    return "; ".join(parts) if parts else _line(exc)


def _password() -> bytes | None:
    """The private key's password from the environment (bytes: what the key loader really takes)."""
    value = os.environ.get(PASSWORD_ENV)
    return value.encode() if value else None


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
