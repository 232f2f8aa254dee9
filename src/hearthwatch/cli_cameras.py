"""``hearthwatch cameras`` and ``hearthwatch events``: the camera pipeline from the command line.

``cameras list`` and ``cameras status`` read a running server's ``/api/cameras``; ``events
list``, ``show`` and ``tail`` its ``/api/events``. ``cameras import`` maps a Frigate config
to a hearthwatch cameras file offline, through
:func:`hearthwatch.security.frigate.import_frigate`, and with ``--apply`` creates its cameras
on a running server.

A problem (an unreachable server, an error answer, a file that cannot be imported) is one line
on stderr and exit status 1; a usage error exits 2 (argparse). A stream password is written
to the cameras file, which is the user's own and made readable by its owner only, but never
printed: URLs are shown through :func:`hearthwatch.security.sources.config.redacted_url`, with
password-like query parameters masked too, and anything printed about an imported camera has
its secrets replaced by ``***``.

Importing this module imports neither httpx nor the camera pipeline (``hearthwatch.cli``
stays light); each command imports what it needs when it runs. Commands run on the main
thread; nothing here is shared between threads.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    import httpx

    from hearthwatch.security.cameras import CameraConfig
    from hearthwatch.security.frigate import FrigateImport

DEFAULT_URL = "http://127.0.0.1:8090"
"""The server the client commands talk to unless given ``--url``."""

MAX_PAGE = 500
"""The most events ``/api/events`` answers in one page."""
STORED_OVERLAP_S = 60.0
"""``events tail`` asks again, each poll, for the events stored up to this long before the
newest one it has seen, and prints those it has not: an event's ``created_at`` is stamped as its
write is issued, so writes issued at nearly the same time may be stored a little out of that
order (and the server's clock may be set back a little)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SECRET_PARAMETER = re.compile(r"pass|pwd|secret|token|key|auth|sig|credential", re.IGNORECASE)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ClientError(Exception):
    """A command that cannot go on; its message is one line for stderr (exit status 1)."""


class ServerUnreachableError(ClientError):
    """No answer from the server at all (refused, timed out, not a server)."""


# -- talking to the server ---------------------------------------------------------------------


class Api:
    """The server at ``url``: replies other than the expected statuses become
    :class:`ClientError` naming the request, the status and the server's own message."""

    def __init__(self, url: str, timeout: float) -> None:
        import httpx

        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=timeout)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> httpx.Response:
        import httpx

        try:
            return self._client.request(method, path, params=params, json=body)
        except httpx.HTTPError as exc:
            reason = _one_line(str(exc)) or type(exc).__name__
            raise ServerUnreachableError(
                f"cannot reach the server at {_shown_url(self.url)}: {reason}"
            ) from None

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        reply = self.request("GET", path, params=params)
        if reply.status_code != 200:
            raise ClientError(answer_line("GET", path, reply))
        try:
            return reply.json()
        except ValueError:
            raise ClientError(f"GET {path}: the answer is not JSON") from None


def answer_line(method: str, path: str, reply: httpx.Response) -> str:
    """``METHOD path: status message``, the message the server's ``{"error": ...}``."""
    return f"{method} {path}: {reply.status_code} {server_message(reply)}"


def server_message(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):  # OpenAI's shape
        error = error.get("message")
    text = error if isinstance(error, str) else reply.reason_phrase or reply.text[:200]
    return _one_line(text)


def _path(*parts: str) -> str:
    """An API path with each part quoted as one path segment."""
    return "/" + "/".join(quote(part, safe="") for part in parts)


# -- text --------------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    """``text`` printable on one terminal line: control characters and line breaks as
    spaces (a server's text cannot move the cursor or fake a line)."""
    return " ".join(_CONTROL.sub(" ", text).split())


def _shown_url(url: str) -> str:
    """``url`` as it may be printed: the password of its user info and the values of its
    password-like query parameters (``password=``, ``token=``…) replaced by ``***``."""
    from hearthwatch.security.sources.config import redacted_url

    shown = redacted_url(url)
    try:
        parts = urlsplit(shown)
    except ValueError:
        return "<unparsable url>"
    if not parts.query:
        return shown
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    masked = [(k, "***" if _SECRET_PARAMETER.search(k) and v else v) for k, v in pairs]
    if masked == pairs:
        return shown
    return urlunsplit(parts._replace(query=urlencode(masked, safe="*")))


def url_secrets(url: str) -> set[str]:
    """The secrets ``url`` holds: its password and its password-like query values, as written
    and decoded."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return set()
    found = {password} if password else set()
    for key, value in parse_qsl(parts.query, keep_blank_values=False):
        if _SECRET_PARAMETER.search(key):
            found.add(value)
    return found | {unquote(secret) for secret in found} | {quote(s, safe="") for s in found}


class Scrubber:
    """Replaces each of ``secrets`` by ``***`` in text about to be printed (longest first, so
    a secret holding another is replaced whole)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _local_time(epoch: float | None, *, precise: bool = False) -> str:
    if epoch is None:
        return "-"
    moment = datetime.fromtimestamp(epoch).astimezone()
    text = moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    return text[:-3] if precise else text[:-7]


def _age(epoch: float | None, now: float) -> str:
    if epoch is None:
        return "never"
    seconds = max(0.0, now - epoch)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 86400:.0f}d ago"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell; the last one left as it is."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [f"{cell:<{width}}" for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, str(row[-1])]).rstrip())


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def since_time(text: str, *, now: float | None = None) -> float:
    """``--since``: a duration back from now (``90s``, ``10m``, ``2h``, ``1d``, ``1w``, or
    combined: ``1h30m``) or an ISO 8601 time (``2024-06-01T08:00``; without a zone, local),
    as epoch seconds."""
    text = text.strip()
    now = time.time() if now is None else now
    if text and _DURATION.sub("", text).strip() == "" and _DURATION.search(text):
        seconds = sum(float(n) * _SECONDS[unit] for n, unit in _DURATION.findall(text))
        return now - seconds
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 10m, 2h or 1d, or an ISO time such as "
            f"2024-06-01T08:00, not {text!r}"
        ) from None
    return (moment if moment.tzinfo is not None else moment.astimezone()).timestamp()


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value

    return parse


# -- cameras list / status ---------------------------------------------------------------------


def cmd_cameras_list(args: argparse.Namespace) -> int:
    with Api(args.url, args.timeout) as api:
        cameras = api.get("/api/cameras")["cameras"]
    for camera in cameras:
        source = camera.get("source", {})
        if isinstance(source.get("url"), str):
            source["url"] = _shown_url(source["url"])
    if args.json:
        _print_json(cameras)
        return 0
    if not cameras:
        print("no cameras")
        return 0
    rows = [
        [
            _one_line(str(c["id"])),
            _one_line(str(c.get("name", ""))),
            _one_line(str(c.get("source", {}).get("type", "?"))),
            "yes" if c.get("enabled", True) else "no",
            _one_line(str(c.get("origin", "?"))),
        ]
        for c in cameras
    ]
    _table(["ID", "NAME", "SOURCE", "ENABLED", "ORIGIN"], rows)
    return 0


def cmd_cameras_status(args: argparse.Namespace) -> int:
    with Api(args.url, args.timeout) as api:
        if args.camera is not None:
            ids = [args.camera]
        else:
            ids = [str(c["id"]) for c in api.get("/api/cameras")["cameras"]]
        statuses = [api.get(_path("api", "cameras", i, "status")) for i in ids]
    if args.json:
        _print_json(statuses if args.camera is None else statuses[0])
        return 0
    if not statuses:
        print("no cameras")
        return 0
    now = time.time()
    rows = []
    notes = []
    for s in statuses:
        source, health = s.get("source", {}), s.get("health", {})
        state = str(health.get("state", "?"))
        if health.get("reason"):
            state += f" ({health['reason']})"
        if not s.get("enabled", True):
            state += ", disabled"
        rows.append(
            [
                _one_line(str(s.get("camera", "?"))),
                _one_line(_source_state(source)),
                _one_line(state),
                f"{s.get('fps_in', 0.0):.1f}",
                f"{s.get('fps_detected', 0.0):.1f}",
                f"{100 * float(s.get('motion_share', 0.0)):.0f}%",
                str(s.get("dropped", 0)),
                str(s.get("reconnects", 0)),
                _age(s.get("last_frame_at"), now),
            ]
        )
        for what, text in (("health", health.get("detail")), ("error", source.get("last_error"))):
            if text and (what == "error" or health.get("reason")):
                notes.append(f"{s.get('camera')}: {what}: {_one_line(str(text))}")
    header = ["CAMERA", "SOURCE", "HEALTH", "FPS IN", "FPS DETECTED", "MOTION", "DROPPED",
              "RECONNECTS", "LAST FRAME"]  # fmt: skip
    _table(header, rows)
    for note in notes:
        print(note)
    return 0


def _source_state(source: Mapping[str, Any]) -> str:
    """``type: state`` (``rtsp: reconnecting``); a push camera's state is its type."""
    kind, state = str(source.get("type", "?")), str(source.get("state", "?"))
    return kind if state == kind else f"{kind}: {state}"


# -- cameras import ----------------------------------------------------------------------------


def cmd_cameras_import(args: argparse.Namespace) -> int:
    from hearthwatch.security.cameras import CameraConfigError

    config_path, out = Path(args.frigate_config), Path(args.out)
    if out.exists() and not args.force:
        raise ClientError(f"{out} exists already; --force overwrites it")
    try:
        imported = read_frigate(config_path)
    except CameraConfigError as error:
        for problem in error.problems[:-1]:
            print(f"hearthwatch: {_one_line(problem)}", file=sys.stderr)
        raise ClientError(_one_line(error.problems[-1])) from None
    cameras, notes = imported.cameras, imported.unsupported
    scrub = Scrubber(s for c in cameras for s in url_secrets(getattr(c.source, "url", "")))
    if not cameras:
        raise ClientError(f"{config_path}: no camera of it could be imported")
    rows = [
        [
            camera.id,
            camera.name,
            _source_text(camera),
            f"{camera.detect_fps:g}",
            "yes" if camera.enabled else "no",
            ",".join(camera.zones) or "-",
        ]
        for camera in cameras
    ]
    header = ["ID", "NAME", "SOURCE", "FPS", "ENABLED", "ZONES"]
    _table(header, [[scrub(_one_line(cell)) for cell in row] for row in rows])
    if notes:
        print(f"not imported ({len(notes)}):", file=sys.stderr)
        for note in notes:
            print(f"  {scrub(_one_line(note))}", file=sys.stderr)
    write_cameras_file(out, cameras, notes, config_path)
    print(f"wrote {len(cameras)} camera(s) to {out}; serve them with CAMERAS_FILE={out}")
    if not args.apply:
        return 0
    return _apply(args, cameras, scrub)


def read_frigate(path: Path) -> FrigateImport:
    """The :class:`~hearthwatch.security.frigate.FrigateImport` of the Frigate config at
    ``path``, read as the server reads a cameras file (size and value limits, duplicate keys
    refused, no line of the file quoted in an error); ``{FRIGATE_*}`` placeholders from this
    process's environment."""
    from hearthwatch.security.cameras import CameraConfigError, read_yaml_file
    from hearthwatch.security.frigate import import_frigate

    if not path.is_file():
        raise ClientError(f"{path}: no such file")
    data = read_yaml_file(path)
    cameras = data.get("cameras") if isinstance(data, Mapping) else None
    if not isinstance(cameras, Mapping) or not any(
        isinstance(body, Mapping) and "ffmpeg" in body for body in cameras.values()
    ):
        raise ClientError(
            f"{path}: not a Frigate config (no camera has ffmpeg inputs); a hearthwatch "
            "cameras file is served as it is, with CAMERAS_FILE"
        )
    try:
        return import_frigate(data, environ=os.environ)
    except CameraConfigError as error:
        raise CameraConfigError([f"{path}: {p}" for p in error.problems]) from None


def _source_text(camera: CameraConfig) -> str:
    source = camera.source
    url = getattr(source, "url", None)
    if isinstance(url, str):
        return f"{source.type} {_shown_url(url)}"
    path = getattr(source, "path", None)
    return f"{source.type} {path}" if path is not None else source.type


def camera_fields(camera: CameraConfig) -> dict[str, Any]:
    """A camera as a cameras file's entry under its id: the fields that differ from their
    defaults, and its source whole (its ``type`` picks the source's kind)."""
    fields = camera.model_dump(mode="json", exclude_defaults=True)
    fields.pop("id", None)
    return {"name": camera.name, **fields, "source": camera.source.model_dump(mode="json")}


def cameras_yaml(cameras: Sequence[CameraConfig], header: Sequence[str] = ()) -> str:
    """A hearthwatch cameras file of ``cameras``: ``cameras:`` mapping each id to its fields,
    lists of plain values (points, labels) on one line; ``header`` as comment lines."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
        flat = all(not isinstance(item, dict | list) for item in value)
        flow = flat or all(isinstance(i, list) and len(i) == 2 for i in value)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)

    Dumper.add_representer(list, represent_list)
    body = {"cameras": {camera.id: camera_fields(camera) for camera in cameras}}
    text = yaml.dump(body, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)
    comments = "".join(f"# {_CONTROL.sub(' ', line)}".rstrip() + "\n" for line in header)
    return comments + text


def write_cameras_file(
    out: Path, cameras: Sequence[CameraConfig], notes: Sequence[str], source: Path
) -> None:
    """``cameras`` written to ``out`` whole (through a file beside it, replaced at once),
    readable by its owner only: it holds the streams' passwords."""
    header = [
        f"hearthwatch cameras, imported from the Frigate config {source.name}",
        f"by `hearthwatch cameras import` on {datetime.now().astimezone():%Y-%m-%d %H:%M}.",
        f"Serve them with CAMERAS_FILE={out.name}. This file holds the streams' passwords.",
    ]
    if notes:
        header += ["", "Not imported:", *(f"  {note}" for note in notes)]
    text = cameras_yaml(cameras, [*header, ""])
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, out)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise ClientError(f"cannot write {out}: {error.strerror or error}") from None


def _apply(args: argparse.Namespace, cameras: Sequence[CameraConfig], scrub: Scrubber) -> int:
    """Each camera POSTed to the server: created, already there, or refused (why)."""
    counts = {"created": 0, "exists": 0, "refused": 0}
    with Api(args.url, args.timeout) as api:
        for camera in cameras:
            reply = api.request("POST", "/api/cameras", body=camera.model_dump(mode="json"))
            if reply.status_code == 201:
                counts["created"] += 1
                print(f"{camera.id}: created")
            elif reply.status_code == 409:
                counts["exists"] += 1
                print(f"{camera.id}: already exists ({scrub(server_message(reply))})")
            else:
                counts["refused"] += 1
                why = scrub(server_message(reply))
                print(f"{camera.id}: refused: {reply.status_code} {why}")
    print(
        f"applied to {_shown_url(args.url)}: {counts['created']} created, "
        f"{counts['exists']} already there, {counts['refused']} refused"
    )
    return 1 if counts["refused"] else 0


# -- events ------------------------------------------------------------------------------------


def event_filters(args: argparse.Namespace) -> dict[str, Any]:
    """The ``/api/events`` query of the filter options."""
    params: dict[str, Any] = {}
    for name in ("camera", "level", "label", "kind"):
        value = getattr(args, name, None)
        if value:
            params[name] = value
    if args.min_score is not None:
        params["min_score"] = args.min_score
    if args.since is not None:
        params["after"] = max(0.0, args.since)
    return params


def pages(api: Api, params: Mapping[str, Any], page_size: int) -> Iterator[dict[str, Any]]:
    """Every event ``params`` selects, newest first, page after page by the API's cursor."""
    cursor: str | None = None
    while True:
        query = {**params, "limit": page_size, **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/events", query)
        yield from page["events"]
        cursor = page.get("next_cursor")
        if not cursor:
            return


def event_line(event: Mapping[str, Any]) -> list[str]:
    labels = ",".join(event.get("labels") or []) or "-"
    return [
        _local_time(event.get("started_at")),
        _one_line(str(event.get("id"))),
        _one_line(str(event.get("camera"))),
        _one_line(str(event.get("kind"))),
        _one_line(str(event.get("level"))),
        f"{float(event.get('score') or 0.0):.0f}",
        _one_line(labels),
        _one_line(str(event.get("summary") or "")),
    ]


EVENT_HEADER = ["STARTED", "ID", "CAMERA", "KIND", "LEVEL", "SCORE", "LABELS", "SUMMARY"]


def cmd_events_list(args: argparse.Namespace) -> int:
    params = event_filters(args)
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    page_size = min(args.page_size or args.limit, MAX_PAGE)
    with Api(args.url, args.timeout) as api:
        while len(events) < args.limit:
            limit = min(page_size, args.limit - len(events))
            query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
            page = api.get("/api/events", query)
            events += page["events"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
    if args.json:
        _print_json(events)
    elif events:
        _table(EVENT_HEADER, [event_line(e) for e in events])
    else:
        print("no events")
    if cursor:
        print(f"(more events: a --limit above {args.limit} shows them)", file=sys.stderr)
    return 0


def cmd_events_show(args: argparse.Namespace) -> int:
    with Api(args.url, args.timeout) as api:
        event = api.get(_path("api", "events", args.event))
    if args.json:
        _print_json(event)
        return 0
    _show_event(event, api.url)
    return 0


def _show_event(event: Mapping[str, Any], url: str) -> None:
    def text(value: Any) -> str:
        return _one_line(str(value))

    started, ended = event.get("started_at"), event.get("ended_at")
    span = f" ({ended - started:.1f} s)" if started is not None and ended is not None else ""
    camera = text(event.get("camera"))
    if event.get("camera_name") and event["camera_name"] != event.get("camera"):
        camera += f" ({text(event['camera_name'])})"
    print(f"event    {text(event.get('id'))} ({text(event.get('kind'))})")
    print(f"camera   {camera}")
    print(f"time     {_local_time(started)} to {_local_time(ended)}{span}")
    print(
        f"level    {text(event.get('level'))}, score {float(event.get('score') or 0):.0f}/100 "
        f"(analyser {text(event.get('analyser'))})"
    )
    print(f"labels   {text(', '.join(event.get('labels') or []) or '-')}")
    print(f"zones    {text(', '.join(event.get('zones') or []) or '-')}")
    print(f"summary  {text(event.get('summary') or '-')}")
    reasons = event.get("reasons") or []
    print(f"reasons ({len(reasons)})")
    for reason in reasons:
        cited = ", ".join(f"#{i}" for i in reason.get("detection_ids") or [])
        print(f"  - {text(reason.get('text'))}" + (f"  [detections {cited}]" if cited else ""))
    window = event.get("window")
    if window:
        print(
            f"window   {text(window.get('id'))}, {text(window.get('status'))}, "
            f"{_local_time(window.get('opened_at'))} to {_local_time(window.get('closed_at'))}"
        )
    tracks = event.get("tracks") or []
    if window is not None or tracks:
        print(f"tracks ({len(tracks)})")
    for track in tracks:
        zones = ",".join(track.get("zones_entered") or []) or "-"
        stationary = ", stationary" if track.get("stationary") else ""
        print(
            f"  {text(track.get('id'))}  {text(track.get('label'))}  "
            f"{_local_time(track.get('first_seen'), precise=True)} to "
            f"{_local_time(track.get('last_seen'), precise=True)}  zones {text(zones)}  "
            f"best #{track.get('best_detection_id')}{stationary}"
        )
    detections = event.get("detections") or []
    if window is not None or detections:
        print(f"detections ({len(detections)})")
    for d in detections:
        box = ",".join(f"{v:.0f}" for v in d.get("box") or [])
        zones = ",".join(d.get("zones") or []) or "-"
        print(
            f"  #{d.get('id')}  {text(d.get('label'))} {float(d.get('score') or 0):.2f}  "
            f"box {box}  zones {text(zones)}  track {text(d.get('track_id'))}  "
            f"{_local_time(d.get('captured_at'), precise=True)}"
        )
    enrichments = event.get("enrichments") or []
    if enrichments:
        print(f"enrichments ({len(enrichments)})")
    for e in enrichments:
        result = json.dumps(e.get("result"), ensure_ascii=False) if e.get("result") else ""
        embedding = f" embedding[{e['embedding_size']}]" if e.get("embedding_size") else ""
        print(
            f"  {text(e.get('model'))}  track {text(e.get('track_id'))}  "
            f"detection #{e.get('detection_id')}{embedding}  {text(result)[:200]}"
        )
    where = f"{url}{_path('api', 'events', str(event.get('id')))}"
    if event.get("has_snapshot"):
        print(f"snapshot {where}/snapshot.jpg")
    if event.get("has_clip"):
        print(f"clip     {where}/clip.mp4")


def _stored_at(event: Mapping[str, Any]) -> float:
    return float(event["created_at"])


def cmd_events_tail(args: argparse.Namespace) -> int:
    """New events as they are stored, each once, until ``--count`` of them, ``--stop-after``
    seconds or Ctrl-C.

    It follows events by when they were stored (``created_at``), not by when they started: an
    event is stored when its window closes, or when it is analysed after a restart, which may
    be long after it started. Every ``--interval`` it lists the events stored since
    :data:`STORED_OVERLAP_S` before the newest one it has seen (``stored_after``) and prints,
    oldest first, those it has not printed. Without ``--since`` the events there already when
    it starts are not printed; with it, those that started since then are, and new ones only if
    they started since then too."""
    params = event_filters(args)
    deadline = None if args.stop_after is None else time.monotonic() + args.stop_after
    floor: float | None = None  # the next poll's stored_after (the server's clock); None: all
    seen: dict[str, float] = {}  # created_at by id: printed (or there at the start), after floor
    printed = 0
    try:
        with Api(args.url, args.timeout) as api:
            reached = False
            if args.since is None:
                reached = True
                newest = api.get("/api/events", {**params, "limit": 1})["events"]
                if newest:
                    floor = _stored_at(newest[0]) - STORED_OVERLAP_S
                    for event in pages(api, {**params, "stored_after": max(0.0, floor)}, MAX_PAGE):
                        seen[event["id"]] = _stored_at(event)
            start = "" if args.since is None else f" since {_local_time(args.since)}"
            print(f"watching events{start} (Ctrl-C stops)", file=sys.stderr, flush=True)
            unreachable = False
            while True:
                if seen:
                    floor = max(seen.values()) - STORED_OVERLAP_S
                    seen = {i: t for i, t in seen.items() if t > floor}
                query = params if floor is None else {**params, "stored_after": max(0.0, floor)}
                try:
                    fresh = [
                        e
                        for e in pages(api, query, MAX_PAGE)
                        if e["id"] not in seen and (floor is None or _stored_at(e) > floor)
                    ]
                except ServerUnreachableError as error:
                    if not reached:
                        raise
                    if not unreachable:  # once per outage; it may be restarting
                        print(f"hearthwatch: {error}; trying again", file=sys.stderr, flush=True)
                    unreachable, fresh = True, []
                else:
                    if unreachable:
                        print("hearthwatch: the server answers again", file=sys.stderr)
                    unreachable, reached = False, True
                for event in sorted(fresh, key=lambda e: (e["started_at"], e["id"])):
                    seen[event["id"]] = _stored_at(event)
                    if args.json:
                        print(json.dumps(event, ensure_ascii=False), flush=True)
                    else:
                        print("  ".join(event_line(event)), flush=True)
                    printed += 1
                    if args.count is not None and printed >= args.count:
                        return 0
                pause = args.interval
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    pause = min(pause, left)
                time.sleep(pause)
    except KeyboardInterrupt:
        return 0
    if args.count is not None:
        raise ClientError(
            f"{printed} of {args.count} events in {args.stop_after:g} s (--stop-after)"
        )
    return 0


# -- the parsers -------------------------------------------------------------------------------


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``cameras`` and ``events`` with their subcommands, on ``hearthwatch``'s subparsers."""
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--url", default=DEFAULT_URL, help=f"the server (default {DEFAULT_URL})")
    server.add_argument(
        "--timeout", type=_positive(float), default=10.0, help="seconds per request (default 10)"
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="machine-readable output")

    cameras = sub.add_parser("cameras", help="list cameras, their status; import Frigate's")
    actions = cameras.add_subparsers(dest="action", required=True, metavar="ACTION")
    listed = actions.add_parser(
        "list", parents=[server, as_json], help="id, name, source type, enabled and origin"
    )
    listed.set_defaults(func=cmd_cameras_list)
    status = actions.add_parser(
        "status",
        parents=[server, as_json],
        help="source state, health, frame rates, motion share, drops, reconnects, last frame",
    )
    status.add_argument("camera", nargs="?", metavar="ID", help="one camera (default: all)")
    status.set_defaults(func=cmd_cameras_status)
    imported = actions.add_parser(
        "import",
        parents=[server],
        help="map a Frigate config to a cameras file (offline); --apply creates the cameras",
        description="Map a Frigate config (its config.yml) to a hearthwatch cameras file. "
        "{FRIGATE_*} placeholders are read from the environment. What is not imported is "
        "listed on stderr. Stream passwords go into the file (readable by its owner only), "
        "never onto the screen.",
    )
    imported.add_argument("frigate_config", metavar="FRIGATE_CONFIG")
    imported.add_argument("--out", default="cameras.yml", help="default: cameras.yml")
    imported.add_argument("--force", action="store_true", help="overwrite --out")
    imported.add_argument(
        "--apply",
        action="store_true",
        help="also create the cameras on the server at --url (POST /api/cameras)",
    )
    imported.set_defaults(func=cmd_cameras_import)

    events = sub.add_parser("events", help="list, show and follow events")
    actions = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--camera", metavar="C[,C]", help="camera ids")
    filters.add_argument("--level", metavar="L[,L]", help="low, medium, high, critical")
    filters.add_argument("--min-score", type=float, metavar="S", help="0–100")
    filters.add_argument("--label", help="an object class seen, e.g. person")
    filters.add_argument("--kind", choices=["window", "health"])
    filters.add_argument(
        "--since",
        type=since_time,
        metavar="WHEN",
        help="started since: a duration back (10m, 2h, 1d) or an ISO time",
    )
    listed = actions.add_parser(
        "list", parents=[server, filters, as_json], help="events, newest first"
    )
    listed.add_argument(
        "--limit", type=_positive(int), default=50, help="the most to show (default 50)"
    )
    listed.add_argument(
        "--page-size", type=_positive(int), help="events per request (default: --limit, ≤ 500)"
    )
    listed.set_defaults(func=cmd_events_list)
    show = actions.add_parser(
        "show",
        parents=[server, as_json],
        help="one event: its reasons citing detection ids, its tracks and detections",
    )
    show.add_argument("event", metavar="ID")
    show.set_defaults(func=cmd_events_show)
    tail = actions.add_parser(
        "tail",
        parents=[server, filters],
        help="print each new event once, as it is stored, until Ctrl-C",
        description="Print each new event once, oldest first, as it is stored, until "
        "--count events, --stop-after seconds or Ctrl-C. Events are followed by when they "
        "were stored, so one stored long after it started (a long window, or one analysed "
        "after a restart) is printed too. Without --since, the events there when it starts "
        "are not printed; with it, those that started since then are, and new events only "
        "if they started since then.",
    )
    tail.add_argument(
        "--interval", type=_positive(float), default=2.0, help="seconds between polls (2)"
    )
    tail.add_argument("--count", type=_positive(int), help="stop after this many events")
    tail.add_argument(
        "--stop-after",
        type=_positive(float),
        metavar="S",
        help="stop after S seconds (with --count: status 1 if fewer came)",
    )
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.set_defaults(func=cmd_events_tail)
