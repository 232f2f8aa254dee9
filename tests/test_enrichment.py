"""The enrichment service on small random-initialised models of every plugin: triggers, crops
batched across detections and requests, results equal to the model run alone, frame-wide
models, unavailable models, bad requests, the out-of-memory path and the budget."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import needs_face_model, scene

from hearthwatch.runtime.enrichment.base import EnrichItem
from hearthwatch.runtime.enrichment.catalog import (
    DEFAULT_MODELS_FILE,
    CatalogError,
    ZooModelConfig,
    load_catalog,
)
from hearthwatch.runtime.enrichment.service import (
    EnrichmentService,
    EnrichRequestError,
    InputDetection,
)
from hearthwatch.runtime.zoo.registry import ModelZoo, State, ZooFullError

CATALOG = Path(__file__).parent / "data" / "enrich_models.yml"
PERSON = InputDetection("person", (40, 30, 140, 330))
CAR = InputDetection("car", (300, 200, 600, 420))
DOG = InputDetection("dog", (200, 100, 280, 180))
BIRD = InputDetection("bird", (10, 10, 60, 50))


def catalog(*names: str) -> list[ZooModelConfig]:
    models = load_catalog(CATALOG, Path("models"))
    return [m for m in models if not names or m.name in names]


@pytest.fixture
def service_of() -> Iterator[Any]:
    started: list[EnrichmentService] = []

    def make(budget: int = 1 << 30, names: tuple[str, ...] = ()) -> EnrichmentService:
        service = EnrichmentService(
            catalog(*names), ModelZoo(budget), torch.device("cpu"), torch.float32, 0
        )
        service.start()
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_each_detection_runs_the_models_it_triggers(service_of: Any) -> None:
    service = service_of()
    frame = scene(640, 480)
    result = run(service.enrich(frame, [PERSON, CAR, DOG, BIRD], 30))
    person, car, dog, bird = result.detections
    assert set(person) == {"pose", "clothing", "reid", "depth"}
    assert set(car) == {"vehicle", "depth"}
    assert set(dog) == {"pet", "depth"}
    assert set(bird) == {"depth"}
    assert set(result.frame) == {"threat"} and "threats" in result.frame["threat"]
    assert set(result.models_run) == {
        "threat",
        "pose",
        "clothing",
        "vehicle",
        "pet",
        "reid",
        "depth",
    }
    assert len(person["reid"]["embedding"]) == 64
    assert abs(np.linalg.norm(person["reid"]["embedding"]) - 1) < 1e-4
    vehicle = next(c for c in service.catalog if c.name == "vehicle").source
    assert car["vehicle"]["label"] in vehicle.labels  # type: ignore[union-attr]
    assert dog["pet"]["label"] in {"cat", "dog"}
    assert set(person["clothing"]["scores"]) >= {"hoodie", "backpack"}
    for depth in (d["depth"]["relative_depth"] for d in result.detections):
        assert 0.0 <= depth <= 1.0
    # keypoints are in frame pixels, inside the person's box
    for point in person["pose"]["keypoints"]:
        assert 40 <= point["x"] <= 140 and 30 <= point["y"] <= 330
    assert len(person["pose"]["keypoints"]) == 17


def test_without_detections_only_the_always_model_runs(service_of: Any) -> None:
    result = run(service_of().enrich(scene(), [], 30))
    assert result.models_run == ["threat"] and result.detections == []


def test_crops_batch_across_detections_and_requests_and_match_the_model_alone(
    service_of: Any,
) -> None:
    service = service_of(names=("reid",))
    model = service.models["reid"]
    frames = [scene(640, 480, seed) for seed in range(3)]
    people = [InputDetection("person", (20 + 60 * i, 40, 90 + 60 * i, 300)) for i in range(4)]

    async def together() -> list[Any]:
        return await asyncio.gather(*(service.enrich(f, people, 30) for f in frames))

    results = run(together())
    assert model.counts.items == 12
    assert model.counts.batches < 12  # detections and requests shared batches

    async def module() -> Any:
        async with service.zoo.lease("reid", 5) as loaded:
            return loaded.module

    alone_module = run(module())
    for frame, result in zip(frames, results, strict=True):
        for det, found in zip(people, result.detections, strict=True):
            x1, y1, x2, y2 = (int(v) for v in det.box)
            crop = EnrichItem(np.ascontiguousarray(frame[y1:y2, x1:x2]))
            alone = model.enricher.run(alone_module, [crop], torch.device("cpu"), torch.float32)
            assert np.allclose(found["reid"]["embedding"], alone[0]["embedding"], atol=1e-4)


def test_unavailable_models_are_reported_and_never_loaded(service_of: Any) -> None:
    # all but face, whose YuNet is compiled into the installed yuface package: no file to miss
    models = [
        m for m in load_catalog(DEFAULT_MODELS_FILE, Path("/nonexistent")) if m.name != "face"
    ]
    service = EnrichmentService(models, ModelZoo(1 << 30), torch.device("cpu"), torch.float32, 0)
    assert set(service.unavailable) == {m.name for m in models}
    assert "hearthwatch models install" in service.unavailable["pose"]
    result = run(service.enrich(scene(), [PERSON], 30))
    assert result.models_run == [] and set(result.unavailable) >= {"threat", "pose"}
    with pytest.raises(EnrichRequestError, match="unavailable"):
        run(service.enrich(scene(), [PERSON], 30, only=["pose"]))


def test_bad_requests_are_refused_with_the_reason(service_of: Any) -> None:
    service = service_of(names=("vehicle",))
    with pytest.raises(EnrichRequestError, match=r"unknown enrichment model\(s\) nope"):
        run(service.enrich(scene(), [CAR], 30, only=["nope"]))
    with pytest.raises(EnrichRequestError, match=r"detections\[1\].bbox: x2 > x1"):
        run(service.enrich(scene(), [CAR, InputDetection("car", (50, 50, 40, 60))], 30))
    with pytest.raises(EnrichRequestError, match=r"detections\[0\].bbox lies outside"):
        run(service.enrich(scene(), [InputDetection("car", (900, 10, 990, 40))], 30))
    only = run(service.enrich(scene(), [CAR], 30, only=["vehicle"]))
    assert only.models_run == ["vehicle"]


def test_the_models_file_is_checked_with_clear_messages(tmp_path: Path) -> None:
    bad = tmp_path / "models.yml"
    bad.write_text(
        "models:\n  - {name: a, priority: URGENT, triggers: [person], source: {type: pose}}\n"
    )
    with pytest.raises(CatalogError, match="models.0.priority"):
        load_catalog(bad, tmp_path)
    bad.write_text(
        "models:\n  - {name: a, priority: LOW, triggers: [always, person], source: {type: depth}}\n"
    )
    with pytest.raises(CatalogError, match="list it alone"):
        load_catalog(bad, tmp_path)
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "missing.yml", tmp_path)


def out_of_memory_once(service: EnrichmentService, name: str, times: int) -> list[int]:
    """Make ``name``'s forward raise CUDA's out-of-memory error ``times`` times."""
    enricher = service.models[name].enricher
    real = enricher.forward
    raised = [0]

    def forward(module: torch.nn.Module, prepared: Any) -> Any:
        if raised[0] < times:
            raised[0] += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(module, prepared)

    enricher.forward = forward  # type: ignore[method-assign]
    return raised


def test_out_of_memory_while_loading_is_retried_once_after_evicting(service_of: Any) -> None:
    service = service_of(names=("threat", "depth"))
    run(service.enrich(scene(), [BIRD], 30))
    raised = out_of_memory_once(service, "threat", 1)
    run(service.zoo.unload("threat"))
    result = run(service.enrich(scene(), [], 30))  # the warm-up of the reload runs out once
    assert raised[0] == 1 and "threat" in result.frame
    assert service.zoo.state("depth") is not State.LOADED


def test_out_of_memory_while_running_evicts_lower_priorities_and_retries_once(
    service_of: Any,
) -> None:
    service = service_of(names=("threat", "clothing", "depth"))
    run(service.enrich(scene(), [BIRD], 30))  # threat and depth resident
    assert service.zoo.state("depth") is State.LOADED
    raised = out_of_memory_once(service, "threat", 1)
    result = run(service.enrich(scene(), [], 30))
    assert raised[0] == 1 and "threat" in result.frame
    assert service.zoo.state("depth") is not State.LOADED  # LOW made room for CRITICAL
    assert service.zoo.state("threat") is State.LOADED


def test_out_of_memory_twice_is_a_clear_503_and_the_zoo_stays_consistent(
    service_of: Any,
) -> None:
    service = service_of(names=("threat", "clothing"))
    run(service.enrich(scene(), [PERSON], 30))  # loaded: what follows is while running
    out_of_memory_once(service, "clothing", 2)
    with pytest.raises(ZooFullError, match="out of memory running 'clothing', even after"):
        run(service.enrich(scene(), [PERSON], 30))
    rows = {row.name: row for row in service.zoo.stats()}
    assert all(row.leases == 0 for row in rows.values())
    assert service.zoo.resident_bytes <= service.zoo.budget_bytes
    again = run(service.enrich(scene(), [PERSON], 30))  # and it serves the next request
    assert "clothing" in again.detections[0]


def test_a_budget_for_one_model_serves_two_of_equal_priority_in_turn(service_of: Any) -> None:
    sizes = service_of(names=("vehicle", "reid"))
    run(sizes.enrich(scene(), [PERSON, CAR], 30))
    footprints = {row.name: row.footprint_bytes for row in sizes.zoo.stats()}
    service = service_of(budget=max(footprints.values()) + 1024, names=("vehicle", "reid"))

    async def mixed() -> list[Any]:
        jobs = [service.enrich(scene(seed=i), [PERSON if i % 2 else CAR], 30) for i in range(6)]
        return await asyncio.gather(*jobs)

    results = run(mixed())
    assert all(len(r.detections[0]) == 1 for r in results)
    assert service.zoo.resident_bytes <= service.zoo.budget_bytes
    assert sum(row.evictions for row in service.zoo.stats()) >= 1


def test_a_lower_priority_model_waits_for_its_deadline_then_503s(service_of: Any) -> None:
    sizes = service_of(names=("vehicle", "clothing"))
    run(sizes.enrich(scene(), [PERSON, CAR], 30))
    footprints = {row.name: row.footprint_bytes for row in sizes.zoo.stats()}
    service = service_of(budget=max(footprints.values()) + 1024, names=("vehicle", "clothing"))
    run(service.enrich(scene(), [PERSON], 30))  # clothing (HIGH) resident
    with pytest.raises(ZooFullError, match="'vehicle'"):
        run(service.enrich(scene(), [CAR], 0.5))  # vehicle (MEDIUM) may not evict it
    assert service.zoo.state("clothing") is State.LOADED


def test_a_model_over_the_budget_is_a_503_after_its_deadline(service_of: Any) -> None:
    service = service_of(budget=1024, names=("vehicle",))
    with pytest.raises(ZooFullError):
        run(service.enrich(scene(), [CAR], 0.5))
    assert service.zoo.resident_bytes == 0


@needs_face_model
def test_a_host_run_model_warms_up_at_its_largest_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """An OpenCV net keeps its activation buffers: its warm-up (whose growth is its footprint)
    runs its biggest batch; a PyTorch model on the CPU warms up with one item."""
    from hearthwatch.runtime.enrichment.face import FaceEnricher

    sizes: list[int] = []
    original = FaceEnricher.run

    def spy(self: Any, module: Any, items: Any, device: Any, dtype: Any) -> Any:
        sizes.append(len(items))
        return original(self, module, items, device, dtype)

    monkeypatch.setattr(FaceEnricher, "run", spy)
    face = ZooModelConfig.model_validate({
        "name": "face", "priority": "HIGH", "triggers": ["person"],
        "batching": {"max_batch_size": 3}, "source": {"type": "face"},
    })  # fmt: skip
    service = EnrichmentService([face], ModelZoo(1 << 30), torch.device("cpu"), torch.float32, 0)

    async def load() -> None:
        async with service.zoo.lease("face", 30):
            pass

    run(load())
    assert sizes == [3]
