"""One settings model for the whole service: defaults → tuned batching (the file
``hearthwatch tune`` writes, applied only when ``tuned_config_file`` names it) → config file
(YAML) → environment.

Every knob has one name, one default and one environment variable (the name in upper case;
keys of the plugin settings as ``DETECTOR__KEY`` and ``LLM_ENGINE__KEY``).
:func:`load_settings` records where each effective value came from so ``hearthwatch config``
can print it. Importing this module or validating settings imports no torch: the detector
plugins' settings are pydantic only, and a plugin's implementation is imported when a detector
is built. Settings objects are plain data, safe to read from any thread.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from hearthwatch.llm.engines.registry import LlamaCppConfig, LlmEngineConfig
from hearthwatch.runtime.detection.settings import (
    HogConfig,
    ModelSourceConfig,
    default_detector,
    packaged_darknet_files,
)

if TYPE_CHECKING:
    from hearthwatch.runtime.accel.optimize import OptimizationSettings
    from hearthwatch.security.analysis.risk_rules import RiskRules

CONFIG_FILE_ENV = "HEARTHWATCH_CONFIG"
NESTED_ENV_SEPARATOR = "__"
NESTED_DEFAULT_TYPES = {"detector": HogConfig().type, "llm_engine": LlamaCppConfig().type}
DEFAULT_TUNED_FILE = Path("hearthwatch-tuned.yml")
"""Where ``hearthwatch tune`` writes when no file is named; never read unless named."""
SECURITY_CLASSES = (
    "person", "car", "truck", "dog", "cat", "bird", "bicycle", "motorcycle", "bus",
)  # fmt: skip
"""The classes a home-security camera cares about: the default of ``security_classes``."""


class Settings(BaseModel):
    """Effective configuration of a hearthwatch process."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    host: str = Field(
        "127.0.0.1",
        description="Address the HTTP server binds to; 0.0.0.0 opens every route to the network.",
    )
    port: int = Field(8090, ge=1, le=65535, description="Port the HTTP server listens on.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    use_gpu: bool = Field(True, description="Use CUDA when present; false forces the CPU.")

    model_name: str = Field("detector", pattern=r"^[A-Za-z0-9_.-]+$")
    detector: ModelSourceConfig = Field(
        default_factory=HogConfig,
        description="Unset: YOLOv3-tiny from MODELS_DIR when `hearthwatch models install` put "
        "it there, else OpenCV's HOG person detector.",
    )

    max_batch_size: int = Field(8, ge=1, le=1024)
    max_queue_delay_ms: float = Field(
        5.0,
        ge=0.0,
        le=10_000.0,
        description="With a free execution slot while another batch runs (OVERLAP on CUDA), "
        "how long after the oldest arrival the next batch waits for company; with one slot, "
        "requests arriving during a batch form the next one and this has no effect. A lone "
        "request on an idle model starts at once.",
    )
    min_queue_delay_ms: float = Field(
        0.0,
        ge=0.0,
        le=10_000.0,
        description="How long a request on an idle model waits for company (at most "
        "max_queue_delay_ms); 0 starts it at once.",
    )
    max_queue_size: int = Field(256, ge=1, description="Waiting requests before 503.")
    request_timeout_ms: float = Field(
        10_000.0, gt=0.0, description="Default per-request deadline; expired requests get 504."
    )
    decode_workers: int = Field(default_factory=lambda: max(2, os.cpu_count() or 2), ge=1, le=256)

    detection_confidence_threshold: float = Field(0.5, ge=0.0, le=1.0)
    security_classes: list[str] = Field(
        default_factory=lambda: list(SECURITY_CLASSES),
        description="Class names /detect and v2 report unless a request asks for all classes.",
    )
    max_image_pixels: int = Field(50_000_000, ge=1)
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1)
    body_read_timeout_s: float = Field(
        30.0,
        gt=0.0,
        description="Longest wait for the next piece of a request body; then 408, and the "
        "connection closes.",
    )
    shutdown_grace_s: float = Field(
        10.0,
        ge=0.0,
        description="On SIGTERM, how long requests in flight may take before they are answered "
        "503 and cancelled.",
    )

    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="auto: fp16 on CUDA, fp32 on the CPU."
    )
    channels_last: bool = True
    cudnn_benchmark: bool = True
    torch_compile: bool = False
    cuda_graphs: bool = Field(
        True, description="On CUDA: one graph per batch bucket (1, 2, 4 … MAX_BATCH_SIZE)."
    )
    overlap: bool = Field(
        True, description="On CUDA: prepare the next batch while the device runs this one."
    )
    compile_cache_dir: Path = Field(
        Path(".cache/torch-compile"),
        description="torch.compile's artefacts, kept so a restart does not compile again.",
    )
    warmup: bool = True

    tuned_config_file: Path | None = Field(
        None,
        description="Batching chosen by `hearthwatch tune`, applied under the config file; "
        "only a file named here is read.",
    )

    llm_enabled: bool = Field(True, description="Run the LLM engine and its /v1 routes.")
    llm_profile: str | None = Field(None, description="Hardware profile; from the GPU if unset.")
    llm_profiles_file: Path | None = Field(
        None, description="Profiles file; the built-in one if unset."
    )
    llm_engine: LlmEngineConfig = Field(default_factory=LlamaCppConfig)
    llm_request_timeout_s: float = Field(120.0, gt=0)
    llm_startup_timeout_s: float = Field(120.0, gt=0)

    enrich_enabled: bool = Field(True, description="Serve /enrich from the model zoo.")
    enrich_models_file: Path | None = Field(
        None, description="Enrichment models (models.yml); the built-in one if unset."
    )
    models_dir: Path = Field(Path("models"), description="Where relative weight paths point.")
    enrich_timeout_ms: float = Field(
        30_000.0, gt=0.0, description="Deadline of one /enrich request, model loads included."
    )
    vram_budget_gb: float | None = Field(
        None, gt=0.0, description="Zoo budget; unset: VRAM_BUDGET_FRACTION of free memory."
    )
    vram_budget_fraction: float = Field(0.8, gt=0.0, le=1.0)
    vram_reserve_gb: float = Field(1.0, ge=0.0, description="Kept out of a fractional budget.")
    host_reserve_gb: float = Field(
        2.0, ge=0.0, description="Host memory left free when keeping evicted models on the host."
    )

    gpu_sample_interval_s: float = Field(1.0, gt=0.0, le=60.0)
    gpu_history_minutes: int = Field(60, ge=1, le=24 * 60)

    pipeline_enabled: bool = Field(
        True,
        description="Watch cameras (ingest, motion gate, tracking, windows, events, "
        "/api/cameras and /api/events); off, the server imports none of the camera "
        "pipeline's dependencies (SQLAlchemy, Alembic, PyAV).",
    )
    cameras: dict[str, Any] = Field(
        default_factory=dict,
        description="Cameras defined in the config file itself, as a cameras file's "
        "`cameras:` (id or name → fields); validated when the pipeline starts.",
    )
    cameras_file: Path | None = Field(
        None,
        description="cameras.yml or a Frigate config; the cameras it (and `cameras:` here) "
        "defines are the source of truth for them. Cameras added through /api/cameras are "
        "kept in the database.",
    )
    data_dir: Path = Field(
        Path("data"),
        description="The events database (SQLite), frames awaiting detection, snapshots and clips.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the events store, e.g. postgresql+psycopg://u:p@host/db; "
        "unset: SQLite (WAL) at DATA_DIR/hearthwatch.db.",
    )
    batch_window_seconds: float = Field(
        90.0, gt=0.0, le=3600.0, description="A camera's window of detections closes this long "
        "after it opened."
    )  # fmt: skip
    batch_idle_timeout_seconds: float = Field(
        30.0, gt=0.0, le=3600.0, description="…or this long after its last detection."
    )
    detection_queue_max_size: int = Field(
        32,
        ge=1,
        le=10_000,
        description="Frames admitted for detection and not yet done, all cameras together; "
        "when full, pushed frames answer 503 and stream readers drop their oldest frames.",
    )
    stream_pending_frames: int = Field(
        4, ge=1, le=1000, description="Per stream camera, frames with motion waiting for room "
        "in the detection queue; the oldest is dropped (and counted) beyond this."
    )  # fmt: skip
    enrichment_interval_s: float = Field(
        10.0, gt=0.0, description="Each track is enriched at most once per this interval."
    )
    source_roots: list[Path] = Field(
        default_factory=lambda: [Path("media")],
        description="Directories `file` and `folder` camera sources may point into.",
    )
    stream_hosts: list[str] = Field(
        default_factory=lambda: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"],
        description="Hosts, addresses or networks `rtsp`/`http` camera sources may name (the "
        "home networks by default; loopback and link-local only when named).",
    )
    camera_offline_after_s: float = Field(
        30.0, gt=0.0, description="A camera with no frame for this long is offline."
    )
    camera_tamper_after_s: float = Field(
        10.0, gt=0.0, description="A covered or moved camera is flagged after this long."
    )
    retention_days: float = Field(
        30.0, gt=0.0, description="Events, detections, snapshots and clips older are deleted."
    )
    retention_max_gb: float = Field(
        20.0, gt=0.0, description="Snapshots, clips and frames beyond this: oldest deleted."
    )
    analyser: str = Field(
        "rules", description="What turns a closed window into an event: rules or llm."
    )
    analyser_options: dict[str, Any] = Field(
        default_factory=dict, description="The analyser's own settings (validated by it)."
    )
    risk_rules: dict[str, Any] = Field(
        default_factory=dict,
        description="Floors under the risk score per camera, zone, hours and arm mode, and the "
        "threat rule, applied after any analyser: {rules: [{name, at_least, cameras, zones, "
        "labels, arm_modes, starts, ends}], threat_floor, threat_min_score}.",
    )
    reid_enabled: bool = Field(True, description="Match people and vehicles across cameras.")
    reid_horizon_minutes: float = Field(
        30.0, gt=0.0, le=1440.0, description="How far back a re-identification match reaches."
    )
    reid_threshold: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity for a match; unset: each descriptor's measured default.",
    )
    recent_events_minutes: float = Field(
        30.0, ge=0.0, le=1440.0, description="How far back the analyser is told of events."
    )

    @model_validator(mode="before")
    @classmethod
    def _detector_under_models_dir(cls, data: Any) -> Any:
        """No detector: the default one. A darknet detector's files: relative ones under
        MODELS_DIR, those not named the packaged YOLOv3-tiny's there."""
        if not isinstance(data, dict):
            return data
        models_dir = _models_dir_of(data)
        detector = data.get("detector")
        if detector is None:
            return {**data, "detector": default_detector(models_dir)}
        if isinstance(detector, dict) and detector.get("type") == "darknet":
            named = {
                key: models_dir / value if not Path(value).is_absolute() else Path(value)
                for key, value in detector.items()
                if key in ("cfg", "weights", "names") and value is not None
            }
            darknet = {**packaged_darknet_files(models_dir), **detector, **named}
            return {**data, "detector": darknet}
        return data

    @model_validator(mode="after")
    def _risk_rules_valid(self) -> Settings:
        """The risk rules are checked at start-up, where the pipeline that applies them runs."""
        if self.pipeline_enabled:
            self.parsed_risk_rules()
        return self

    def parsed_risk_rules(self) -> RiskRules:
        from hearthwatch.security.analysis.risk_rules import RiskRules

        return RiskRules.model_validate(self.risk_rules)

    @model_validator(mode="after")
    def _batch_window_in_order(self) -> Settings:
        if self.min_queue_delay_ms > self.max_queue_delay_ms:
            raise ValueError(
                f"min_queue_delay_ms ({self.min_queue_delay_ms:g}) is above max_queue_delay_ms "
                f"({self.max_queue_delay_ms:g})"
            )
        return self

    def optimization(self) -> OptimizationSettings:
        from hearthwatch.runtime.accel.optimize import OptimizationSettings

        return OptimizationSettings(
            precision=self.precision,
            channels_last=self.channels_last,
            cudnn_benchmark=self.cudnn_benchmark,
            torch_compile=self.torch_compile,
            cuda_graphs=self.cuda_graphs,
            max_batch_size=self.max_batch_size,
            compile_cache_dir=self.compile_cache_dir,
        )


@dataclass(frozen=True)
class SettingValue:
    """One effective setting, where it came from and the variable that sets it."""

    name: str
    value: Any
    source: str
    env_var: str


@dataclass(frozen=True)
class LoadedSettings:
    """The effective settings and, by setting name, where each value came from."""

    settings: Settings
    sources: dict[str, str]

    def describe(self) -> list[SettingValue]:
        """Every setting (each key of a plugin's settings as ``name.key``), in model order,
        with any password in a URL (``DATABASE_URL``, a camera's stream) shown as ``***``."""
        dumped = _without_passwords(self.settings.model_dump(mode="json"))
        rows = []
        for name in Settings.model_fields:
            if name in NESTED_DEFAULT_TYPES:
                for key, value in dumped[name].items():
                    dotted = f"{name}.{key}"
                    source = self.sources.get(dotted, self.sources.get(name, "default"))
                    env_var = f"{name.upper()}{NESTED_ENV_SEPARATOR}{key.upper()}"
                    rows.append(SettingValue(dotted, value, source, env_var))
                continue
            rows.append(
                SettingValue(name, dumped[name], self.sources.get(name, "default"), name.upper())
            )
        return rows


def _without_passwords(value: Any) -> Any:
    """``value`` (JSON data) with the password of every URL in it replaced by ``***``."""
    if isinstance(value, dict):
        return {key: _without_passwords(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_passwords(item) for item in value]
    if isinstance(value, str) and "://" in value and "@" in value:
        try:
            parts = urlsplit(value)
            password = parts.password
        except ValueError:
            return "<a URL that cannot be read>"
        if password is not None:
            user_info, _, host = parts.netloc.rpartition("@")
            user = user_info.split(":", 1)[0]
            return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    return value


class ConfigError(ValueError):
    """The configuration file or environment holds a value that cannot be used."""


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _env_value(text: str) -> Any:
    """Environment strings are taken as they are, but JSON lists and mappings are parsed."""
    if text.lstrip().startswith(("[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"environment value {text!r} is not valid JSON: {exc}") from exc
    return text


def _env_values(environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """Map setting names (``detector.key`` for nested ones) to (value, variable)."""
    found: dict[str, tuple[Any, str]] = {}
    for name in Settings.model_fields:
        if name in NESTED_DEFAULT_TYPES:
            prefix = f"{name.upper()}{NESTED_ENV_SEPARATOR}"
            for var, value in environ.items():
                if var.startswith(prefix) and len(var) > len(prefix):
                    found[f"{name}.{var[len(prefix) :].lower()}"] = (_env_value(value), var)
        elif name.upper() in environ:
            found[name] = (_env_value(environ[name.upper()]), name.upper())
    return found


def load_settings(
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    tuned: bool = True,
) -> LoadedSettings:
    """Build the effective settings: defaults → tuned file → ``config_file`` → environment →
    ``overrides``.

    ``config_file`` defaults to the path in ``HEARTHWATCH_CONFIG`` when set. The tuned file
    is read only when ``tuned_config_file`` names it (in the file or the environment; empty
    names none); a named file that does not exist is an error. ``tuned=False`` leaves it
    unread (``hearthwatch tune``, which writes it).
    """
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = config_file or environ.get(CONFIG_FILE_ENV)
    if path:
        file_values = _read_config_file(Path(path))
        for key, value in file_values.items():
            if key in NESTED_DEFAULT_TYPES and isinstance(value, dict):
                merged[key] = dict(value)
                for sub in value:
                    sources[f"{key}.{sub}"] = f"file:{path}"
            else:
                merged[key] = value
                sources[key] = f"file:{path}"
    for name, (value, var) in _env_values(environ).items():
        if "." in name:
            parent, key = name.split(".", 1)
            nested = merged.setdefault(parent, {})
            if key == "type" and nested.get("type") not in (None, value):
                nested.clear()  # a different plugin type: the file's keys no longer apply
            nested[key] = value
        else:
            merged[name] = value
        sources[name] = f"env:{var}"
    if not merged.get("tuned_config_file"):
        merged.pop("tuned_config_file", None)  # "" from the environment: no tuned file
    elif tuned:
        _apply_tuned(merged, sources)
    detector = merged.get("detector")
    if isinstance(detector, dict) and "type" not in detector:  # keys given, type left default
        merged["detector"] = _keys_for_the_default_detector(detector, merged)
    for name, default_type in NESTED_DEFAULT_TYPES.items():
        if isinstance(merged.get(name), dict):
            merged[name].setdefault("type", default_type)
    for name, value in (overrides or {}).items():
        merged[name] = value
        sources[name] = "argument"
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from exc
    return LoadedSettings(settings, sources)


def _models_dir_of(values: Mapping[str, Any]) -> Path:
    """MODELS_DIR as the raw settings give it, else its default."""
    return Path(values.get("models_dir") or Settings.model_fields["models_dir"].default)


def _keys_for_the_default_detector(keys: dict[str, Any], merged: dict[str, Any]) -> dict[str, Any]:
    """Detector keys given without a type, applied to the default detector; a key that is not
    one of its settings is an error that says which detector that is and why."""
    models_dir = _models_dir_of(merged)
    base = default_detector(models_dir)
    unknown = sorted(set(keys) - set(type(base).model_fields))
    if unknown:
        why = (
            f"the packaged YOLOv3-tiny is installed under {models_dir}"
            if base.type == "darknet"
            else f"the packaged YOLOv3-tiny is not installed under {models_dir} "
            "(`hearthwatch models install`)"
        )
        raise ConfigError(
            f"detector setting(s) {', '.join(unknown)} given without a type apply to the "
            f"default detector, {base.type} here ({why}), which has no such setting; name the "
            "detector (DETECTOR__TYPE, or `type` under `detector:`) to configure another"
        )
    return {**base.model_dump(), **keys}


TUNED_KEYS = ("max_batch_size", "max_queue_delay_ms")


def read_tuned(path: Path) -> dict[str, Any]:
    """The tuned-batching file, or {} when there is none."""
    if not path.is_file():
        return {}
    data = _read_config_file(path)
    if not isinstance(data.get("models"), dict):
        raise ConfigError(f"tuned config {path} has no 'models' mapping")
    return data


def _apply_tuned(merged: dict[str, Any], sources: dict[str, str]) -> None:
    """Fill the tuned keys the file and environment left unset from the named tuned file (a
    file that merely lies in the working directory changes nothing)."""
    path = Path(str(merged["tuned_config_file"]))
    if not path.is_file():
        raise ConfigError(f"tuned config file {path} does not exist")
    model = str(merged.get("model_name", Settings.model_fields["model_name"].default))
    entry = read_tuned(path).get("models", {}).get(model)
    if not isinstance(entry, dict):
        return
    for key in TUNED_KEYS:
        if key not in merged and key in entry:
            merged[key] = entry[key]
            sources[key] = f"tuned:{path}"


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        location = ".".join(str(p) for p in err["loc"])
        parts.append(f"{location}: {err['msg']}")
    return "invalid configuration: " + "; ".join(parts)
