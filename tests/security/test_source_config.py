"""Stream URLs are shown only redacted: a password in the user info or in a query parameter
named like one never reaches a log, an error or an answer."""

from __future__ import annotations

import pytest

from hearthwatch.security.sources.config import redacted_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:secret@10.0.0.2:554/x", "rtsp://admin:***@10.0.0.2:554/x"),
        ("rtsp://admin:secret@[fd00::2]/x", "rtsp://admin:***@[fd00::2]/x"),
        (
            "http://10.0.0.3/flv?app=bcs&user=admin&password=flv-pass",
            "http://10.0.0.3/flv?app=bcs&user=admin&password=***",
        ),
        ("https://cam.lan/snap.jpg?token=abc&size=2", "https://cam.lan/snap.jpg?token=***&size=2"),
        ("rtsp://10.0.0.2/x?channel=1&subtype=0", "rtsp://10.0.0.2/x?channel=1&subtype=0"),
        ("rtsp://viewer@10.0.0.2/x", "rtsp://viewer@10.0.0.2/x"),
        ("rtsp://a:b@10.0.0.2:99999/x", "<unparsable url>"),
    ],
)
def test_passwords_are_hidden(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
