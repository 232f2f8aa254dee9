"""Import a Frigate config (its ``config.yml``, already parsed) as hearthwatch cameras.

:func:`import_frigate` maps what has a counterpart: each camera's detect input (through
``{FRIGATE_*}`` placeholders and Frigate's go2rtc restream), detect rate and size, motion
settings and masks, zones, tracked labels and object filters, with the global ``detect``,
``motion``, ``objects`` and ``ffmpeg`` sections merged into each camera as Frigate merges them
(the camera's values win). Everything else it finds is listed in ``unsupported`` with its dotted
path and why. Nothing unsupported is fatal (a camera whose stream hearthwatch cannot read is
left out and listed); malformed data in a mapped field raises
:class:`~hearthwatch.security.cameras.CameraConfigError` naming the path. No message holds a
stream URL or a substituted variable.

Pure functions over plain data: safe to call from any thread.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ValidationError

from hearthwatch.security.cameras import (
    MAX_CAMERAS,
    CameraConfig,
    CameraConfigError,
    MotionConfig,
    ObjectsConfig,
    Polygon,
    ZoneConfig,
    field_path,
    is_slug,
    slugify,
    validate_timezone,
    validation_problems,
)
from hearthwatch.security.sources.config import (
    FileSourceConfig,
    HttpSourceConfig,
    RtspSourceConfig,
)

FRIGATE_DEFAULT_TRACK = ("person",)
"""What Frigate tracks when ``objects.track`` is not set."""
GO2RTC_RESTREAM_HOSTS = ("127.0.0.1", "localhost")
GO2RTC_RESTREAM_PORT = 8554

_ROLES = ("detect", "record", "audio")
_STREAM_SCHEMES = ("rtsp", "rtsps", "rtspx", "http", "https")
_MERGED_SECTIONS = ("detect", "motion", "objects", "ffmpeg")
_CAMERA_KEYS = {"enabled", "friendly_name", "ffmpeg", *_MERGED_SECTIONS, "zones"}
_DETECT_KEYS = {"enabled", "width", "height", "fps"}
_MOTION_KEYS = {"enabled", "threshold", "contour_area", "lightning_threshold", "mask"}
_MASK_KEYS = {"coordinates", "enabled", "friendly_name"}
_OBJECTS_KEYS = {"track", "filters"}
_FILTER_KEYS = {"min_score", "min_area", "max_area", "min_ratio", "max_ratio"}
_FFMPEG_KEYS = {"inputs"}
_INPUT_KEYS = {"path", "roles"}
_ZONE_KEYS = {"coordinates", "objects", "inertia", "friendly_name", "enabled"}
_Model = TypeVar("_Model", bound=BaseModel)
_STREAM_SOURCE_TYPES: dict[str, type[RtspSourceConfig | HttpSourceConfig | FileSourceConfig]] = {
    "rtsp": RtspSourceConfig,
    "http": HttpSourceConfig,
    "file": FileSourceConfig,
}
_SOURCE_FIELDS = {"url": "", "path": ""}
"""A source's fields, left out of error paths: the path already names the input."""
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{(FRIGATE_[A-Za-z0-9_]+)\}|\{FRIGATE_")

_WHY = {
    "record": "recording is not supported: hearthwatch keeps a clip per event",
    "snapshots": "not imported: hearthwatch stores its own event snapshots",
    "audio": "audio detection is not supported",
    "audio_transcription": "audio transcription is not supported",
    "onvif": "ONVIF control and PTZ autotracking are not supported",
    "birdseye": "the Birdseye view is not supported",
    "live": "Frigate's live view is not supported",
    "mqtt": "not imported: MQTT is set in hearthwatch's own settings",
    "notifications": "not imported: notifications are set in hearthwatch's own settings",
    "detectors": "not imported: the detector is set in hearthwatch's own settings",
    "model": "not imported: the detection model is set in hearthwatch's own settings",
    "review": "not imported: hearthwatch's analysers grade each event's risk",
    "genai": "not imported: the LLM is set in hearthwatch's own settings",
    "semantic_search": "semantic search is not supported",
    "face_recognition": "not imported: enrichment models are set in hearthwatch's own settings",
    "lpr": "not imported: enrichment models are set in hearthwatch's own settings",
    "classification": "custom classification models are not supported",
    "camera_groups": "camera groups are not supported",
    "profiles": "profiles are not supported",
    "timestamp_style": "timestamp overlays are not supported",
    "ui": "Frigate's UI settings do not apply (only ui.timezone is used)",
    "telemetry": "Frigate's telemetry settings do not apply",
    "database": "Frigate's database settings do not apply",
    "logger": "Frigate's log settings do not apply",
    "auth": "Frigate's authentication settings do not apply",
    "proxy": "Frigate's proxy settings do not apply",
    "tls": "Frigate's TLS settings do not apply",
    "networking": "Frigate's network settings do not apply",
    "environment_vars": "not applied: only FRIGATE_ variables are used, for placeholders",
    "go2rtc": "hearthwatch runs no restreamer: go2rtc streams only resolve cameras' detect inputs",
    "best_image_timeout": "hearthwatch picks each event's best frame itself",
    "webui_url": "not supported",
    "type": "LPR camera mode is not supported",
    "triggers": "semantic-search triggers are not supported",
    "path": "hearthwatch decodes through PyAV, not an FFmpeg binary",
    "global_args": "FFmpeg arguments are not applied",
    "hwaccel_args": "FFmpeg arguments are not applied: hearthwatch chooses the decoder",
    "input_args": "FFmpeg arguments are not applied (only an RTSP transport of udp is kept)",
    "output_args": "FFmpeg arguments are not applied",
    "retry_interval": "hearthwatch reconnects on its own schedule",
    "apple_compatibility": "recording is not supported: hearthwatch keeps a clip per event",
    "gpu": "hearthwatch chooses the decoding device",
    "min_initialized": "the tracker's settings are hearthwatch's own",
    "max_disappeared": "the tracker's settings are hearthwatch's own",
    "stationary": "the tracker's settings are hearthwatch's own",
    "annotation_offset": "recording is not supported: hearthwatch keeps a clip per event",
    "improve_contrast": "the motion gate's own tuning applies",
    "frame_height": "the motion gate's own tuning applies",
    "frame_alpha": "the motion gate's own tuning applies",
    "delta_alpha": "the motion gate's own tuning applies",
    "skip_motion_threshold": "the motion gate's own tuning applies",
    "mqtt_off_delay": "not imported: MQTT is set in hearthwatch's own settings",
    "threshold": "Frigate's threshold on a track's median score has no counterpart (min_score "
    "is kept)",
    "mask": "object masks are not supported (motion masks are)",
    "loitering_time": "loitering time is not supported",
    "distances": "speed estimation is not supported",
    "speed_threshold": "speed estimation is not supported",
    "filters": "zone-level object filters are not supported",
}


class _MaskEntry(NamedTuple):
    path: str
    coordinates_path: str
    settings: Mapping[str, Any]


@dataclass(frozen=True)
class FrigateImport:
    """The cameras a Frigate config maps to, and what of it was not imported."""

    cameras: list[CameraConfig]
    unsupported: list[str]
    """``<dotted path>: <why>``, one line per setting left out, for the caller to log."""


def import_frigate(
    data: Mapping[str, Any], *, environ: Mapping[str, str] = os.environ
) -> FrigateImport:
    """The cameras of the Frigate config ``data``; ``{FRIGATE_*}`` placeholders are read from
    the ``FRIGATE_``-prefixed variables of ``environ`` and of the config's
    ``environment_vars`` (which win, as in Frigate)."""
    if not isinstance(data, Mapping):
        raise CameraConfigError(["the Frigate config must be a mapping"])
    return _Importer(data, environ).run()


class _Importer:
    def __init__(self, data: Mapping[str, Any], environ: Mapping[str, str]) -> None:
        self.data = data
        self.notes: list[str] = []
        self.variables = {k: v for k, v in environ.items() if k.startswith("FRIGATE_")}
        self.globals = {name: _section(data, name, "") for name in _MERGED_SECTIONS}
        self.streams: Mapping[str, Any] = {}
        self.timezone: str | None = None

    def run(self) -> FrigateImport:
        cameras_raw = self.data.get("cameras")
        if not isinstance(cameras_raw, Mapping) or not cameras_raw:
            raise CameraConfigError(["cameras: must be a mapping of at least one camera"])
        if len(cameras_raw) > MAX_CAMERAS:
            raise CameraConfigError([f"cameras: more than {MAX_CAMERAS} cameras"])
        self._top_level()
        problems: list[str] = []
        cameras: list[CameraConfig] = []
        key_of_id: dict[str, str] = {}
        for key, body in cameras_raw.items():
            try:
                camera = self._camera(_name(key, "cameras"), body)
            except CameraConfigError as error:
                problems += error.problems
                continue
            if camera is None:
                continue
            if camera.id in key_of_id:
                problems.append(
                    f"cameras.{key}: its id {camera.id!r} is also the id of "
                    f"cameras.{key_of_id[camera.id]}"
                )
                continue
            key_of_id[camera.id] = key
            cameras.append(camera)
        if problems:
            raise CameraConfigError(problems)
        return FrigateImport(cameras=cameras, unsupported=list(dict.fromkeys(self.notes)))

    # -- the file's top level --------------------------------------------------------------

    def _top_level(self) -> None:
        for key, value in self.data.items():
            if key in ("cameras", "version", *_MERGED_SECTIONS):
                continue
            if key == "environment_vars":
                self._environment_vars(value)
            elif key == "go2rtc":
                self._go2rtc(value)
            elif key == "ui":
                self._ui(value)
            else:
                self._note(str(key), str(key))
        self._section_notes(self.globals, "")

    def _environment_vars(self, value: Any) -> None:
        for name, setting in _mapping(value, "environment_vars").items():
            if not str(name).startswith("FRIGATE_"):
                self._note(f"environment_vars.{name}", "environment_vars")
            elif not isinstance(setting, str | int | float) or isinstance(setting, bool):
                raise CameraConfigError([f"environment_vars.{name}: must be a string"])
            else:
                self.variables[str(name)] = str(setting)

    def _go2rtc(self, value: Any) -> None:
        self._note("go2rtc", "go2rtc")
        self.streams = _section(_mapping(value, "go2rtc"), "streams", "go2rtc")

    def _ui(self, value: Any) -> None:
        ui = _mapping(value, "ui")
        for key, setting in ui.items():
            if key != "timezone":
                self._note(f"ui.{key}", "ui")
            elif setting is not None:
                try:
                    self.timezone = validate_timezone(_string(setting, "ui.timezone"))
                except ValueError as error:
                    raise CameraConfigError([f"ui.timezone: {error}"]) from None

    def _section_notes(self, sections: Mapping[str, Mapping[str, Any]], prefix: str) -> None:
        """Notes on the unmapped settings of a level's detect, motion, objects and ffmpeg."""
        self._note_unmapped(sections["detect"], _DETECT_KEYS, field_path(prefix, "detect"))
        motion = sections["motion"]
        self._note_unmapped(motion, _MOTION_KEYS, field_path(prefix, "motion"))
        if motion.get("enabled") is False:
            self.notes.append(
                f"{field_path(prefix, 'motion.enabled')}: the motion gate cannot be turned off"
            )
        objects = sections["objects"]
        objects_path = field_path(prefix, "objects")
        self._note_unmapped(objects, _OBJECTS_KEYS, objects_path)
        for label, settings in _section(objects, "filters", objects_path).items():
            if isinstance(settings, Mapping):
                self._note_unmapped(settings, _FILTER_KEYS, f"{objects_path}.filters.{label}")
        self._note_unmapped(sections["ffmpeg"], _FFMPEG_KEYS, field_path(prefix, "ffmpeg"))

    # -- one camera ------------------------------------------------------------------------

    def _camera(self, key: str, raw: Any) -> CameraConfig | None:
        path = f"cameras.{key}"
        body = _mapping(raw, path)
        own = {name: _section(body, name, path) for name in _MERGED_SECTIONS}
        merged = {name: _merged(own[name], self.globals[name]) for name in _MERGED_SECTIONS}
        for setting in body:
            if setting not in _CAMERA_KEYS:
                self._note(f"{path}.{setting}", str(setting))
        self._section_notes(own, path)
        source = self._source(path, _section(body, "ffmpeg", path), merged["ffmpeg"])
        if source is None:
            return None
        detect = merged["detect"]
        frame = _detect_size(detect, f"{path}.detect")
        fields: dict[str, Any] = {
            "id": key if is_slug(key) else slugify(key),
            "name": body.get("friendly_name") or key,
            "source": source,
            "enabled": body.get("enabled", True),
            "motion": self._motion(path, own["motion"], frame),
            "zones": self._zones(path, _section(body, "zones", path), frame),
            "objects": self._objects(path, merged["objects"], frame),
        }
        if detect.get("enabled") is False:
            fields["enabled"] = False
            self.notes.append(f"{path}: imported disabled: Frigate's detect.enabled is false")
        if detect.get("fps") is not None:
            fields["detect_fps"] = detect["fps"]
        if self.timezone is not None:
            fields["timezone"] = self.timezone
        rename = {"detect_fps": "detect.fps", "name": "friendly_name"}
        return _validated(CameraConfig, fields, path, rename=rename)

    def _source(
        self, path: str, own_ffmpeg: Mapping[str, Any], ffmpeg: Mapping[str, Any]
    ) -> RtspSourceConfig | HttpSourceConfig | FileSourceConfig | None:
        inputs = own_ffmpeg.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise CameraConfigError([f"{path}.ffmpeg.inputs: must list at least one input"])
        role_holder: dict[str, int] = {}
        for index, item in enumerate(inputs):
            where = f"{path}.ffmpeg.inputs[{index}]"
            self._note_unmapped(_mapping(item, where), _INPUT_KEYS, where)
            roles = _roles(item.get("roles"), f"{where}.roles", only_input=len(inputs) == 1)
            for role in roles:
                if role in role_holder:
                    raise CameraConfigError(
                        [
                            f"{path}.ffmpeg.inputs: the {role} role is given to both "
                            f"inputs[{role_holder[role]}] and inputs[{index}]"
                        ]
                    )
                role_holder[role] = index
                if role != "detect":
                    self._note(f"{where}.roles.{role}", role)
        if "detect" not in role_holder:
            raise CameraConfigError([f"{path}.ffmpeg.inputs: no input has the detect role"])
        where = f"{path}.ffmpeg.inputs[{role_holder['detect']}].path"
        detect_input = inputs[role_holder["detect"]]
        location = self._substituted(_string(detect_input.get("path"), where), where)
        stream = _restream_name(location)
        if stream is not None:
            return self._restreamed_source(path, stream, where)
        args = detect_input.get("input_args") or ffmpeg.get("input_args")
        return self._direct_source(path, location, where, _rtsp_transport(args))

    def _direct_source(
        self, path: str, location: str, where: str, transport: Literal["tcp", "udp"]
    ) -> RtspSourceConfig | HttpSourceConfig | FileSourceConfig | None:
        scheme = _scheme(location)
        if scheme in ("rtsp", "rtsps"):
            fields: dict[str, Any] = {"type": "rtsp", "url": location, "transport": transport}
        elif scheme in ("http", "https"):
            fields = {"type": "http", "url": location}
        elif scheme in ("file", ""):
            file_path = unquote(urlsplit(location).path) if scheme else location
            fields = {"type": "file", "path": Path(file_path)}
        else:
            self.notes.append(
                f"{path}: not imported: its detect input ({where}) is a {scheme}: stream; "
                "hearthwatch reads rtsp, http and files"
            )
            return None
        return _validated(_STREAM_SOURCE_TYPES[fields["type"]], fields, where, _SOURCE_FIELDS)

    def _restreamed_source(
        self, path: str, stream: str, where: str
    ) -> RtspSourceConfig | HttpSourceConfig | None:
        """The first rtsp or http source of go2rtc stream ``stream``, which the camera's detect
        input reads through Frigate's restream."""
        if stream not in self.streams:
            raise CameraConfigError(
                [
                    f"{where}: reads go2rtc stream {stream[:64]!r} of Frigate's restream, but "
                    "go2rtc.streams has no such stream"
                ]
            )
        stream_path = f"go2rtc.streams.{stream}"
        listed = self.streams[stream]
        if isinstance(listed, str):
            entries = [(stream_path, listed)]
        elif isinstance(listed, list):
            entries = [(f"{stream_path}[{index}]", entry) for index, entry in enumerate(listed)]
        else:
            raise CameraConfigError([f"{stream_path}: must be a URL or a list of URLs"])
        chosen: RtspSourceConfig | HttpSourceConfig | None = None
        for entry_path, entry in entries:
            entry = _string(entry, entry_path)
            if chosen is not None:
                self.notes.append(
                    f"{entry_path}: not used: a stream's first rtsp or http source is"
                )
                continue
            # placeholders are filled only where the source may be used: a missing variable in
            # an ffmpeg: or exec: source is no error
            usable = entry.startswith("{") or _scheme(entry) in _STREAM_SCHEMES
            filled = self._substituted(entry, entry_path) if usable else entry
            location, _, options = filled.partition("#")
            scheme = _scheme(location)
            if scheme not in _STREAM_SCHEMES:
                self.notes.append(
                    f"{entry_path}: {scheme or 'this'} source is not supported: hearthwatch reads "
                    "rtsp and http streams directly"
                )
                continue
            if scheme == "rtspx":
                location = "rtsps" + location[len("rtspx") :]
                self.notes.append(f"{entry_path}: rtspx: read as rtsps: (TLS not verified)")
            if scheme.startswith("http"):
                chosen = _validated(HttpSourceConfig, {"url": location}, entry_path, _SOURCE_FIELDS)
            else:
                chosen = _validated(RtspSourceConfig, {"url": location}, entry_path, _SOURCE_FIELDS)
            if options:
                self.notes.append(f"{entry_path}: go2rtc options after '#' are not applied")
        if chosen is None:
            self.notes.append(f"{path}: not imported: {stream_path} has no rtsp or http source")
        return chosen

    def _motion(
        self, path: str, own: Mapping[str, Any], frame: tuple[int, int] | None
    ) -> MotionConfig:
        motion_path = f"{path}.motion"
        defaults = self.globals["motion"]
        masks = _mask_entries(defaults.get("mask"), "motion.mask")
        for name, entry in _mask_entries(own.get("mask"), f"{motion_path}.mask").items():
            if name in masks:
                entry = entry._replace(settings=_merged(entry.settings, masks[name].settings))
            masks[name] = entry
        polygons: list[Polygon] = []
        for entry in masks.values():
            self._note_unmapped(entry.settings, _MASK_KEYS, entry.path)
            if entry.settings.get("enabled", True) is False:
                self.notes.append(f"{entry.path}: not imported: disabled")
            elif entry.settings.get("coordinates"):
                coordinates = entry.settings["coordinates"]
                polygons += _mask_polygons(coordinates, entry.coordinates_path, frame)
        merged = _merged(own, defaults)
        fields = {
            key: merged[key]
            for key in ("threshold", "contour_area", "lightning_threshold")
            if merged.get(key) is not None
        }
        return _validated(
            MotionConfig, {**fields, "masks": polygons}, motion_path, {"masks": "mask"}
        )

    def _zones(
        self, path: str, raw: Mapping[str, Any], frame: tuple[int, int] | None
    ) -> dict[str, ZoneConfig]:
        zones: dict[str, ZoneConfig] = {}
        key_of_id: dict[str, str] = {}
        for key, zone_raw in raw.items():
            key = _name(key, f"{path}.zones")
            where = f"{path}.zones.{key}"
            body = _mapping(zone_raw, where)
            self._note_unmapped(body, _ZONE_KEYS, where)
            if body.get("enabled", True) is False:
                self.notes.append(f"{where}: not imported: disabled")
                continue
            zone_id = key if is_slug(key) else slugify(key)
            if zone_id in key_of_id:
                raise CameraConfigError(
                    [f"{where}: its id {zone_id!r} is also the id of zone {key_of_id[zone_id]}"]
                )
            key_of_id[zone_id] = key
            if "coordinates" not in body:
                raise CameraConfigError([f"{where}.coordinates: required"])
            fields = {
                "polygon": _zone_polygon(body["coordinates"], f"{where}.coordinates", frame),
                "objects": _zone_objects(body.get("objects")),
                "friendly_name": body.get("friendly_name") or (None if key == zone_id else key),
            }
            if body.get("inertia") is not None:
                fields["inertia"] = body["inertia"]
            zones[zone_id] = _validated(ZoneConfig, fields, where, {"polygon": "coordinates"})
        return zones

    def _objects(
        self, path: str, merged: Mapping[str, Any], frame: tuple[int, int] | None
    ) -> ObjectsConfig:
        objects_path = f"{path}.objects"
        filters: dict[str, Any] = {}
        for label, raw in _section(merged, "filters", objects_path).items():
            settings = {} if raw is None else _mapping(raw, f"{objects_path}.filters.{label}")
            filters[label] = {
                key: _area_share(value, frame) if key.endswith("_area") else value
                for key, value in settings.items()
                if key in _FILTER_KEYS
            }
        track = merged.get("track", list(FRIGATE_DEFAULT_TRACK))
        return _validated(ObjectsConfig, {"track": track, "filters": filters}, objects_path)

    # -- helpers that note or substitute ---------------------------------------------------

    def _note(self, path: str, setting: str) -> None:
        self.notes.append(f"{path}: {_WHY.get(setting, 'not supported')}")

    def _note_unmapped(self, section: Mapping[str, Any], mapped: set[str], path: str) -> None:
        for key in section:
            if key not in mapped:
                self._note(f"{path}.{key}", str(key))

    def _substituted(self, text: str, where: str) -> str:
        """``text`` with each ``{FRIGATE_NAME}`` replaced, ``{{``/``}}`` unescaped (Frigate's
        rules); other braces stay. Errors name the variable, never the text."""

        def replace(match: re.Match[str]) -> str:
            token, name = match.group(0), match.group(1)
            if token in ("{{", "}}"):
                return token[0]
            if name is None:
                raise CameraConfigError([f"{where}: a {{FRIGATE_…}} placeholder is malformed"])
            if name not in self.variables:
                raise CameraConfigError(
                    [f"{where}: placeholder {{{name}}}: environment variable {name} is not set"]
                )
            return self.variables[name]

        return _PLACEHOLDER.sub(replace, text)


# -- plain-data helpers ----------------------------------------------------------------------


def _validated(
    model: type[_Model],
    fields: Mapping[str, Any],
    where: str,
    rename: Mapping[str, str] | None = None,
) -> _Model:
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        raise CameraConfigError(validation_problems(error, where, rename=rename)) from None


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise CameraConfigError([f"{where}: must be a mapping"])
    return value


def _section(container: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = container.get(key)
    return {} if value is None else _mapping(value, field_path(where, key))


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise CameraConfigError([f"{where}: must be a non-empty string"])
    return value


def _name(key: Any, where: str) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= 200 or not key.isprintable():
        raise CameraConfigError(
            [f"{where}: key {str(key)[:40]!r} must be a name of 1–200 characters"]
        )
    return key


def _merged(preferred: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` deep-merged under ``preferred``: mappings merge, anything else (lists
    included) is taken from ``preferred`` when it has the key (Frigate's ``deep_merge``)."""
    merged = dict(defaults)
    for key, value in preferred.items():
        default = merged.get(key)
        if isinstance(value, Mapping) and isinstance(default, Mapping):
            merged[key] = _merged(value, default)
        else:
            merged[key] = value
    return merged


def _roles(value: Any, where: str, *, only_input: bool) -> list[str]:
    """An input's roles; Frigate gives a camera's only input the detect role whatever it says."""
    if value is None and only_input:
        return ["detect"]
    if not isinstance(value, list) or not all(isinstance(role, str) for role in value):
        raise CameraConfigError([f"{where}: must be a list of roles ({', '.join(_ROLES)})"])
    unknown = [role for role in value if role not in _ROLES]
    if unknown:
        raise CameraConfigError(
            [f"{where}: unknown role {unknown[0][:20]!r} ({', '.join(_ROLES)})"]
        )
    if len(set(value)) != len(value):
        raise CameraConfigError([f"{where}: a role is listed twice"])
    return ["detect", *(role for role in value if role != "detect")] if only_input else value


def _scheme(location: str) -> str:
    try:
        scheme = urlsplit(location).scheme.lower()
    except ValueError:
        return ""
    return "" if len(scheme) == 1 else scheme  # one letter: a Windows drive


def _restream_name(location: str) -> str | None:
    """The go2rtc stream an rtsp URL reads from Frigate's restream, else None."""
    try:
        parts = urlsplit(location)
        port = parts.port
    except ValueError:
        return None
    on_restream = parts.hostname in GO2RTC_RESTREAM_HOSTS and port == GO2RTC_RESTREAM_PORT
    if parts.scheme.lower() != "rtsp" or not on_restream:
        return None
    return unquote(parts.path.lstrip("/"))


def _rtsp_transport(args: Any) -> Literal["tcp", "udp"]:
    """udp where Frigate's input arguments ask for it (its ``preset-rtsp-udp`` or
    ``-rtsp_transport udp``), tcp otherwise (Frigate's default presets use tcp)."""
    if isinstance(args, str):
        tokens = args.split()
    elif isinstance(args, list):
        tokens = [str(arg) for arg in args]
    else:
        return "tcp"
    if tokens == ["preset-rtsp-udp"]:
        return "udp"
    pairs = zip(tokens, tokens[1:], strict=False)
    return "udp" if ("-rtsp_transport", "udp") in pairs else "tcp"


def _detect_size(detect: Mapping[str, Any], where: str) -> tuple[int, int] | None:
    if detect.get("width") is None and detect.get("height") is None:
        return None
    size = []
    for name in ("width", "height"):
        value = detect.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 100_000:
            raise CameraConfigError(
                [f"{where}.{name}: must be a positive number of pixels, given with the other"]
            )
        size.append(value)
    return size[0], size[1]


def _mask_entries(value: Any, where: str) -> dict[str, _MaskEntry]:
    """A mask setting in any of Frigate's forms, by name: 0.18's mapping of named masks, or an
    older string or list of strings (named as Frigate's migration names them, so a camera's
    ``motion_mask_1`` replaces the global one)."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        return {"motion_mask_1": _MaskEntry(where, where, {"coordinates": value})}
    if isinstance(value, list):
        return {
            f"motion_mask_{index + 1}": _MaskEntry(
                f"{where}[{index}]", f"{where}[{index}]", {"coordinates": item}
            )
            for index, item in enumerate(value)
            if item
        }
    entries = {}
    for name, entry in _mapping(value, where).items():
        if entry is not None:
            entry_path = f"{where}.{name}"
            entries[str(name)] = _MaskEntry(
                entry_path, f"{entry_path}.coordinates", _mapping(entry, entry_path)
            )
    return entries


def _numbers(text: str, where: str) -> list[float]:
    try:
        numbers = [float(part) for part in text.split(",")]
    except ValueError:
        raise CameraConfigError(
            [f"{where}: must be numbers x,y,x,y,… separated by commas"]
        ) from None
    if not all(math.isfinite(number) and number >= 0 for number in numbers):
        raise CameraConfigError([f"{where}: coordinates must be finite and not negative"])
    return numbers


def _polygon(numbers: list[float], where: str, frame: tuple[int, int] | None) -> Polygon:
    """x,y numbers as a relative polygon: relative already, or legacy pixels of the detect
    frame when any value is above 1."""
    if len(numbers) % 2:
        raise CameraConfigError([f"{where}: an odd count of numbers (x,y pairs expected)"])
    points = list(zip(numbers[::2], numbers[1::2], strict=True))
    if len(points) < 3:
        raise CameraConfigError([f"{where}: a polygon needs at least 3 points"])
    if all(number <= 1 for number in numbers):
        return tuple(points)
    if frame is None:
        raise CameraConfigError(
            [f"{where}: pixel coordinates (values above 1) need detect.width and detect.height"]
        )
    width, height = frame
    for x, y in points:
        if x > width or y > height:
            raise CameraConfigError(
                [f"{where}: point {x:g},{y:g} lies outside the {width}x{height} detect frame"]
            )
    return tuple((x / width, y / height) for x, y in points)


def _mask_polygons(value: Any, where: str, frame: tuple[int, int] | None) -> list[Polygon]:
    """A mask's coordinates: one polygon ``"x,y,x,y,…"`` or a list of them."""
    if isinstance(value, str):
        return [_polygon(_numbers(value, where), where, frame)]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [
            _polygon(_numbers(item, f"{where}[{index}]"), f"{where}[{index}]", frame)
            for index, item in enumerate(value)
        ]
    raise CameraConfigError([f"{where}: must be a string x,y,x,y,… or a list of them"])


def _zone_polygon(value: Any, where: str, frame: tuple[int, int] | None) -> Polygon:
    """A zone's coordinates: ``"x,y,x,y,…"`` or a list of ``"x,y"`` points."""
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        value = ",".join(value)
    if not isinstance(value, str):
        raise CameraConfigError([f"{where}: must be a string x,y,x,y,… or a list of x,y points"])
    return _polygon(_numbers(value, where), where, frame)


def _zone_objects(value: Any) -> Any:
    """Frigate's zone objects (a label, comma-separated labels or a list; empty for all) as
    hearthwatch's (None for all); anything else is left for validation to refuse."""
    if isinstance(value, str):
        value = [label.strip() for label in value.split(",") if label.strip()]
    return value or None


def _area_share(value: Any, frame: tuple[int, int] | None) -> Any:
    """A pixel area as a share of the detect frame it was measured in, so it holds at any
    resolution; left as it is without a detect size or when larger than the frame."""
    if frame is None or isinstance(value, bool) or not isinstance(value, int):
        return value
    frame_area = frame[0] * frame[1]
    return value / frame_area if 0 <= value <= frame_area else value
