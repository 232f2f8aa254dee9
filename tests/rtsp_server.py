"""A real RTSP server for tests: GStreamer's RTSP server (gst-rtsp-server) in a process of its
own, serving a video in a loop as H.264 at ``rtsp://127.0.0.1:<port>/camera``, like a camera.

``scripts/services/rtsp-server.sh`` installs it (Debian packages, used through the system
``/usr/bin/python3`` and its GObject bindings). The test side (:func:`rtsp_server`, run by the
project's Python) re-encodes the video with PyAV into H.264 access units, one IDR frame a
second, and starts this file as the server (``/usr/bin/python3 tests/rtsp_server.py``), which
pushes those units through an ``appsrc`` with ever-growing timestamps, looping for as long as it
runs. The server ends on SIGTERM or when its standard input closes, so it never outlives the
test process. Only the standard library is imported at the top: the server side runs under an
interpreter without the project's packages.
"""

from __future__ import annotations

import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
INSTALL_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "services" / "rtsp-server.sh"
MOUNT = "/camera"
_PROBE = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
    "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
    "elements = ('appsrc', 'h264parse', 'rtph264pay');"
    "missing = [e for e in elements if not Gst.ElementFactory.find(e)];"
    "assert not missing, missing"
)


def unavailable() -> str | None:
    """Why the RTSP server cannot run here, or None when it can."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is missing; run {INSTALL_SCRIPT} as root"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"GStreamer's RTSP server is not installed ({last}); run {INSTALL_SCRIPT} as root"
    return None


def write_access_units(video: Path, out: Path) -> float:
    """Re-encode ``video`` as H.264 access units (Annex B, headers on every IDR frame, one IDR
    a second, no B-frames) into ``out``, each prefixed by its length; return its frame rate."""
    import av

    with av.open(str(video)) as source:
        stream = source.streams.video[0]
        fps = float(stream.average_rate or 25)
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height = stream.width, stream.height
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = stream.time_base or av.time_base
        encoder.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "g": str(max(1, round(fps))),
            "bf": "0",
            # one slice a frame: GStreamer's payloader garbles x264's sliced-thread frames
            "x264-params": "repeat-headers=1:sliced-threads=0:threads=1",
        }
        with out.open("wb") as units:
            frames = [f.reformat(format="yuv420p") for f in source.decode(stream)]
            for frame in [*frames, None]:
                for packet in encoder.encode(frame):
                    units.write(struct.pack(">I", packet.size) + bytes(packet))
    if not frames:
        raise ValueError(f"{video} holds no video frames")
    return fps


class RtspServer:
    """The server process serving one video; ``url`` stays the same across :meth:`restart`."""

    def __init__(self, units: Path, fps: float, log: Path):
        self._units = units
        self._fps = fps
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.url = ""

    def start(self, ready_timeout_s: float = 20.0) -> None:
        """Start serving (on a free loopback port the first time, the same port after) and
        return once a client has read a frame; raises ``RuntimeError`` past the deadline."""
        assert self._process is None, "already serving"
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [SYSTEM_PYTHON, __file__, str(self._units), str(self._fps), str(self.port)],
                # the system Python runs it: nothing of the project's path (a test run may put
                # a sitecustomize there that imports the project's packages)
                env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        try:
            self.port = self._read_port(time.monotonic() + ready_timeout_s)
            self.url = f"rtsp://127.0.0.1:{self.port}{MOUNT}"
            self._wait_for_frames(time.monotonic() + ready_timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """End the server process (TERM, then KILL) and wait for it."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stdout is not None:
            process.stdout.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _read_port(self, deadline: float) -> int:
        assert self._process is not None and self._process.stdout is not None
        out = self._process.stdout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out], [], [], left)[0]:
                raise RuntimeError(f"the RTSP server did not start in time; see {self._log}")
            chunk = os.read(out.fileno(), 1)
            if not chunk:
                raise RuntimeError(f"the RTSP server exited at start; see {self._log}")
            line += chunk
        return int(line.split()[1])  # "READY <port>"

    def _wait_for_frames(self, deadline: float) -> None:
        import av

        error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with av.open(self.url, options={"rtsp_transport": "tcp"}, timeout=5.0) as c:
                    next(c.decode(video=0))
                return
            except (av.error.FFmpegError, OSError, StopIteration) as exc:
                error = exc
                time.sleep(0.2)
        raise RuntimeError(f"no frame could be read from {self.url} ({error}); see {self._log}")


@contextmanager
def rtsp_server(video: Path) -> Iterator[RtspServer]:
    """Serve ``video`` in a loop over RTSP while the block runs; yields the started server
    (its ``url``, and ``stop``/``start``/``restart`` to take it away and bring it back)."""
    units = video.with_suffix(".h264units")
    fps = write_access_units(video, units)
    server = RtspServer(units, fps, video.with_suffix(".rtsp-server.log"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def serve(units_path: str, fps_text: str, port_text: str) -> None:
    """The server process: serve the access units in ``units_path`` at ``fps`` on ``port``
    (0: any free one), print ``READY <port>``, and run until SIGTERM or stdin closes."""
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    data = Path(units_path).read_bytes()
    units, offset = [], 0
    while offset < len(data):
        (size,) = struct.unpack_from(">I", data, offset)
        units.append(data[offset + 4 : offset + 4 + size])
        offset += 4 + size
    fps = float(fps_text)
    duration = int(Gst.SECOND / fps)

    def configure(_factory: object, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_by_name("source")
        sent = [0]

        def need_data(src: Gst.Element, _length: int) -> None:
            n = sent[0]
            buffer = Gst.Buffer.new_wrapped(units[n % len(units)])
            buffer.pts = buffer.dts = n * duration
            buffer.duration = duration
            sent[0] = n + 1
            src.emit("push-buffer", buffer)

        appsrc.connect("need-data", need_data)

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( appsrc name=source format=time is-live=false "
        'caps="video/x-h264,stream-format=byte-stream,alignment=au" '
        "! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )
    factory.set_shared(True)
    factory.connect("media-configure", configure)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port_text)
    server.get_mount_points().add_factory(MOUNT, factory)
    if not server.attach(None):
        raise SystemExit(f"the RTSP server cannot listen on 127.0.0.1:{port_text}")
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.io_add_watch(sys.stdin.fileno(), GLib.IO_IN | GLib.IO_HUP, lambda *_: loop.quit())
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()


if __name__ == "__main__":
    serve(*sys.argv[1:4])
