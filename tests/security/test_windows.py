"""Per-camera windows: closing when idle and at the cap, links between windows by a continuing
track, late frames, resuming after a restart, and (a property over random event sequences) no
detection ever landing in a closed window."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import hypothesis
import pytest
from hypothesis import strategies as st

from hearthwatch.security.windows import (
    ClosedWindow,
    OpenWindowState,
    WindowBook,
    WindowInputError,
)

CAMERA = "front-door"


def numbered_ids() -> Callable[[str], str]:
    numbers = itertools.count(1)
    return lambda camera_id: f"{camera_id}-w{next(numbers)}"


def new_book(window_s: float = 90.0, idle_s: float = 30.0) -> WindowBook:
    return WindowBook(CAMERA, window_s=window_s, idle_s=idle_s, new_id=numbered_ids())


def test_a_window_closes_when_idle_for_exactly_idle_s() -> None:
    book = new_book()
    first = book.add("t1", 100.0)
    assert (first.window_id, first.opened, first.links) == ("front-door-w1", True, ())
    again = book.add("t1", 110.0)
    assert (again.window_id, again.opened) == ("front-door-w1", False)
    assert book.due(139.999) == []
    assert book.open_windows() == (OpenWindowState("front-door-w1", 100.0, 110.0, ("t1",)),)
    assert book.due(140.0) == [
        ClosedWindow("front-door-w1", CAMERA, 100.0, 110.0, 140.0, ("t1",)),
    ]
    assert book.open_windows() == ()
    assert book.due(1000.0) == []


def test_a_detection_after_an_idle_gap_opens_a_new_window_even_before_due_runs() -> None:
    book = new_book()
    book.add("t1", 100.0)
    book.add("t2", 129.9)  # 29.9 s after the last detection: the same window
    later = book.add("t2", 159.9)  # exactly idle_s after it: a new window
    assert (later.window_id, later.opened) == ("front-door-w2", True)
    assert later.links == (("front-door-w1", "t2"),)
    assert book.due(160.0) == [
        ClosedWindow("front-door-w1", CAMERA, 100.0, 129.9, 160.0, ("t1", "t2")),
    ]
    assert [w.window_id for w in book.open_windows()] == ["front-door-w2"]


def test_a_continuous_track_across_the_cap_gives_two_windows_linked_by_that_track() -> None:
    book = new_book()
    assignments = {}
    for second in range(171):  # t1 seen every second; t3 too until 100; t2 only after 120
        assignments[("t1", second)] = book.add("t1", float(second))
        if second <= 100:
            assignments[("t3", second)] = book.add("t3", float(second))
        if second >= 120:
            assignments[("t2", second)] = book.add("t2", float(second))
    ids = {a.window_id for a in assignments.values()}
    assert ids == {"front-door-w1", "front-door-w2"}
    assert all(
        a.window_id == ("front-door-w1" if second < 90 else "front-door-w2")
        for (_, second), a in assignments.items()
    )
    assert assignments[("t1", 90)].opened and assignments[("t1", 90)].links == (
        ("front-door-w1", "t1"),
    )
    assert assignments[("t3", 90)].links == (("front-door-w1", "t3"),)
    links = [link for a in assignments.values() for link in a.links]
    assert links == [("front-door-w1", "t1"), ("front-door-w1", "t3")]  # once per pair, track

    assert book.due(90.0) == [
        ClosedWindow("front-door-w1", CAMERA, 0.0, 89.0, 90.0, ("t1", "t3")),
    ]
    assert book.due(179.999) == []
    assert book.due(180.0) == [
        ClosedWindow("front-door-w2", CAMERA, 90.0, 170.0, 180.0, ("t1", "t3", "t2")),
    ]


def test_a_late_frame_joins_the_open_window_and_never_reopens_a_closed_one() -> None:
    book = new_book()
    book.add("t1", 100.0)
    book.add("t1", 105.0)
    late = book.add("t2", 40.0)  # a pushed frame with a capture time before the window opened
    assert (late.window_id, late.opened) == ("front-door-w1", False)
    assert book.open_windows() == (OpenWindowState("front-door-w1", 100.0, 105.0, ("t1", "t2")),)
    (closed,) = book.due(135.0)
    assert closed.window_id == "front-door-w1"

    # Captured inside the closed window's span, it arrives after the window closed.
    after = book.add("t3", 104.0)
    assert (after.window_id, after.opened) == ("front-door-w2", True)
    # Its window opens at its old capture time, so it is already idle at the next due.
    assert book.due(135.0) == [
        ClosedWindow("front-door-w2", CAMERA, 104.0, 104.0, 135.0, ("t3",)),
    ]


def test_resumed_window_continues_and_closes_when_idle() -> None:
    book = new_book()
    book.resume([OpenWindowState("w-old", 1000.0, 1020.0, ("t1",))])
    assert book.open_windows() == (OpenWindowState("w-old", 1000.0, 1020.0, ("t1",)),)
    assert book.due(1049.9) == []
    assert book.add("t1", 1030.0).window_id == "w-old"
    joined = book.add("t2", 1031.0)
    assert (joined.window_id, joined.opened, joined.links) == ("w-old", False, ())
    assert book.due(1060.9) == []
    assert book.due(1061.0) == [ClosedWindow("w-old", CAMERA, 1000.0, 1031.0, 1061.0, ("t1", "t2"))]


def test_resumed_window_closes_at_the_cap() -> None:
    book = new_book()
    book.resume([OpenWindowState("w-old", 1000.0, 1085.0, ("t1",))])
    assert book.due(1089.9) == []
    assert book.add("t1", 1089.9).window_id == "w-old"
    assert [w.window_id for w in book.due(1090.0)] == ["w-old"]
    fresh = book.add("t1", 1090.5)
    assert fresh.opened and fresh.links == (("w-old", "t1"),)


def test_of_two_resumed_windows_the_older_closes_at_the_next_due() -> None:
    book = new_book()
    book.resume(
        [
            OpenWindowState("w-new", 1050.0, 1060.0, ("t2",)),
            OpenWindowState("w-old", 1000.0, 1049.0, ("t1",)),
        ]
    )
    assert [w.window_id for w in book.open_windows()] == ["w-new"]
    assert book.add("t1", 1061.0).links == (("w-old", "t1"),)
    assert book.due(1062.0) == [ClosedWindow("w-old", CAMERA, 1000.0, 1049.0, 1062.0, ("t1",))]
    assert [w.window_id for w in book.open_windows()] == ["w-new"]


@pytest.mark.parametrize(
    "state",
    [
        OpenWindowState("", 1000.0, 1001.0, ()),
        OpenWindowState("w", math.nan, 1001.0, ()),
        OpenWindowState("w", 1000.0, math.inf, ()),
        OpenWindowState("w", 1000.0, 999.0, ()),
        OpenWindowState("w", 1000.0, 1001.0, ("",)),
    ],
)
def test_invalid_resumed_states_are_refused(state: OpenWindowState) -> None:
    with pytest.raises(WindowInputError):
        new_book().resume([state])


def test_resume_refuses_repeated_ids_and_a_book_in_use() -> None:
    state = OpenWindowState("w", 1000.0, 1001.0, ("t1",))
    with pytest.raises(WindowInputError):
        new_book().resume([state, state])
    book = new_book()
    book.add("t1", 5.0)
    with pytest.raises(RuntimeError):
        book.resume([state])


def test_invalid_inputs_are_refused() -> None:
    book = new_book()
    for bad in (math.nan, math.inf, True, "5"):
        with pytest.raises(WindowInputError):
            book.add("t1", bad)  # type: ignore[arg-type]
        with pytest.raises(WindowInputError):
            book.due(bad)  # type: ignore[arg-type]
    with pytest.raises(WindowInputError):
        book.add("", 5.0)
    assert book.open_windows() == ()
    with pytest.raises(WindowInputError):
        WindowBook(CAMERA, window_s=0.0)
    with pytest.raises(WindowInputError):
        WindowBook(CAMERA, idle_s=math.nan)
    with pytest.raises(WindowInputError):
        WindowBook("")


def test_default_window_ids_hold_camera_and_epoch_and_are_unique() -> None:
    book = WindowBook(CAMERA, window_s=1.0)
    ids = [book.add("t1", float(second)).window_id for second in range(0, 20, 2)]
    assert len(set(ids)) == 10
    for window_id in ids:
        assert re.fullmatch(r"front-door-\d{10}-[0-9a-f]{32}", window_id), window_id


@dataclass
class WindowModel:
    """What the property test saw of one window."""

    opened_at: float
    last_detection_at: float
    tracks: list[str] = field(default_factory=list)


events = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "due"]),
        st.sampled_from(["a", "b", "c"]),
        st.floats(min_value=0.0, max_value=12.0),  # how far the clock moves first
        st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=60.0)),  # how late a frame is
    ),
    max_size=60,
)


@hypothesis.settings(max_examples=200, derandomize=True, database=None, deadline=None)
@hypothesis.given(events=events)
def test_no_detection_ever_lands_in_a_closed_window(
    events: list[tuple[str, str, float, float]],
) -> None:
    window_s, idle_s = 20.0, 7.0
    book = new_book(window_s=window_s, idle_s=idle_s)
    windows: dict[str, WindowModel] = {}
    closed: set[str] = set()  # closed by add or due, reported or not
    reported: set[str] = set()
    current: str | None = None
    last_closed: str | None = None
    links_seen: set[tuple[str, str]] = set()
    clock = 1000.0

    def check_reported(result: list[ClosedWindow], now: float) -> None:
        for w in result:
            assert w.window_id in closed and w.window_id not in reported
            reported.add(w.window_id)
            model = windows[w.window_id]
            assert (w.opened_at, w.last_detection_at) == (model.opened_at, model.last_detection_at)
            assert (w.closed_at, w.camera_id, w.track_keys) == (now, CAMERA, tuple(model.tracks))
        assert closed == reported, "every closed window is reported at the next due"

    for kind, track, step, lag in events:
        clock += step
        if kind == "due":
            if current is not None:
                model = windows[current]
                if clock - model.opened_at >= window_s or clock - model.last_detection_at >= idle_s:
                    closed.add(current)
                    last_closed, current = current, None
            check_reported(book.due(clock), clock)
            continue
        captured_at = clock - lag
        assignment = book.add(track, captured_at)
        assert assignment.window_id not in closed, "a detection landed in a closed window"
        if current is not None and assignment.window_id != current:
            model = windows[current]
            assert (
                captured_at - model.opened_at >= window_s
                or captured_at - model.last_detection_at >= idle_s
            ), "the open window was closed without cause"
            closed.add(current)
            last_closed = current
        assert assignment.opened == (assignment.window_id not in windows)
        if assignment.opened:
            windows[assignment.window_id] = WindowModel(captured_at, captured_at)
        model = windows[assignment.window_id]
        assert captured_at - model.opened_at < window_s
        assert captured_at - model.last_detection_at < idle_s
        model.last_detection_at = max(model.last_detection_at, captured_at)
        expected_links: tuple[tuple[str, str], ...] = ()
        if track not in model.tracks:
            model.tracks.append(track)
            if last_closed is not None and track in windows[last_closed].tracks:
                expected_links = ((last_closed, track),)
        assert assignment.links == expected_links
        assert not links_seen & set(expected_links)
        links_seen.update(expected_links)
        current = assignment.window_id
        assert [w.window_id for w in book.open_windows()] == [current]

    if current is not None:
        closed.add(current)
    check_reported(book.due(clock + window_s), clock + window_s)
    assert reported == set(windows)
    assert book.open_windows() == ()
