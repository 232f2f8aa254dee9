#!/usr/bin/env bash
# Installs what tests/rtsp_server.py needs to serve a video over RTSP: GStreamer's RTSP server
# (gst-rtsp-server) with the plugins for H.264 over RTP, driven from the system Python 3
# (/usr/bin/python3) through its GObject bindings. For Debian bookworm, as root; idempotent:
# when everything is there already it only checks (about a second) and exits.
#
# Usage: scripts/services/rtsp-server.sh
# The tests start and stop the server themselves (tests/rtsp_server.py); nothing runs after
# this script, and nothing listens until a test starts a server on a free loopback port.
set -euo pipefail

PACKAGES=(
    python3-gi
    gir1.2-gst-rtsp-server-1.0
    gstreamer1.0-plugins-base   # appsrc
    gstreamer1.0-plugins-good   # rtph264pay
    gstreamer1.0-plugins-bad    # h264parse
)

installed() {
    [ -x /usr/bin/python3 ] && /usr/bin/python3 - <<'PY' >/dev/null 2>&1
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer  # noqa: F401
Gst.init(None)
missing = [e for e in ("appsrc", "h264parse", "rtph264pay") if not Gst.ElementFactory.find(e)]
raise SystemExit(1 if missing else 0)
PY
}

if installed; then
    echo "rtsp-server: GStreamer's RTSP server is installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "rtsp-server: installing ${PACKAGES[*]} needs root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >/dev/null
fi
if ! installed; then
    echo "rtsp-server: the packages installed, but GStreamer's RTSP server still does not load" >&2
    exit 1
fi
echo "rtsp-server: installed ${PACKAGES[*]}"
