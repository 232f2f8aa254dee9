"""Event media: boxes drawn, JPEGs written atomically and read back, the best snapshot of a
window, MP4 clips encoded from stored frames (decoded back with PyAV), and paths confined to
the data directory."""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import pytest

from hearthwatch.runtime.imaging.decode import ImageError
from hearthwatch.security import media
from hearthwatch.security.evidence import DetectionEvidence, WindowEvidence
from hearthwatch.security.media import (
    ImageArrayError,
    UnsafePathError,
    best_snapshot,
    confined_path,
    draw_boxes,
    read_jpeg,
    write_clip,
    write_jpeg,
)
from hearthwatch.security.observations import Box

SQUARE = 40


def dark(width: int, height: int) -> np.ndarray:
    return np.full((height, width, 3), 30, np.uint8)


def with_square(width: int, height: int, x: int, y: int) -> np.ndarray:
    """A dark frame with a white ``SQUARE``-pixel square whose top-left corner is (x, y)."""
    image = dark(width, height)
    image[y : y + SQUARE, x : x + SQUARE] = 255
    return image


def bright_centre(image: np.ndarray) -> tuple[float, float]:
    """The centroid (x, y) of the bright pixels."""
    ys, xs = np.nonzero(image.mean(axis=2) > 128)
    assert len(xs) > 0, "no bright pixels"
    return float(xs.mean()), float(ys.mean())


def decoded(path: Path) -> tuple[str, list[np.ndarray]]:
    with av.open(str(path)) as container:
        codec = container.streams.video[0].codec_context.name
        return codec, [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith(".tmp"))


# paths


def test_paths_are_confined_to_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "outside").mkdir()
    (data / "link").symlink_to(tmp_path / "outside")
    assert confined_path(data, "frames/a.jpg") == data.resolve() / "frames" / "a.jpg"
    assert confined_path(data, data / "b.jpg") == data.resolve() / "b.jpg"
    for escaping in ("../x.jpg", "frames/../../x.jpg", tmp_path / "x.jpg", "link/x.jpg", ".", ""):
        with pytest.raises(UnsafePathError):
            confined_path(data, escaping)
    with pytest.raises(UnsafePathError, match="not a usable path"):
        confined_path(data, "a\0b.jpg")


# drawing


def test_draw_boxes_draws_labelled_rectangles_on_a_copy() -> None:
    image = dark(320, 240)
    box = (100.0, 100.0, 200.0, 200.0)
    drawn = draw_boxes(image, [(box, "person 91%")])
    assert (image == 30).all(), "the input was changed"
    colour = np.array(palette_colour("person"))
    assert (drawn[150, 100] == colour).all()  # left edge
    assert (drawn[200, 150] == colour).all()  # bottom edge
    assert (drawn[150, 150] == 30).all()  # inside untouched
    tag_rows = [row for row in range(100) if (drawn[row, 101] == colour).all()]
    assert len(tag_rows) >= 8, "no filled tag above the box"
    tag = drawn[tag_rows[0] : tag_rows[-1] + 1, 101:170].astype(int)
    assert (np.abs(tag - colour).sum(axis=2) > 300).sum() > 20, "no contrasting text on the tag"
    other = draw_boxes(image, [(box, "person 17%")])
    assert (other[150, 100] == colour).all(), "a label's colour depends on its score"
    assert (other[tag_rows] != drawn[tag_rows]).any(), "the text is not drawn"


def palette_colour(label: str) -> tuple[int, int, int]:
    return media.PALETTE[zlib.crc32(label.encode()) % len(media.PALETTE)]


def test_draw_boxes_clips_to_the_image_and_skips_boxes_outside() -> None:
    image = dark(320, 240)
    clipped = draw_boxes(image, [((-50.0, -50.0, 100.0, 500.0), "car")])
    colour = np.array(palette_colour("car"))
    assert (clipped[120, 0] == colour).all()  # the left edge, clipped to column 0
    assert (clipped[239, 50] == colour).all()  # the bottom edge, clipped to the last row
    outside = draw_boxes(image, [((400.0, 10.0, 500.0, 100.0), "car")])
    assert (outside == image).all()
    reversed_corners = draw_boxes(image, [((200.0, 200.0, 100.0, 100.0), "car")])
    assert (reversed_corners[150, 100] == colour).all()


def test_draw_boxes_refuses_bad_images_and_boxes() -> None:
    with pytest.raises(ImageArrayError):
        draw_boxes(np.zeros((10, 10), np.uint8), [])
    with pytest.raises(ImageArrayError):
        draw_boxes(np.zeros((10, 10, 3), np.float32), [])
    with pytest.raises(ImageArrayError, match="finite"):
        draw_boxes(dark(10, 10), [((0.0, 0.0, float("nan"), 5.0), "x")])
    with pytest.raises(ImageArrayError, match="four numbers"):
        draw_boxes(dark(10, 10), [((0.0, 0.0, 5.0), "x")])  # type: ignore[list-item]


# JPEG


def test_write_jpeg_round_trips_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    image = with_square(160, 120, 50, 40)
    written = write_jpeg("snaps/a.jpg", image, data_dir=tmp_path, quality=95)
    assert written == tmp_path.resolve() / "snaps" / "a.jpg"
    back = read_jpeg("snaps/a.jpg", data_dir=tmp_path)
    assert back.shape == image.shape
    assert np.abs(back.astype(int) - image.astype(int)).mean() < 3
    write_jpeg("snaps/a.jpg", dark(80, 60), data_dir=tmp_path)
    assert read_jpeg(written, data_dir=tmp_path).shape == (60, 80, 3)
    assert leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_jpeg("a.jpg", dark(80, 60), data_dir=tmp_path)
    before = (tmp_path / "a.jpg").read_bytes()

    def failing_replace(source: object, target: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(media.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        write_jpeg("a.jpg", with_square(80, 60, 0, 0), data_dir=tmp_path)
    assert (tmp_path / "a.jpg").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg"]


def test_write_and_read_jpeg_refuse_bad_input(tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError):
        write_jpeg("../escape.jpg", dark(8, 8), data_dir=tmp_path)
    assert not (tmp_path.parent / "escape.jpg").exists()
    with pytest.raises(ValueError, match="quality"):
        write_jpeg("a.jpg", dark(8, 8), data_dir=tmp_path, quality=0)
    good = media.encode_jpeg(dark(64, 64))
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "noise.jpg").write_bytes(os.urandom(2000))
    with pytest.raises(ImageError):
        read_jpeg("cut.jpg", data_dir=tmp_path)
    with pytest.raises(ImageError):
        read_jpeg("noise.jpg", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError):
        read_jpeg("missing.jpg", data_dir=tmp_path)


# snapshot


def detection(
    detection_id: int, frame_id: int, label: str, score: float, box: Box
) -> DetectionEvidence:
    return DetectionEvidence(
        id=detection_id,
        frame_id=frame_id,
        track_key=f"cam1-{label}",
        label=label,
        score=score,
        box=box,
        zones=(),
        captured_at=1_700_000_000.0 + frame_id,
    )


def evidence_with(
    detections: Sequence[DetectionEvidence], frame_paths: dict[int, str]
) -> WindowEvidence:
    return WindowEvidence(
        window_id="w-1",
        camera_id="cam1",
        camera_name="Front door",
        zone_description="",
        timezone="UTC",
        opened_at=1_700_000_000.0,
        closed_at=1_700_000_100.0,
        linked_window_ids=(),
        tracks=(),
        detections=tuple(detections),
        frame_paths=frame_paths,
    )


def test_the_best_snapshot_is_the_best_persons_frame_with_its_boxes(tmp_path: Path) -> None:
    write_jpeg("frames/1.jpg", dark(320, 240), data_dir=tmp_path)
    write_jpeg("frames/2.jpg", dark(320, 240), data_dir=tmp_path)
    evidence = evidence_with(
        [
            detection(10, 1, "car", 0.97, (20.0, 20.0, 120.0, 120.0)),
            detection(11, 2, "person", 0.61, (150.0, 60.0, 230.0, 220.0)),
            detection(12, 2, "person", 0.72, (30.0, 60.0, 110.0, 220.0)),
            detection(13, 2, "cat", 0.99, (250.0, 160.0, 310.0, 230.0)),
        ],
        {1: "frames/1.jpg", 2: "frames/2.jpg"},
    )
    snapshot = best_snapshot(evidence, tmp_path, path="snapshots/w-1.jpg")
    assert snapshot is not None
    assert (snapshot.detection_id, snapshot.frame_id) == (12, 2)
    assert (snapshot.width, snapshot.height) == (320, 240)
    assert (tmp_path / "snapshots" / "w-1.jpg").read_bytes() == snapshot.jpeg
    image = read_jpeg("snapshots/w-1.jpg", data_dir=tmp_path)
    for x, y in ((30, 140), (150, 140), (250, 200)):  # the left edge of each box of frame 2
        assert image[y, x].max() > 90, f"no box edge at {(x, y)}"
    assert image[140, 20].max() < 60, "the car of frame 1 is drawn on frame 2"


def test_the_snapshot_falls_back_to_a_readable_frame(tmp_path: Path) -> None:
    write_jpeg("frames/1.jpg", dark(160, 120), data_dir=tmp_path)
    (tmp_path / "frames" / "2.jpg").write_bytes(b"\xff\xd8\xff not really")
    evidence = evidence_with(
        [
            detection(1, 1, "car", 0.8, (10.0, 10.0, 50.0, 50.0)),
            detection(2, 2, "person", 0.9, (10.0, 10.0, 50.0, 50.0)),
            detection(3, 3, "person", 0.5, (10.0, 10.0, 50.0, 50.0)),  # frame not kept
        ],
        {1: "frames/1.jpg", 2: "frames/2.jpg"},
    )
    snapshot = best_snapshot(evidence, tmp_path)
    assert snapshot is not None
    assert snapshot.detection_id == 1
    unreadable = evidence_with(evidence.detections[1:], {2: "frames/2.jpg"})
    assert best_snapshot(unreadable, tmp_path) is None


def test_the_snapshot_refuses_frame_paths_outside_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_jpeg("elsewhere.jpg", dark(16, 16), data_dir=tmp_path)
    evidence = evidence_with(
        [detection(1, 1, "person", 0.9, (1.0, 1.0, 5.0, 5.0))], {1: "../elsewhere.jpg"}
    )
    with pytest.raises(UnsafePathError):
        best_snapshot(evidence, data)


# clips


def store_frames(data_dir: Path, images: Sequence[np.ndarray]) -> list[Path]:
    paths = []
    for i, image in enumerate(images):
        paths.append(write_jpeg(f"frames/{i:03d}.jpg", image, data_dir=data_dir, quality=95))
    return paths


def test_a_clip_decodes_to_its_frames_with_the_square_where_it_was(tmp_path: Path) -> None:
    positions = [(10 + 20 * i, 20 + 10 * i) for i in range(12)]
    paths = store_frames(tmp_path, [with_square(320, 240, x, y) for x, y in positions])
    info = write_clip("clips/w-1.mp4", paths, data_dir=tmp_path, fps=5.0)
    assert info is not None
    assert (info.frames, info.skipped, info.width, info.height) == (12, 0, 320, 240)
    assert info.fps == 5.0 and info.duration_s == pytest.approx(2.4)
    assert info.encoder == "libx264"  # PyAV 18's wheels bundle it
    assert info.path == tmp_path.resolve() / "clips" / "w-1.mp4"
    assert info.size_bytes == info.path.stat().st_size
    codec, frames = decoded(info.path)
    assert codec == "h264"
    assert len(frames) == 12
    for frame, (x, y) in zip(frames, positions, strict=True):
        assert frame.shape == (240, 320, 3)
        cx, cy = bright_centre(frame)
        assert abs(cx - (x + SQUARE / 2 - 0.5)) < 2 and abs(cy - (y + SQUARE / 2 - 0.5)) < 2
    data = info.path.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat"), "the index is not first (+faststart)"
    assert leftovers(tmp_path) == []


def test_a_wide_clip_is_shrunk_to_max_width_with_even_sides(tmp_path: Path) -> None:
    paths = store_frames(tmp_path, [with_square(667, 401, 300, 200)] * 3)
    info = write_clip("c.mp4", paths, data_dir=tmp_path, fps=2.0, max_width=333)
    assert info is not None
    assert (info.width, info.height) == (332, 200)
    _, frames = decoded(info.path)
    assert [f.shape for f in frames] == [(200, 332, 3)] * 3
    cx, cy = bright_centre(frames[0])
    assert abs(cx - 320 * 333 / 667) < 3 and abs(cy - 220 * 333 / 667) < 3


def test_frames_of_other_sizes_are_fitted_into_the_first_ones(tmp_path: Path) -> None:
    images = [
        with_square(320, 240, 100, 100),
        with_square(640, 480, 200, 200),  # twice the size: halved
        with_square(120, 240, 40, 100),  # taller: letterboxed, black bars at the sides
    ]
    info = write_clip("c.mp4", store_frames(tmp_path, images), data_dir=tmp_path, fps=1.0)
    assert info is not None
    assert (info.frames, info.width, info.height) == (3, 320, 240)
    _, frames = decoded(info.path)
    first, doubled, tall = (bright_centre(f) for f in frames)
    assert abs(first[0] - 120) < 2 and abs(first[1] - 120) < 2
    assert abs(doubled[0] - 110) < 2 and abs(doubled[1] - 110) < 2  # (200 + 20) / 2
    assert abs(tall[0] - (100 + 60)) < 2 and abs(tall[1] - 120) < 2
    assert frames[2][:, :90].max() < 40, "the left bar is not black"


def test_unreadable_frames_are_skipped(tmp_path: Path) -> None:
    paths = store_frames(tmp_path, [with_square(160, 120, 10 * i, 10) for i in range(6)])
    paths[1].write_bytes(os.urandom(500))
    paths[3].write_bytes(paths[3].read_bytes()[:300])
    paths[4].unlink()
    info = write_clip("c.mp4", paths, data_dir=tmp_path, fps=4.0)
    assert info is not None
    assert (info.frames, info.skipped) == (3, 3)
    _, frames = decoded(info.path)
    assert [round(bright_centre(f)[0]) for f in frames] == [20, 40, 70]


def test_no_readable_frame_gives_no_clip(tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    assert write_clip("c.mp4", ["bad.jpg", "missing.jpg"], data_dir=tmp_path, fps=5) is None
    assert write_clip("c.mp4", [], data_dir=tmp_path, fps=5) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jpg"]


def test_many_frames_are_spread_to_max_frames_keeping_the_duration(tmp_path: Path) -> None:
    paths = store_frames(tmp_path, [with_square(160, 120, 5 * i, 10) for i in range(20)])
    info = write_clip("c.mp4", paths, data_dir=tmp_path, fps=10.0, max_frames=5)
    assert info is not None
    assert info.frames == 5
    assert info.fps == pytest.approx(2.5) and info.duration_s == pytest.approx(2.0)
    _, frames = decoded(info.path)
    xs = [round(bright_centre(f)[0] - SQUARE / 2 + 0.5) for f in frames]
    assert xs == [0, 25, 50, 70, 95]  # frames 0, 5, 10, 14, 19


def test_a_failing_clip_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = store_frames(tmp_path, [with_square(160, 120, 10, 10)] * 5)
    previous = write_clip("c.mp4", paths[:2], data_dir=tmp_path, fps=5)
    assert previous is not None
    before = previous.path.read_bytes()
    calls = 0
    fitted = media._fitted

    def failing(image: np.ndarray, width: int, height: int) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("encoder crashed")
        return fitted(image, width, height)

    monkeypatch.setattr(media, "_fitted", failing)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        write_clip("c.mp4", paths, data_dir=tmp_path, fps=5)
    calls = 0
    with pytest.raises(RuntimeError, match="encoder crashed"):
        write_clip("new.mp4", paths, data_dir=tmp_path, fps=5)
    assert previous.path.read_bytes() == before
    assert not (tmp_path / "new.mp4").exists()
    assert leftovers(tmp_path) == []


def test_without_h264_the_clip_is_mpeg4_part_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(media, "clip_encoder", lambda: "mpeg4")
    paths = store_frames(tmp_path, [with_square(320, 240, 20 * i, 50) for i in range(4)])
    info = write_clip("c.mp4", paths, data_dir=tmp_path, fps=3.0)
    assert info is not None and info.encoder == "mpeg4"
    codec, frames = decoded(info.path)
    assert codec == "mpeg4"
    assert len(frames) == 4
    assert abs(bright_centre(frames[3])[0] - (60 + SQUARE / 2)) < 3


def test_clip_paths_and_settings_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    paths = store_frames(tmp_path, [dark(32, 32)])
    with pytest.raises(UnsafePathError):
        write_clip("../c.mp4", paths, data_dir=tmp_path, fps=5)
    with pytest.raises(UnsafePathError):
        write_clip("c.mp4", [*paths, "/etc/hostname"], data_dir=tmp_path, fps=5)
    for fps in (0.0, -1.0, float("nan"), 1000.0):
        with pytest.raises(ValueError, match="fps"):
            write_clip("c.mp4", paths, data_dir=tmp_path, fps=fps)
    with pytest.raises(ValueError, match="max_width"):
        write_clip("c.mp4", paths, data_dir=tmp_path, fps=5, max_width=4)
    assert not (tmp_path / "c.mp4").exists()
