"""Camera sources, each a plugin keyed by ``type``: streams and files read through PyAV
(``rtsp``, ``http``, ``file``), frames pushed over HTTP (``push``) and a watched directory
(``folder``)."""
