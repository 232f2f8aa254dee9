"""Typed request and response shapes of the HTTP routes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hearthwatch.runtime.observability.telemetry import GpuReading
from hearthwatch.runtime.zoo.registry import ZooStats
from hearthwatch.weights.packaged import WeightsOrigin


class ErrorResponse(BaseModel):
    error: str = Field(description="What was wrong.")


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None
    param: str | None = None


class OpenAIErrorResponse(BaseModel):
    """The error body of the ``/v1`` routes, as OpenAI's API and its clients shape it."""

    error: OpenAIErrorDetail


class BoundingBox(BaseModel):
    model_config = ConfigDict(strict=True)  # "1" is not a number here

    x1: float
    y1: float
    x2: float
    y2: float


class Detection(BaseModel):
    class_name: str
    class_id: int
    confidence: float = Field(ge=0.0, le=1.0)
    bbox: BoundingBox


class ImageSize(BaseModel):
    width: int
    height: int


class Timings(BaseModel):
    decode_ms: float
    queue_ms: float
    inference_ms: float
    total_ms: float


class ImageResult(BaseModel):
    image: ImageSize
    detections: list[Detection]
    batch_size: int = Field(description="Requests in the model execution this image ran in.")
    timings_ms: Timings


class DetectResponse(ImageResult):
    model: str


class DetectBatchResponse(BaseModel):
    model: str
    results: list[ImageResult]
    total_ms: float


class SystemSample(BaseModel):
    timestamp: float
    gpus: list[GpuReading]
    load_average_1m: float
    process_max_rss_bytes: int
    inferences_per_second: float | None
    gpu_available: bool


class GpuHistoryResponse(BaseModel):
    minutes: float
    interval_s: float
    samples: list[SystemSample]


class EnrichDetection(BaseModel):
    """A detection to enrich; the ``/detect`` response's detections fit as they are."""

    model_config = ConfigDict(strict=True)  # "1" is not a number here

    class_name: str = Field(min_length=1)
    confidence: float | None = Field(None, ge=0.0, le=1.0)
    bbox: BoundingBox


class EnrichRequest(BaseModel):
    model_config = ConfigDict(strict=True)  # "1" is not a number here

    image: str = Field(min_length=1, description="The frame as base64 (JPEG, PNG, BMP, WebP).")
    detections: list[EnrichDetection] = Field(default_factory=list, max_length=1000)
    models: list[str] | None = Field(
        None, description="Run only these models (still only where triggered)."
    )


class EnrichedDetection(EnrichDetection):
    enrichments: dict[str, Any] = Field(description="Each triggered model's result, by model.")


class EnrichResponse(BaseModel):
    image: ImageSize
    detections: list[EnrichedDetection]
    frame: dict[str, Any] = Field(description="Frame-wide results (threats), by model.")
    models_run: list[str]
    unavailable: dict[str, str] = Field(description="Triggered models that cannot load here.")
    total_ms: float


class ZooModelRow(ZooStats):
    triggers: list[str]
    source: str = Field(description="The plugin type that runs it.")
    origin: str = Field(
        description="Where its weights came from: a package (name==version), a local file, "
        "missing, or none (random initialisation)."
    )
    licence: str | None = Field(None, description="The weights' licence, when packaged.")
    weights_bytes: int = Field(0, description="Size of its weights on disk.")
    state: str = Field(description="unloaded, loading, loaded, evicting, on_host or unavailable.")
    reason: str | None = None
    batches: int = Field(0, description="Model executions.")
    batched_items: int = Field(0, description="Crops or frames run; / batches = mean batch.")


class DetectorRow(WeightsOrigin):
    """The detector beside the zoo (it is not one of the zoo's models): where its weights came
    from, like each zoo model's."""

    name: str
    source: str = Field(description="Its plugin type.")
    platform: str


class ZooResponse(BaseModel):
    device: str
    budget_bytes: int
    resident_bytes: int
    detector: DetectorRow
    models: list[ZooModelRow]


class RepositoryModel(BaseModel):
    name: str
    version: str = "1"
    state: str = Field(description="READY, UNAVAILABLE or LOADING, as Triton reports them.")
    reason: str = ""


class PinResponse(BaseModel):
    name: str
    pinned: bool


class RepositoryIndexRequest(BaseModel):
    ready: bool = Field(False, description="List only the models that are READY.")


class RepositoryLoadRequest(BaseModel):
    parameters: dict[str, Any] | None = Field(
        None, description="Triton's load parameters; a model configuration is not accepted."
    )


class EmptyResponse(BaseModel):
    """``{}``: what Triton answers a repository load or unload that succeeded."""

    model_config = ConfigDict(extra="forbid")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for a dimension of any size.")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ConfigTensor(BaseModel):
    name: str
    data_type: str
    dims: list[int]
    optional: bool = False


class ModelConfig(BaseModel):
    """Triton's model configuration, as far as it applies here."""

    name: str
    platform: str
    backend: str
    max_batch_size: int
    input: list[ConfigTensor]
    output: list[ConfigTensor]
    dynamic_batching: dict[str, Any]
    instance_group: list[dict[str, Any]]
    parameters: dict[str, dict[str, str]]
    optimization: dict[str, list[str]] | None = Field(None, description="The detector's.")


class Duration(BaseModel):
    count: int
    ns: int


class BatchStats(BaseModel):
    batch_size: int
    compute_input: Duration
    compute_infer: Duration
    compute_output: Duration


class LatencyPercentiles(BaseModel):
    """End-to-end latency of the model's recent successes, in milliseconds (None without any)."""

    samples: int
    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None
    max: float | None


class ModelStatistics(BaseModel):
    """Triton's statistics of one model; the zoo's models count only inferences and
    executions, the detector everything."""

    name: str
    version: str
    inference_count: int
    execution_count: int
    last_inference: int | None = Field(
        None, description="Milliseconds since the epoch; 0 before any."
    )
    inference_stats: dict[str, Duration] | None = None
    batch_stats: list[BatchStats] | None = None
    failures_by_reason: dict[str, int] | None = None
    latency_ms: LatencyPercentiles | None = None


class ModelStatsResponse(BaseModel):
    model_stats: list[ModelStatistics]


V2_DATATYPES = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BF16", "BYTES",
]  # fmt: skip


class InferInputTensor(BaseModel):
    name: str = Field(min_length=1, description="IMAGE or IMAGE_RGB.")
    datatype: V2_DATATYPES
    shape: list[int] = Field(description="IMAGE: [batch, 1]; IMAGE_RGB: [batch, h, w, 3].")
    data: list[Any] | None = Field(
        None, description="Values, row-major, flat or nested; BYTES as base64 strings."
    )
    parameters: dict[str, Any] | None = Field(
        None, description="``binary_data_size`` when the data follows the JSON header."
    )


class InferOutputRequest(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(None, description="``binary_data``: true or false.")


class InferRequestBody(BaseModel):
    """An Open Inference Protocol v2 inference request (its JSON part, in the binary form)."""

    id: str | None = None
    inputs: list[InferInputTensor] = Field(min_length=1)
    outputs: list[InferOutputRequest] | None = None
    parameters: dict[str, Any] | None = Field(
        None,
        description="confidence_threshold (0-1), all_classes, timeout (µs), binary_data_output.",
    )


class InferOutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = None
    parameters: dict[str, int] | None = Field(None, description="``binary_data_size``.")


class InferResponseBody(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferOutputTensor]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    owned_by: str
    created: int | None = None


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class PerformanceTargets(BaseModel):
    profile: str
    targets: dict[str, float]
    measured: dict[str, float | None]
    max_concurrent_sessions: int
    max_queue_depth: int


class EngineConfig(BaseModel):
    profile: str
    engine: dict[str, Any] = Field(description="The engine's effective flags.")
    state: str
    restarts: int
    pid: int | None
    url: str | None
    scheduler_policy: str
    max_tokens_cap: int
    max_concurrent_sessions: int
    max_queue_depth: int


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ToolCallFunction(BaseModel):
    name: str
    arguments: str = Field(description="The arguments as a JSON object's text.")


class ChatToolCall(BaseModel):
    id: str
    type: str
    function: ToolCallFunction


class ChatMessage(BaseModel):
    role: str
    content: str | None
    tool_calls: list[ChatToolCall] | None = None


class ChatChoice(BaseModel):
    index: int
    message: ChatMessage
    finish_reason: str | None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None


class TextChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None


class StreamEvent(BaseModel):
    """One Server-Sent Event of a streamed completion: ``data`` is a chunk object as JSON,
    an ``{"error": ...}`` object if the stream fails, or ``[DONE]``."""

    data: str
