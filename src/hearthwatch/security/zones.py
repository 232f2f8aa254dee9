"""Zones of a camera's picture and which of them a tracked object is in.

A :class:`Zone` is a polygon in coordinates relative to the frame (0–1, origin top left),
optionally limited to some labels. An object is in a zone when its box's bottom-centre (where it
stands) lies inside the polygon or on its boundary (:func:`zones_at`; the boundary is closed, to
within :data:`EDGE_TOLERANCE`, so a point on an edge or vertex is always inside).

:class:`ZonePresence` applies a zone's inertia for one track, as Frigate does: the track is
counted in a zone (``current``) only once it has been inside it for ``inertia`` consecutive
updates, and leaves it at the first update outside; a zone is reported ``entered`` the first time
the track is counted in it.

Zones are frozen and safe to share; a :class:`ZonePresence` belongs to one track and is confined to
its camera's pipeline thread.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hearthwatch.security.observations import Box
from hearthwatch.security.tracker import validate_box

Point = tuple[float, float]

ZONE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
EDGE_TOLERANCE = 1e-9
"""A point this close to the boundary (in relative units) is on it, hence inside."""


class InvalidZoneError(ValueError):
    """A zone definition that cannot be used."""


class UnknownZoneError(ValueError):
    """A zone name that is not one of the zones a :class:`ZonePresence` was given."""


@dataclass(frozen=True)
class Zone:
    name: str
    """A slug: lower-case letters, digits, ``_`` and ``-``, at most 64 characters."""
    polygon: tuple[Point, ...]
    """At least three (x, y) vertices, each in [0, 1] relative to the frame, in drawing order."""
    objects: frozenset[str] | None = None
    """The labels the zone applies to; ``None`` for every label."""
    inertia: int = 3
    """Consecutive updates inside before a track counts as in the zone."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not ZONE_NAME.fullmatch(self.name):
            raise InvalidZoneError(f"zone name {self.name!r} is not a slug ([a-z0-9_-], ≤ 64)")
        object.__setattr__(self, "polygon", _checked_polygon(self.name, self.polygon))
        if self.objects is not None:
            if not isinstance(self.objects, (set, frozenset)) or not self.objects:
                raise InvalidZoneError(
                    f"zone {self.name}: objects is a non-empty set of labels, or None for all"
                )
            if not all(isinstance(label, str) and label for label in self.objects):
                raise InvalidZoneError(f"zone {self.name}: labels are non-empty strings")
            object.__setattr__(self, "objects", frozenset(self.objects))
        if isinstance(self.inertia, bool) or not isinstance(self.inertia, int) or self.inertia < 1:
            raise InvalidZoneError(f"zone {self.name}: inertia {self.inertia!r} is not an int ≥ 1")

    def applies_to(self, label: str) -> bool:
        return self.objects is None or label in self.objects

    def contains(self, point: Point) -> bool:
        """Whether ``point`` (relative coordinates) is inside the polygon or on its boundary."""
        return _on_boundary(point, self.polygon) or _crosses_odd(point, self.polygon)


def zones_at(
    box: Box, width: int, height: int, zones: Sequence[Zone], label: str
) -> tuple[str, ...]:
    """The names of the ``zones`` (in their order) that apply to ``label`` and hold the
    bottom-centre of ``box`` (pixels of a ``width`` × ``height`` frame).

    Raises :class:`~hearthwatch.security.tracker.InvalidDetectionError` for an invalid box and
    ``ValueError`` for a frame size that is not positive.
    """
    x1, _, x2, y2 = validate_box(box)
    for side in (width, height):
        if isinstance(side, bool) or not isinstance(side, numbers.Integral) or side < 1:
            raise ValueError(f"frame size {width}×{height} is not two positive ints")
    bottom_centre = ((x1 + x2) / 2 / width, y2 / height)
    return tuple(z.name for z in zones if z.applies_to(label) and z.contains(bottom_centre))


class ZonePresence:
    """One track's presence in a camera's zones, with each zone's inertia."""

    def __init__(self, zones: Sequence[Zone]) -> None:
        names = [zone.name for zone in zones]
        if len(set(names)) != len(names):
            raise InvalidZoneError(f"zone names repeat: {names}")
        self._inertia = {zone.name: zone.inertia for zone in zones}
        self._inside_for = dict.fromkeys(names, 0)
        self._entered: set[str] = set()

    def update(self, names_now: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Record one update in which the track is inside the zones ``names_now``; returns
        ``(current, entered)``: the zones the track counts as in now, and those of them it counts
        as in for the first time; both in the zones' order."""
        inside = set(names_now)
        unknown = inside - self._inertia.keys()
        if unknown:
            raise UnknownZoneError(f"not among this camera's zones: {sorted(unknown)}")
        current = []
        for name, inertia in self._inertia.items():
            self._inside_for[name] = self._inside_for[name] + 1 if name in inside else 0
            if self._inside_for[name] >= inertia:
                current.append(name)
        entered = tuple(name for name in current if name not in self._entered)
        self._entered.update(entered)
        return tuple(current), entered


def _checked_polygon(name: str, polygon: Iterable[Iterable[float]]) -> tuple[Point, ...]:
    try:
        points = tuple(_checked_point(point) for point in polygon)
    except (TypeError, ValueError) as exc:
        raise InvalidZoneError(f"zone {name}: {exc}") from exc
    if len(points) < 3:
        raise InvalidZoneError(f"zone {name}: a polygon needs at least 3 points")
    if _twice_area(points) == 0.0:
        raise InvalidZoneError(f"zone {name}: the polygon encloses no area")
    return points


def _checked_point(point: Iterable[float]) -> Point:
    values = tuple(point)
    if len(values) != 2 or not all(
        isinstance(v, numbers.Real)
        and not isinstance(v, bool)
        and math.isfinite(v)
        and 0.0 <= v <= 1.0
        for v in values
    ):
        raise ValueError(f"point {point!r} is not two finite numbers in [0, 1]")
    return (float(values[0]), float(values[1]))


def _twice_area(points: tuple[Point, ...]) -> float:
    return abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in _edges(points)))


def _edges(polygon: tuple[Point, ...]) -> Iterable[tuple[Point, Point]]:
    return zip(polygon, polygon[1:] + polygon[:1], strict=True)


def _on_boundary(point: Point, polygon: tuple[Point, ...]) -> bool:
    px, py = point
    for (ax, ay), (bx, by) in _edges(polygon):
        dx, dy = bx - ax, by - ay
        length_sq = dx * dx + dy * dy
        if length_sq == 0.0:
            t = 0.0
        else:
            t = min(1.0, max(0.0, ((px - ax) * dx + (py - ay) * dy) / length_sq))
        if math.hypot(px - (ax + t * dx), py - (ay + t * dy)) <= EDGE_TOLERANCE:
            return True
    return False


def _crosses_odd(point: Point, polygon: tuple[Point, ...]) -> bool:
    """Even-odd rule: a ray from ``point`` towards +x crosses the boundary an odd number of
    times (each edge taken as half-open in y, so a vertex on the ray counts once)."""
    px, py = point
    inside = False
    for (ax, ay), (bx, by) in _edges(polygon):
        if (ay > py) != (by > py) and px < ax + (py - ay) * (bx - ax) / (by - ay):
            inside = not inside
    return inside
