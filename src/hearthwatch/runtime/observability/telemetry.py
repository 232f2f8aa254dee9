"""GPU and host telemetry: NVML readings when a GPU is there, a ring buffer of samples taken
every interval by a background thread, and the latest sample for pushes."""

from __future__ import annotations

import logging
import os
import resource
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuReading:
    index: int
    name: str
    uuid: str
    utilization_percent: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    temperature_c: float | None
    power_w: float | None
    power_limit_w: float | None


@dataclass(frozen=True)
class SystemSample:
    timestamp: float
    gpus: list[GpuReading]
    load_average_1m: float
    process_max_rss_bytes: int
    inferences_per_second: float | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gpu_available"] = bool(self.gpus)
        return data


def _nvml_value(read: Callable[..., Any], *args: Any) -> Any:
    try:
        return read(*args)
    except Exception:  # a field the board does not report
        return None


class Nvml:
    """NVML through ``nvidia-ml-py``; ``available`` is False without a driver or GPU."""

    def __init__(self, enabled: bool = True):
        self.available = False
        self._handles: list[Any] = []
        if not enabled:
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._nvml = pynvml
            self.available = count > 0
        except Exception as exc:
            log.info("NVML not available (%s): no GPU telemetry", type(exc).__name__)

    def _reading(self, index: int, handle: Any) -> GpuReading:
        nv = self._nvml
        memory = _nvml_value(nv.nvmlDeviceGetMemoryInfo, handle)
        rates = _nvml_value(nv.nvmlDeviceGetUtilizationRates, handle)
        temperature = _nvml_value(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU)
        power = _nvml_value(nv.nvmlDeviceGetPowerUsage, handle)
        limit = _nvml_value(nv.nvmlDeviceGetEnforcedPowerLimit, handle)
        return GpuReading(
            index=index,
            name=str(_nvml_value(nv.nvmlDeviceGetName, handle) or "unknown"),
            uuid=str(_nvml_value(nv.nvmlDeviceGetUUID, handle) or index),
            utilization_percent=None if rates is None else float(rates.gpu),
            memory_used_bytes=None if memory is None else int(memory.used),
            memory_total_bytes=None if memory is None else int(memory.total),
            temperature_c=None if temperature is None else float(temperature),
            power_w=None if power is None else power / 1000.0,
            power_limit_w=None if limit is None else limit / 1000.0,
        )

    def read(self) -> list[GpuReading]:
        if not self.available:
            return []
        return [self._reading(i, h) for i, h in enumerate(self._handles)]


class TelemetrySampler:
    """Samples every ``interval_s`` into a ring buffer holding ``history_minutes``.

    ``inference_counter`` returns the total number of inferences served so far; its rate
    between samples is reported as ``inferences_per_second``.
    """

    def __init__(
        self,
        interval_s: float = 1.0,
        history_minutes: int = 60,
        use_gpu: bool = True,
        inference_counter: Callable[[], int] | None = None,
    ):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        if history_minutes < 1:
            raise ValueError(f"history_minutes must be >= 1, got {history_minutes}")
        self.interval_s = interval_s
        self.history_minutes = history_minutes
        self.nvml = Nvml(enabled=use_gpu)
        self._inference_counter = inference_counter
        self._last_count: tuple[float, int] | None = None
        self._history: deque[SystemSample] = deque(
            maxlen=int(history_minutes * 60 / interval_s) + 1
        )
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> SystemSample:
        now = time.time()
        rate = None
        if self._inference_counter is not None:
            count = self._inference_counter()
            if self._last_count is not None and now > self._last_count[0]:
                rate = (count - self._last_count[1]) / (now - self._last_count[0])
            self._last_count = (now, count)
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return SystemSample(
            timestamp=now,
            gpus=self.nvml.read(),
            load_average_1m=os.getloadavg()[0],
            process_max_rss_bytes=int(rss_kib) * 1024,
            inferences_per_second=rate,
        )

    def _take(self) -> SystemSample:
        sample = self.sample()
        with self._lock:
            self._history.append(sample)
        return sample

    def latest(self) -> SystemSample:
        with self._lock:
            if self._history:
                return self._history[-1]
        return self._take()

    def history(self, minutes: float) -> list[SystemSample]:
        cutoff = time.time() - minutes * 60
        with self._lock:
            return [s for s in self._history if s.timestamp >= cutoff]

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._take()
        self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._take()
            except Exception:
                log.exception("telemetry sample failed")
