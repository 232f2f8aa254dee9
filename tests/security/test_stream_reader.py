"""StreamReader against a real RTSP server, a local HTTP server and video files the tests write:
sampling by presentation time, the images' content, reconnecting with back-off, pacing,
looping, broken files and prompt stops."""

from __future__ import annotations

import http.server
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from rtsp_server import RtspServer, rtsp_server, unavailable

from hearthwatch.security.sources.config import (
    FileSourceConfig,
    HttpSourceConfig,
    RtspSourceConfig,
    StreamSourceConfig,
)
from hearthwatch.security.sources.status import SourceState
from hearthwatch.security.sources.stream import StreamReader

FPS = 25
FRAMES = 50  # a 2 s video
WIDTH, HEIGHT = 160, 120
LOOPBACK = ["127.0.0.1"]


def pattern(index: int) -> np.ndarray:
    """Frame ``index`` (BGR): its number in 8 bars across the top half (white for a set bit,
    the highest bit leftmost) and a bright square moving along the bottom."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for bit in range(8):
        if index >> (7 - bit) & 1:
            image[: HEIGHT // 2, bit * 20 : bit * 20 + 20] = 255
    x = index * 2
    image[80:100, x : x + 20] = (0, 255, 255)
    return image


def shown_index(image: np.ndarray) -> int:
    """The frame number ``image`` shows, checking its square is where that frame has it."""
    bits = image[HEIGHT // 4, 10::20, :].mean(axis=1) > 128
    index = int("".join("1" if b else "0" for b in bits[:8]), 2)
    assert image[85:95, index * 2 + 5 : index * 2 + 15, 1].mean() > 200, "the square is missing"
    return index


def write_video(path: Path, frames: int = FRAMES) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(FPS), "bf": "0"}
        for i in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(pattern(i), format="bgr24")))
        out.mux(stream.encode(None))
    return path


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Frames:
    """An ``on_frame`` that records what it is given."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[np.ndarray, float]] = []

    def __call__(self, image: np.ndarray, captured_at: float) -> None:
        with self.lock:
            self.items.append((image, captured_at))

    def __len__(self) -> int:
        with self.lock:
            return len(self.items)

    def indices(self) -> list[int]:
        with self.lock:
            return [shown_index(image) for image, _ in self.items]

    def times(self) -> list[float]:
        with self.lock:
            return [t for _, t in self.items]


@pytest.fixture
def reader_of() -> Iterator[Callable[..., StreamReader]]:
    """Makes started readers (fast back-off, short timeouts) and stops them all at the end."""
    readers: list[StreamReader] = []

    def make(
        config: StreamSourceConfig, on_frame: Callable[..., None], **kw: object
    ) -> StreamReader:
        options: dict[str, object] = {
            "detect_fps": 5.0,
            "roots": [],
            "allowed_hosts": LOOPBACK,
            "backoff_min_s": 0.2,
            "backoff_max_s": 1.0,
            "open_timeout_s": 3.0,
            "read_timeout_s": 3.0,
            **kw,
        }
        camera = f"cam-{threading.get_ident()}-{len(readers)}"  # names its thread uniquely
        reader = StreamReader(camera, config, on_frame=on_frame, **options)  # type: ignore[arg-type]
        readers.append(reader)
        reader.start()
        return reader

    yield make
    for reader in readers:
        reader.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspServer]:
    reason = unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    video = write_video(tmp_path_factory.mktemp("rtsp") / "camera.mp4")
    with rtsp_server(video) as started:
        yield started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# RTSP


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rtsp_frames_are_sampled_at_the_detection_rate_and_show_the_video(
    server: RtspServer, reader_of: Callable[..., StreamReader], transport: str
) -> None:
    frames = Frames()
    config = RtspSourceConfig(url=server.url, transport=transport)  # type: ignore[arg-type]
    reader = reader_of(config, frames)
    wait_for(lambda: len(frames) >= 2, 10, "the first frames")
    time.sleep(1.0)  # past the burst of frames FFmpeg buffered while probing the stream
    start, started_at = len(frames), time.monotonic()
    time.sleep(2.0)
    rate = (len(frames) - start) / (time.monotonic() - started_at)
    assert 4.0 <= rate <= 6.0, f"handed on {rate:.1f} frames/s, not 5"

    status = reader.status()
    assert status.state is SourceState.STREAMING
    assert status.frames_read >= 4 * status.frames_sampled  # 25 fps decoded, 5 handed on
    assert status.reconnects == 0 and status.last_error is None
    image, captured_at = frames.items[-1]
    assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
    assert abs(captured_at - time.time()) < 2.0
    steps = [(b - a) % FRAMES for a, b in zip(frames.indices(), frames.indices()[1:], strict=False)]
    assert steps[1:] and all(step == 5 for step in steps[1:]), steps  # evenly, every 5th


def test_rtsp_reader_reconnects_when_the_server_comes_back(
    server: RtspServer, reader_of: Callable[..., StreamReader]
) -> None:
    frames = Frames()
    reader = reader_of(RtspSourceConfig(url=server.url), frames)
    wait_for(lambda: reader.status().state is SourceState.STREAMING, 10, "streaming")

    server.stop()
    wait_for(lambda: reader.status().state is SourceState.RECONNECTING, 5, "reconnecting")
    time.sleep(0.5)  # a few attempts against the closed port
    down = reader.status()
    assert down.state is SourceState.RECONNECTING and down.last_error
    assert down.backoff_s >= 0.2

    server.start()
    seen = len(frames)
    wait_for(lambda: len(frames) >= seen + 3, 10, "frames after the restart")
    up = reader.status()
    assert up.state is SourceState.STREAMING
    assert up.reconnects >= 1
    assert up.backoff_s == 0.0
    assert all(0 <= i < FRAMES for i in frames.indices())


def test_unreachable_stream_backs_off_longer_and_stops_promptly(
    reader_of: Callable[..., StreamReader],
) -> None:
    url = f"rtsp://viewer:s3cret-pw@127.0.0.1:{free_port()}/camera"
    reader = reader_of(RtspSourceConfig(url=url), Frames(), backoff_min_s=0.1, backoff_max_s=5.0)
    backoffs: list[float] = []
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        status = reader.status()
        if status.backoff_s and (not backoffs or backoffs[-1] != status.backoff_s):
            backoffs.append(status.backoff_s)
        time.sleep(0.01)
    status = reader.status()
    assert status.state is SourceState.RECONNECTING
    assert status.reconnects >= 3 and status.frames_read == 0
    assert len(backoffs) >= 4 and backoffs == sorted(backoffs), backoffs
    assert backoffs[-1] >= 4 * backoffs[0]
    assert status.last_error is not None and "refused" in status.last_error
    assert "s3cret-pw" not in status.last_error

    began = time.monotonic()
    reader.stop(timeout_s=5.0)  # in the middle of a back-off wait of about a second
    assert time.monotonic() - began < 0.5
    assert reader.status().state is SourceState.STOPPED


def test_a_silent_server_cannot_hold_the_reader_past_its_timeout(
    reader_of: Callable[..., StreamReader],
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts connections (in the backlog) and never answers
        url = f"rtsp://127.0.0.1:{listener.getsockname()[1]}/camera"
        reader = reader_of(RtspSourceConfig(url=url), Frames(), open_timeout_s=0.5)
        wait_for(lambda: reader.status().last_error is not None, 5, "the open to time out")
        assert reader.status().last_error == "could not open the source within 0.5 s"
        assert reader.status().state is SourceState.RECONNECTING

        thread_name = f"stream-{reader.camera_id}"
        assert thread_name in {t.name for t in threading.enumerate()}
        began = time.monotonic()
        reader.stop(timeout_s=3.0)
        assert time.monotonic() - began < 1.5  # a wait or an open, each ending within 0.5 s
        assert thread_name not in {t.name for t in threading.enumerate()}


def test_a_stream_outside_the_allowed_hosts_is_refused(
    reader_of: Callable[..., StreamReader],
) -> None:
    reader = reader_of(
        RtspSourceConfig(url="rtsp://127.0.0.1:1/camera"), Frames(), allowed_hosts=["10.0.0.0/8"]
    )
    wait_for(lambda: reader.status().last_error is not None, 5, "the refusal")
    error = reader.status().last_error
    assert error is not None and error.startswith("refused: ") and "outside the allowed" in error


# HTTP


@pytest.fixture
def http_video(tmp_path: Path) -> Iterator[str]:
    """An HTTP server on loopback: ``/camera.ts`` serves a 2 s MPEG-TS video and ends,
    ``/moved`` redirects there. Yields its base URL."""
    video = write_video(tmp_path / "camera.ts").read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/camera.ts")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.send_header("Content-Length", str(len(video)))
            self.end_headers()
            self.wfile.write(video)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def test_an_http_stream_that_ends_counts_as_a_drop(
    http_video: str, reader_of: Callable[..., StreamReader]
) -> None:
    frames = Frames()
    reader = reader_of(HttpSourceConfig(url=f"{http_video}/camera.ts"), frames, detect_fps=25.0)
    wait_for(lambda: reader.status().reconnects >= 1, 10, "a reconnect")
    wait_for(lambda: reader.status().frames_read > FRAMES, 10, "frames after the reconnect")
    status = reader.status()
    assert status.last_error == "the stream ended"
    assert frames.indices()[:FRAMES] == list(range(FRAMES))  # every frame at 25 fps, in order


def test_an_http_redirect_is_not_followed(
    http_video: str, reader_of: Callable[..., StreamReader]
) -> None:
    reader = reader_of(HttpSourceConfig(url=f"{http_video}/moved"), Frames())
    wait_for(lambda: reader.status().last_error is not None, 5, "the failure")
    status = reader.status()
    assert status.frames_read == 0
    assert status.last_error is not None and status.last_error.startswith("could not open")


# files


def test_a_file_plays_once_as_fast_as_it_decodes(
    tmp_path: Path, reader_of: Callable[..., StreamReader]
) -> None:
    video = write_video(tmp_path / "clip.mp4")
    frames = Frames()
    config = FileSourceConfig(path=video, realtime=False)
    began = time.monotonic()
    reader = reader_of(config, frames, roots=[tmp_path])
    wait_for(lambda: reader.status().state is SourceState.FINISHED, 10, "the end of the file")
    assert time.monotonic() - began < 1.5  # 2 s of video, not paced

    status = reader.status()
    assert (status.frames_read, status.frames_sampled) == (FRAMES, FRAMES // 5)
    assert frames.indices() == list(range(0, FRAMES, 5))
    steps = np.diff(frames.times())
    assert np.allclose(steps, 0.2, atol=1e-3)  # the video's own timeline, not the decode's


def test_a_realtime_file_is_paced_and_loops(
    tmp_path: Path, reader_of: Callable[..., StreamReader]
) -> None:
    video = write_video(tmp_path / "clip.mkv")
    frames = Frames()
    config = FileSourceConfig(path=video, realtime=True, loop=True)
    reader = reader_of(config, frames, roots=[tmp_path], detect_fps=10.0)
    time.sleep(3.0)

    status = reader.status()
    assert status.state is SourceState.STREAMING and status.reconnects == 0
    assert 26 <= len(frames) <= 32, len(frames)  # 10 a second, not as fast as it decodes
    first_play = [math.ceil(k * FPS / 10 - 1e-9) for k in range(20)]  # 0, 3, 5, 8, 10, ...
    assert frames.indices()[:22] == first_play + [0, 3]  # then from the start again
    times = frames.times()
    assert all(b > a for a, b in zip(times, times[1:], strict=False))
    assert abs(times[-1] - time.time()) < 0.5

    began = time.monotonic()
    reader.stop()  # most likely in a realtime pause
    assert time.monotonic() - began < 0.3
    assert reader.status().state is SourceState.STOPPED


def test_an_on_frame_that_raises_does_not_stop_the_reader(
    tmp_path: Path, reader_of: Callable[..., StreamReader]
) -> None:
    calls: list[float] = []

    def failing(image: np.ndarray, captured_at: float) -> None:
        calls.append(captured_at)
        raise RuntimeError("the consumer broke")

    config = FileSourceConfig(path=write_video(tmp_path / "clip.mp4"), realtime=False)
    reader = reader_of(config, failing, roots=[tmp_path])
    wait_for(lambda: reader.status().state is SourceState.FINISHED, 10, "the end of the file")
    assert len(calls) == reader.status().frames_sampled == FRAMES // 5


def test_a_truncated_stream_file_plays_what_it_holds(
    tmp_path: Path, reader_of: Callable[..., StreamReader]
) -> None:
    whole = write_video(tmp_path / "whole.ts").read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(whole[: len(whole) // 2])
    reader = reader_of(FileSourceConfig(path=cut, realtime=False), Frames(), roots=[tmp_path])
    wait_for(lambda: reader.status().state is SourceState.FINISHED, 10, "the end of the file")
    assert 5 <= reader.status().frames_read < FRAMES


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_broken_file_fails_and_is_retried(
    tmp_path: Path, reader_of: Callable[..., StreamReader], damage: str
) -> None:
    whole = write_video(tmp_path / "whole.mp4").read_bytes()  # its index is at the end
    broken = tmp_path / "broken.mp4"
    content = {
        "truncated": whole[: len(whole) * 2 // 3],
        "garbage": np.random.default_rng(0).bytes(20000),
        "empty": b"",
    }[damage]
    broken.write_bytes(content)
    reader = reader_of(FileSourceConfig(path=broken), Frames(), roots=[tmp_path])
    wait_for(lambda: reader.status().reconnects >= 2, 5, "retries")
    status = reader.status()
    assert status.state is SourceState.RECONNECTING and status.frames_read == 0
    assert status.last_error is not None and status.last_error.startswith(
        "could not open the source: "
    )
    assert str(tmp_path) not in status.last_error


def test_a_file_outside_the_roots_is_refused(
    tmp_path: Path, reader_of: Callable[..., StreamReader]
) -> None:
    video = write_video(tmp_path / "clip.mp4")
    (tmp_path / "media").mkdir()
    reader = reader_of(FileSourceConfig(path=video), Frames(), roots=[tmp_path / "media"])
    wait_for(lambda: reader.status().last_error is not None, 5, "the refusal")
    assert reader.status().last_error == (
        f"refused: the path {str(video)!r} is outside the configured media roots"
    )
    assert reader.status().frames_read == 0


def test_settings_out_of_range_are_refused(tmp_path: Path) -> None:
    config = FileSourceConfig(path=tmp_path / "clip.mp4")
    for rate, low, high in ((0.0, 0.5, 30.0), (500.0, 0.5, 30.0), (5.0, 2.0, 1.0), (5.0, 0.0, 1.0)):
        with pytest.raises(ValueError):
            StreamReader(
                "cam",
                config,
                detect_fps=rate,
                on_frame=Frames(),
                roots=[],
                allowed_hosts=[],
                backoff_min_s=low,
                backoff_max_s=high,
            )
