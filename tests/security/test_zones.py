"""Zones: validation, point-in-polygon by the box's bottom-centre (concave polygons, edges and
vertices), the label filter and the inertia of entering."""

from __future__ import annotations

import math
import random
from typing import Any

import cv2
import numpy as np
import pytest

from hearthwatch.security.tracker import InvalidDetectionError
from hearthwatch.security.zones import (
    InvalidZoneError,
    UnknownZoneError,
    Zone,
    ZonePresence,
    zones_at,
)

# A U open at the top: two arms joined by a bar along the bottom; the notch between the arms
# (0.3 < x < 0.7, y < 0.7) is outside.
U_SHAPE = (
    (0.1, 0.1),
    (0.3, 0.1),
    (0.3, 0.7),
    (0.7, 0.7),
    (0.7, 0.1),
    (0.9, 0.1),
    (0.9, 0.9),
    (0.1, 0.9),
)
SQUARE = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
WIDTH, HEIGHT = 1000, 500


def standing_at(x: float, y: float) -> tuple[float, float, float, float]:
    """A box in the 1000×500 frame whose bottom-centre is (x, y) in relative coordinates."""
    return (x * WIDTH - 20, y * HEIGHT - 80, x * WIDTH + 20, y * HEIGHT)


@pytest.mark.parametrize(
    ("point", "inside"),
    [
        ((0.2, 0.5), True),  # left arm
        ((0.8, 0.3), True),  # right arm
        ((0.5, 0.8), True),  # the bar
        ((0.5, 0.5), False),  # the notch
        ((0.5, 0.2), False),  # the notch, near its open end
        ((0.95, 0.5), False),  # outside to the right
        ((0.2, 0.7), True),  # the ray runs along the notch's floor, an edge
        ((0.05, 0.7), False),  # the same ray from outside
        ((0.05, 0.1), False),  # a ray through the two top vertices of the left arm
        ((0.5, 0.7), True),  # on the notch's floor: the boundary is inside
        ((0.3, 0.4), True),  # on the left arm's inner edge
        ((0.7, 0.1), True),  # a vertex
        ((0.9, 0.9), True),  # a corner vertex
        ((0.5, 0.1), False),  # on the line of the top edges, but in the notch's mouth
    ],
)
def test_concave_polygon_edges_and_vertices(point: tuple[float, float], inside: bool) -> None:
    zone = Zone("yard", U_SHAPE)
    assert zone.contains(point) is inside
    expected = ("yard",) if inside else ()
    assert zones_at(standing_at(*point), WIDTH, HEIGHT, [zone], "person") == expected


def test_concave_polygon_agrees_with_opencv_away_from_the_boundary() -> None:
    zone = Zone("yard", U_SHAPE)
    contour = np.array(U_SHAPE, dtype=np.float32).reshape(-1, 1, 2)
    rng = random.Random(7)
    checked = 0
    while checked < 2000:
        point = (rng.random(), rng.random())
        distance = cv2.pointPolygonTest(contour, point, True)
        if abs(distance) < 1e-4:
            continue
        assert zone.contains(point) is (distance > 0), point
        checked += 1


def test_a_box_centred_in_the_zone_but_standing_outside_it_is_not_in_the_zone() -> None:
    porch = Zone("porch", ((0.0, 0.2), (1.0, 0.2), (1.0, 0.6), (0.0, 0.6)))
    tall = (100.0, 100.0, 200.0, 400.0)  # centre y 250/500 = 0.5 inside; feet 400/500 = 0.8
    assert zones_at(tall, WIDTH, HEIGHT, [porch], "person") == ()
    legs_in = (100.0, 0.0, 200.0, 250.0)  # centre y 0.25 inside; feet 0.5 inside
    head_out = (100.0, 20.0, 200.0, 200.0)  # centre y 0.22 inside; feet 0.4 inside
    assert zones_at(legs_in, WIDTH, HEIGHT, [porch], "person") == ("porch",)
    assert zones_at(head_out, WIDTH, HEIGHT, [porch], "person") == ("porch",)
    above = (100.0, 0.0, 200.0, 90.0)  # centre and feet above the zone
    assert zones_at(above, WIDTH, HEIGHT, [porch], "person") == ()
    feet_only = (100.0, 10.0, 200.0, 150.0)  # centre y 0.08 outside; feet 0.3 inside
    assert zones_at(feet_only, WIDTH, HEIGHT, [porch], "person") == ("porch",)


def test_the_label_filter_and_the_order_of_zones() -> None:
    zones = [
        Zone("driveway", SQUARE, objects=frozenset({"car", "truck"})),
        Zone("everything", SQUARE),
        Zone("path", SQUARE, objects=frozenset({"person"})),
    ]
    box = standing_at(0.5, 0.5)
    assert zones_at(box, WIDTH, HEIGHT, zones, "person") == ("everything", "path")
    assert zones_at(box, WIDTH, HEIGHT, zones, "car") == ("driveway", "everything")
    assert zones_at(box, WIDTH, HEIGHT, zones, "dog") == ("everything",)


def test_zones_at_refuses_invalid_boxes_and_frame_sizes() -> None:
    zone = Zone("yard", SQUARE)
    with pytest.raises(InvalidDetectionError):
        zones_at((10.0, 10.0, 5.0, 20.0), WIDTH, HEIGHT, [zone], "person")
    with pytest.raises(InvalidDetectionError):
        zones_at((10.0, math.nan, 15.0, 20.0), WIDTH, HEIGHT, [zone], "person")
    with pytest.raises(ValueError):
        zones_at((10.0, 10.0, 15.0, 20.0), 0, HEIGHT, [zone], "person")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "Front Yard"},
        {"name": ""},
        {"name": "x" * 65},
        {"polygon": ((0.0, 0.0), (1.0, 1.0))},
        {"polygon": ((0.0, 0.0), (0.5, 0.5), (1.0, 1.0))},  # no area
        {"polygon": ((0.0, 0.0), (1.0, 0.0), (1.0, math.nan))},
        {"polygon": ((0.0, 0.0), (1.0, 0.0), (1.0, math.inf))},
        {"polygon": ((0.0, 0.0), (640.0, 0.0), (640.0, 480.0))},  # legacy pixels
        {"polygon": ((0.0, 0.0), (1.0, 0.0), (1.0, -0.1))},
        {"polygon": ((0.0, 0.0), (1.0, 0.0, 0.0), (1.0, 1.0))},
        {"polygon": ((0.0, 0.0), (1.0, 0.0), ("1", "1"))},
        {"objects": frozenset()},
        {"objects": frozenset({""})},
        {"objects": "person"},
        {"inertia": 0},
        {"inertia": 2.5},
    ],
)
def test_invalid_zones_are_refused(kwargs: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"name": "yard", "polygon": SQUARE} | kwargs
    with pytest.raises(InvalidZoneError):
        Zone(**fields)


def test_a_zone_normalises_its_points_and_labels() -> None:
    zone = Zone("yard", [[0, 0], [1, 0], [1, 1]], objects={"car"})  # type: ignore[arg-type]
    assert zone.polygon == ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0))
    assert zone.objects == frozenset({"car"})
    hash(zone)


def test_a_zone_counts_as_entered_after_inertia_consecutive_updates() -> None:
    presence = ZonePresence([Zone("porch", SQUARE, inertia=3), Zone("gate", SQUARE, inertia=1)])
    steps = [
        ({"porch"}, ((), ())),
        ({"porch"}, ((), ())),
        (set(), ((), ())),  # an update outside starts the count again
        ({"porch"}, ((), ())),
        ({"porch"}, ((), ())),
        ({"porch"}, (("porch",), ("porch",))),
        ({"gate", "porch"}, (("porch", "gate"), ("gate",))),
        ({"gate"}, (("gate",), ())),  # leaving counts at once
        ({"gate", "porch"}, (("gate",), ())),  # back in: inertia again
        ({"gate", "porch"}, (("gate",), ())),
        ({"gate", "porch"}, (("porch", "gate"), ())),  # in again, but entered only once
    ]
    for number, (names_now, expected) in enumerate(steps):
        assert presence.update(names_now) == expected, f"update {number}"


def test_presence_refuses_unknown_and_repeated_zones() -> None:
    presence = ZonePresence([Zone("porch", SQUARE)])
    with pytest.raises(UnknownZoneError):
        presence.update(["porch", "garage"])
    with pytest.raises(InvalidZoneError):
        ZonePresence([Zone("porch", SQUARE), Zone("porch", U_SHAPE)])
