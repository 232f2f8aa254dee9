"""The re-identification matcher's choices, on vectors whose similarities are set by hand and a
store stand-in: a match is another camera's track of the same class, seen within the horizon,
at or above its descriptor's threshold; the camera's own tracks, however many and however
similar, never crowd it out; descriptors of different kinds are never compared."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from hearthwatch.security.appearance import COLOUR_DESCRIPTOR, REID_DESCRIPTOR
from hearthwatch.security.evidence import TrackEvidence, WindowEvidence
from hearthwatch.security.reid import ReidMatcher
from hearthwatch.security.store.incidents import Descriptor

T0 = 1_718_000_000.0
HORIZON_S = 1800.0
DIM = 16


def unit(angle_to_axis: float, axis: int = 0, noise_axis: int = 1) -> np.ndarray:
    """A unit vector whose cosine with the ``axis`` unit vector is ``cos(angle)``."""
    vector = np.zeros(DIM, np.float32)
    vector[axis] = np.cos(angle_to_axis)
    vector[noise_axis] = np.sin(angle_to_axis)
    return vector


def cosine_of(similarity: float, noise_axis: int = 1) -> np.ndarray:
    return unit(float(np.arccos(similarity)), noise_axis=noise_axis)


class Store:
    """The two reads the matcher makes, over a list of descriptors."""

    def __init__(self, descriptors: list[Descriptor], events: dict[str, tuple[str, float]]):
        self.all = descriptors
        self.events = events

    def descriptors(self, *, since: float, track_ids: Any = None) -> list[Descriptor]:
        return [d for d in self.all if d.seen_at >= since
                and (track_ids is None or d.track_id in track_ids)]  # fmt: skip

    def events_of_tracks(self, track_ids: list[str]) -> dict[str, tuple[str, float]]:
        return {t: self.events[t] for t in track_ids if t in self.events}


def described(
    key: int, track: str, camera: str, vector: np.ndarray, *, label: str = "person",
    model: str = "reid", at: float = T0,
) -> Descriptor:  # fmt: skip
    return Descriptor(key, track, camera, label, model, vector, at)


def evidence(track: str = "front-t1", label: str = "person") -> WindowEvidence:
    return WindowEvidence(
        window_id="w", camera_id="front", camera_name="Front", zone_description="",
        timezone="UTC", opened_at=T0 + 600, closed_at=T0 + 630, linked_window_ids=(),
        tracks=(TrackEvidence(track, label, T0 + 600, T0 + 630, (), False, 1),),
        detections=(), frame_paths={},
    )  # fmt: skip


def matches(descriptors: list[Descriptor], window: WindowEvidence | None = None) -> list[Any]:
    events = {d.track_id: (f"event-{d.track_id}", d.seen_at) for d in descriptors}
    store = Store(descriptors, events)

    async def call(function: Any, *args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    async def name(camera_id: str) -> str:
        return camera_id.title()

    async def run() -> list[Any]:
        matcher = ReidMatcher(store, call, name, horizon_s=HORIZON_S)  # type: ignore[arg-type]
        await matcher.load(T0 + 630)
        return await matcher.matches(window or evidence())

    return asyncio.run(run())


OWN = described(1, "front-t1", "front", unit(0.0), at=T0 + 610)


def test_another_camera_s_same_person_within_the_horizon_matches() -> None:
    back = described(2, "back-t2", "back", cosine_of(0.90), at=T0 + 100)
    (found,) = matches([OWN, back])
    match = found.evidence
    assert (match.track_key, match.camera_name, match.descriptor) == (
        "front-t1", "Back", REID_DESCRIPTOR
    )  # fmt: skip
    assert abs(match.similarity - 0.90) < 1e-3 and match.event_id == "event-back-t2"
    assert match.seen_at == T0 + 100


def test_below_the_threshold_another_class_the_same_camera_or_too_old_do_not() -> None:
    others = [
        described(2, "back-t2", "back", cosine_of(0.70)),  # below 0.74
        described(3, "back-t3", "back", cosine_of(0.99), label="car"),
        described(4, "front-t4", "front", cosine_of(0.99)),  # the window's own camera
        described(5, "side-t5", "side", cosine_of(0.99), at=T0 + 600 - HORIZON_S - 1),
    ]
    assert matches([OWN, *others]) == []


def test_the_camera_s_own_tracks_never_crowd_out_another_camera_s_match() -> None:
    crowd = [
        described(100 + i, f"front-t{100 + i}", "front", cosine_of(0.99, noise_axis=2 + i % 8))
        for i in range(200)
    ]
    back = described(2, "back-t2", "back", cosine_of(0.886))
    (found,) = matches([OWN, *crowd, back])
    assert found.evidence.camera_name == "Back"


def test_descriptors_of_different_kinds_are_not_compared() -> None:
    colour = described(2, "back-t2", "back", cosine_of(0.99)[:DIM], model="appearance")
    assert matches([OWN, colour]) == []
    own_colour = described(3, "front-t1", "front", unit(0.0), model="appearance", at=T0 + 610)
    (found,) = matches([OWN, colour, own_colour])
    assert found.evidence.descriptor == COLOUR_DESCRIPTOR


def test_the_best_of_each_other_camera_is_the_match() -> None:
    found = matches([
        OWN,
        described(2, "back-t2", "back", cosine_of(0.80)),
        described(3, "back-t3", "back", cosine_of(0.95)),
        described(4, "side-t4", "side", cosine_of(0.85)),
    ])  # fmt: skip
    assert {(f.evidence.camera_name, f.match.track_id) for f in found} == {
        ("Back", "back-t3"), ("Side", "side-t4")
    }  # fmt: skip
