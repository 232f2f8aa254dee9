"""Each camera's settings, validated up front, and the cameras file that lists them.

A camera is a :class:`CameraConfig`: its id (a slug: it appears in URLs, topics and the events
store), display name, source, detection rate, time zone, motion-gate settings and masks, zones,
and the objects it tracks with their filters. Polygons are in coordinates relative to the frame
(0–1), so they survive a change of resolution. :func:`load_cameras_file` reads a cameras file in
hearthwatch's own form or a Frigate config (through :mod:`hearthwatch.security.frigate`); each
problem it reports names the camera and the field path, and none holds a stream URL.

The models are frozen pydantic models, safe to share between threads (treat their dicts as
read-only); the functions keep no state.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hearthwatch.security.observations import Box
from hearthwatch.security.sources.config import SourceConfig

SLUG_PATTERN = re.compile(r"[a-z0-9_-]+")
MAX_SLUG_LENGTH = 64
MAX_CAMERAS = 256
MAX_ZONES = 100
MAX_MASKS = 100
MAX_POLYGON_POINTS = 500
MAX_LABELS = 200
MAX_FILE_BYTES = 1 << 20
MAX_YAML_NODES = 200_000
"""Values a cameras file may hold, aliases counted each time they are used (an alias bomb
stops here instead of exhausting memory or time)."""

DEFAULT_TRACKED_LABELS = ("person", "car", "truck", "motorcycle", "bicycle", "dog", "cat")
"""What a security camera tracks unless told otherwise: people, vehicles and pets (no birds,
whose traffic would drown the rest)."""

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_CHARACTERS_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_NOT_SLUG = re.compile(r"[^a-z0-9_-]+")
_TIMEZONE_NAME = re.compile(r"[A-Za-z0-9_+\-/]{1,64}")


class CameraConfigError(ValueError):
    """Cameras that cannot be configured as given; each problem names its camera and field."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


def slugify(name: str) -> str:
    """``name`` as an id: lower-case ASCII letters, digits, ``_`` and ``-``.

    Accents are dropped (``Entrée`` → ``entree``), other characters become ``_`` (runs
    collapsed, none at either end). A name with nothing left becomes ``id_`` and a hash of it;
    one longer than :data:`MAX_SLUG_LENGTH` is cut and ends with that hash, so distinct long
    names stay distinct. Deterministic.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"_{2,}", "_", _NOT_SLUG.sub("_", ascii_name.lower())).strip("_-")
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    if not slug:
        return f"id_{digest}"
    if len(slug) > MAX_SLUG_LENGTH:
        return f"{slug[: MAX_SLUG_LENGTH - len(digest) - 1].rstrip('_-')}_{digest}"
    return slug


def is_slug(name: str) -> bool:
    return len(name) <= MAX_SLUG_LENGTH and SLUG_PATTERN.fullmatch(name) is not None


def validate_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone this system knows (``Europe/Berlin``, ``UTC``)."""
    if not _TIMEZONE_NAME.fullmatch(name) or ".." in name or name.startswith("/"):
        raise ValueError("must be an IANA time zone name such as Europe/Berlin")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}") from None
    return name


def field_path(prefix: str, *parts: str | int) -> str:
    """``prefix`` followed by ``parts`` in dotted form, list indices as ``[i]``."""
    path = prefix
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path


def validation_problems(
    error: ValidationError, prefix: str, *, rename: Mapping[str, str] | None = None
) -> list[str]:
    """One line per error of ``error``: its field path under ``prefix`` and what is wrong.

    ``rename`` maps a top-level field name to the path to show instead (``""`` drops it).
    Values are never quoted back, so a URL's password cannot leak.
    """
    problems = []
    for detail in error.errors(include_url=False, include_input=False):
        loc = list(detail["loc"])
        key_problem = bool(loc) and loc[-1] == "[key]"
        if key_problem:
            loc.pop()
        path = prefix
        if loc and rename is not None and str(loc[0]) in rename:
            path = field_path(path, *filter(None, rename[str(loc[0])].split(".")))
            loc = loc[1:]
        path = field_path(path, *loc)
        context = detail.get("ctx", {})
        is_own = detail["type"] in ("value_error", "assertion_error") and "error" in context
        message = str(context["error"]) if is_own else detail["msg"]
        problems.append(f"{path}: {'the key ' if key_problem else ''}{message}")
    return problems


def _slug(value: str) -> str:
    if not is_slug(value):
        raise ValueError(f"must be 1–{MAX_SLUG_LENGTH} lower-case letters, digits, '_' or '-'")
    return value


def _label(value: str) -> str:
    if not 1 <= len(value) <= 64 or _CONTROL_CHARACTERS.search(value) or value != value.strip():
        raise ValueError("a label is 1–64 characters without control characters or edge spaces")
    return value


def _display_text(value: str) -> str:
    value = value.strip()
    if not 1 <= len(value) <= 200 or _CONTROL_CHARACTERS.search(value):
        raise ValueError("must be 1–200 characters without control characters")
    return value


def _unique(labels: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(labels))


def _area(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be pixels (an integer) or a fraction of the frame (0–1)")
    if isinstance(value, float) and not 0.0 <= value <= 1.0:
        raise ValueError(
            "a decimal area is a fraction of the frame (0–1); give pixels as an integer"
        )
    if value < 0:
        raise ValueError("must not be negative")
    return value


Slug = Annotated[str, AfterValidator(_slug)]
Label = Annotated[str, AfterValidator(_label)]
DisplayText = Annotated[str, AfterValidator(_display_text)]
RelativeCoordinate = Annotated[float, Field(ge=0.0, le=1.0)]
Point = tuple[RelativeCoordinate, RelativeCoordinate]
Polygon = Annotated[tuple[Point, ...], Field(min_length=3, max_length=MAX_POLYGON_POINTS)]
"""x, y points relative to the frame (0–1), in order; closed implicitly."""
Area = Annotated[int | float, BeforeValidator(_area)]
"""Pixels (an integer) or a fraction of the frame (a decimal 0–1), as Frigate has it."""
Labels = Annotated[tuple[Label, ...], Field(max_length=MAX_LABELS), AfterValidator(_unique)]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class MotionConfig(_Settings):
    """The motion gate: a frame goes to the detector only where enough of it changed."""

    threshold: int = Field(30, ge=1, le=255, description="Per-pixel change (of 255) that counts.")
    contour_area: int = Field(
        10, ge=0, le=1_000_000, description="Smallest changed area, in pixels of the gate's frame."
    )
    lightning_threshold: float = Field(
        0.8,
        ge=0.0,
        le=1.0,
        description="Share of the frame changing at once that means a light change, not motion.",
    )
    masks: tuple[Polygon, ...] = Field(
        (), max_length=MAX_MASKS, description="Areas whose changes are ignored."
    )


class ZoneConfig(_Settings):
    """A named area of the frame; an object is in it when its box's bottom-centre is."""

    polygon: Polygon
    objects: Annotated[Labels, Field(min_length=1)] | None = Field(
        None, description="Labels the zone reacts to; None for every tracked one."
    )
    inertia: int = Field(
        3, ge=1, le=1000, description="Consecutive frames inside before an object counts as in."
    )
    friendly_name: DisplayText | None = None


class ObjectFilter(_Settings):
    """Which detections of one label are kept (Frigate's object filter)."""

    min_score: float = Field(0.5, ge=0.0, le=1.0)
    min_area: Area = 0
    max_area: Area | None = Field(None, description="None: no upper bound.")
    min_ratio: float = Field(0.0, ge=0.0, description="Smallest box width / height.")
    max_ratio: float | None = Field(None, gt=0.0, description="None: no upper bound.")

    @model_validator(mode="after")
    def _bounds_in_order(self) -> ObjectFilter:
        if self.max_ratio is not None and self.min_ratio > self.max_ratio:
            raise ValueError("min_ratio is above max_ratio")
        max_area = self.max_area
        same_unit = max_area is not None and type(self.min_area) is type(max_area)
        if same_unit and max_area is not None and self.min_area > max_area:
            raise ValueError("min_area is above max_area")
        return self

    def accepts(self, score: float, box: Box, frame_size: tuple[int, int]) -> bool:
        """Whether a detection with ``score`` and ``box`` (pixels of a frame of ``frame_size``
        = width, height) passes this filter. Empty or non-finite boxes and scores never do."""
        x1, y1, x2, y2 = box
        width, height = x2 - x1, y2 - y1
        if not all(map(math.isfinite, (score, width, height))) or width <= 0 or height <= 0:
            return False
        frame_area = frame_size[0] * frame_size[1]
        area, ratio = width * height, width / height
        return (
            score >= self.min_score
            and area >= _in_pixels(self.min_area, frame_area)
            and (self.max_area is None or area <= _in_pixels(self.max_area, frame_area))
            and ratio >= self.min_ratio
            and (self.max_ratio is None or ratio <= self.max_ratio)
        )


def _in_pixels(area: int | float, frame_area: int) -> float:
    return area if isinstance(area, int) else area * frame_area


DEFAULT_OBJECT_FILTER = ObjectFilter()


class ObjectsConfig(_Settings):
    """The labels a camera tracks, and the filters its detections must pass."""

    track: Labels = Field(DEFAULT_TRACKED_LABELS, min_length=1)
    filters: dict[Label, ObjectFilter] = Field(
        default_factory=dict, max_length=MAX_LABELS, description="Per label; others use defaults."
    )

    def accepts(self, label: str, score: float, box: Box, frame_size: tuple[int, int]) -> bool:
        """Whether a detection is kept: its label is tracked and it passes the label's filter
        (:data:`DEFAULT_OBJECT_FILTER` for a label with none)."""
        return label in self.track and self.filters.get(label, DEFAULT_OBJECT_FILTER).accepts(
            score, box, frame_size
        )


class CameraConfig(_Settings):
    """One camera: where its frames come from and what its pipeline looks for."""

    id: Slug
    name: DisplayText = Field(description="Display name; the id when not given.")
    zone_description: str = Field(
        "",
        max_length=2000,
        description="What the camera watches, in words, for the risk analyser's prompt.",
    )
    source: SourceConfig
    detect_fps: float = Field(5.0, gt=0.0, le=30.0)
    enabled: bool = True
    timezone: Annotated[str, AfterValidator(validate_timezone)] = Field(
        "UTC", description="IANA name; the camera's local time decides night and day."
    )
    motion: MotionConfig = MotionConfig()
    zones: dict[Slug, ZoneConfig] = Field(default_factory=dict, max_length=MAX_ZONES)
    objects: ObjectsConfig = ObjectsConfig()

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_id(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("name") is None and "id" in data:
            return {**data, "name": data["id"]}
        return data

    @field_validator("zone_description")
    @classmethod
    def _printable_description(cls, description: str) -> str:
        if _CONTROL_CHARACTERS_BUT_LINES.search(description):
            raise ValueError("holds control characters")
        return description

    @model_validator(mode="after")
    def _zone_objects_tracked(self) -> CameraConfig:
        for zone_id, zone in self.zones.items():
            untracked = [label for label in zone.objects or () if label not in self.objects.track]
            if untracked:
                raise ValueError(
                    f"zones.{zone_id}.objects: {', '.join(map(repr, untracked))} not in "
                    "objects.track, so the zone could never see them"
                )
        return self


@dataclass(frozen=True)
class CamerasFile:
    """What a cameras file configures."""

    cameras: list[CameraConfig]
    notes: list[str]
    """Parts of the file that were not imported and why (a Frigate config's unsupported
    settings), each naming its dotted path: for the caller to log."""


def load_cameras_file(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] = os.environ
) -> CamerasFile:
    """The cameras of the YAML file at ``path``.

    hearthwatch's form is ``cameras:`` holding either a mapping ``<id or name>: {fields}`` (a
    key that is not a slug is slugged, and kept as the display name unless one is given) or a
    list of ``{id or name, fields}``. A Frigate config (its cameras have ``ffmpeg``) is imported
    through :func:`hearthwatch.security.frigate.import_frigate`, with ``environ`` for its
    ``{FRIGATE_*}`` placeholders. Raises :class:`CameraConfigError` listing every problem, each
    prefixed with the file's path.
    """
    data = read_yaml_file(Path(path))
    try:
        if not isinstance(data, Mapping) or "cameras" not in data:
            raise CameraConfigError(["expected a mapping with a top-level 'cameras'"])
        entries = data["cameras"]
        if isinstance(entries, Mapping) and any(
            isinstance(body, Mapping) and "ffmpeg" in body for body in entries.values()
        ):
            from hearthwatch.security.frigate import import_frigate  # it builds on this module

            imported = import_frigate(data, environ=environ)
            return CamerasFile(cameras=imported.cameras, notes=imported.unsupported)
        unexpected = [str(key) for key in data if key != "cameras"]
        if unexpected:
            raise CameraConfigError(
                [f"{key}: not a setting of a cameras file (only 'cameras')" for key in unexpected]
            )
        return CamerasFile(cameras=_cameras(entries), notes=[])
    except CameraConfigError as error:
        raise CameraConfigError([f"{path}: {problem}" for problem in error.problems]) from None


def configured_cameras(
    defined: Mapping[str, Any], cameras_file: str | os.PathLike[str] | None
) -> CamerasFile:
    """The cameras the config file defines (its ``cameras:``, in a cameras file's form), then
    the cameras file's; an id defined in both is an error naming it."""
    try:
        cameras = _cameras(defined) if defined else []
    except CameraConfigError as error:
        raise CameraConfigError([f"config file: {problem}" for problem in error.problems]) from None
    notes: list[str] = []
    if cameras_file is not None:
        loaded = load_cameras_file(cameras_file)
        ids = {camera.id for camera in cameras}
        twice = sorted(ids & {camera.id for camera in loaded.cameras})
        if twice:
            raise CameraConfigError(
                [f"camera {i!r} is defined in the config file and in {cameras_file}" for i in twice]
            )
        cameras += loaded.cameras
        notes = [f"{cameras_file}: {note}" for note in loaded.notes]
    return CamerasFile(cameras=cameras, notes=notes)


def _cameras(entries: Any) -> list[CameraConfig]:
    """Validates every camera, then raises once with all the problems found."""
    if isinstance(entries, Mapping):
        named = [_keyed_camera(key, body) for key, body in entries.items()]
    elif isinstance(entries, list):
        named = [_listed_camera(index, body) for index, body in enumerate(entries)]
    else:
        raise CameraConfigError(["cameras: must be a mapping of cameras or a list of them"])
    if len(named) > MAX_CAMERAS:
        raise CameraConfigError([f"cameras: more than {MAX_CAMERAS} cameras"])
    problems: list[str] = []
    cameras: list[CameraConfig] = []
    where_of_id: dict[str, str] = {}
    for where, fields in named:
        try:
            camera = CameraConfig.model_validate(fields)
        except ValidationError as error:
            problems += validation_problems(error, where)
            continue
        if camera.id in where_of_id:
            problems.append(f"{where}: id {camera.id!r} is also the id of {where_of_id[camera.id]}")
            continue
        where_of_id[camera.id] = where
        cameras.append(camera)
    if problems:
        raise CameraConfigError(problems)
    return cameras


def _keyed_camera(key: Any, body: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(key, str) or not 1 <= len(key) <= 200 or _CONTROL_CHARACTERS.search(key):
        raise CameraConfigError(
            [f"cameras: key {str(key)[:40]!r}: a camera's key is a name of 1–200 characters"]
        )
    where = f"cameras.{key}"
    if not isinstance(body, Mapping):
        raise CameraConfigError([f"{where}: must be a mapping of the camera's settings"])
    if "id" in body:
        raise CameraConfigError([f"{where}.id: the key is the camera's id; remove this field"])
    if is_slug(key):
        return where, {"id": key, **body}
    return where, {"id": slugify(key), **body, "name": body.get("name") or key}


def _listed_camera(index: int, body: Any) -> tuple[str, dict[str, Any]]:
    where = f"cameras[{index}]"
    if not isinstance(body, Mapping):
        raise CameraConfigError([f"{where}: must be a mapping of the camera's settings"])
    if "id" in body:
        return f"{where} ({str(body['id'])[:64]})", dict(body)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise CameraConfigError([f"{where}: give the camera an id or a name"])
    camera_id = slugify(name)
    return f"{where} ({camera_id})", {"id": camera_id, **body}


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key written twice in one mapping (PyYAML keeps the last,
    which would drop a camera without a word); keys merged in with ``<<`` may be overridden."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"key {key_node.value[:40]!r} appears twice",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml_file(path: Path) -> Any:
    """A cameras (or Frigate) YAML file's data, read within the size, key and value limits;
    errors never quote the file's lines, which may hold stream passwords."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise CameraConfigError([f"{path}: cannot be read ({error.strerror or error})"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise CameraConfigError([f"{path}: larger than {MAX_FILE_BYTES} bytes"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CameraConfigError([f"{path}: not UTF-8 text (byte {error.start})"]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506  # a SafeLoader
    except yaml.YAMLError as error:
        # the error's own text quotes the offending line, which may hold a stream password
        raise CameraConfigError([f"{path}: invalid YAML{_yaml_where(error)}"]) from None
    if _exceeds_node_count(data, MAX_YAML_NODES):
        raise CameraConfigError([f"{path}: holds more than {MAX_YAML_NODES} values"])
    return data


def _yaml_where(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{where}: {problem}" if problem else where


def _exceeds_node_count(data: Any, limit: int) -> bool:
    pending, count = [data], 0
    while pending:
        value = pending.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False
