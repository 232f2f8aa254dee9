"""Property-based fuzzing of a real ``hearthwatch serve`` (the default detector, the llama.cpp
LLM with a profile capping ``max_tokens``, the enrichment service) from the OpenAPI document it
serves: every operation, with bodies, schema-valid and schema-violating requests, derandomised. Any
500/502, status the document does not list for the operation, 503 without ``Retry-After``,
response that violates its documented schema, or the server becoming unhealthy is a finding.
A self-test runs the same harness against a small app with routes that misbehave on purpose."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
import uvicorn
from conftest import Server, llm_env
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from hypothesis import HealthCheck, Phase
from pydantic import BaseModel
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

SEED = 20261128
EXAMPLES = 50  # per operation and per mode (schema-valid, schema-violating)
REQUEST_TIMEOUT_S = 60
CATALOG = Path(__file__).parent / "data" / "enrich_models.yml"


def no_server_error(ctx: CheckContext, response: Response, case: Case) -> None:
    """5xx is for overload (503) and missed deadlines (504) only."""
    assert response.status_code < 500 or response.status_code in (503, 504), (
        f"server error {response.status_code}: {response.text[:500]}"
    )


def retry_after_on_503(ctx: CheckContext, response: Response, case: Case) -> None:
    """Every 503 says when to come back."""
    if response.status_code == 503:
        assert "retry-after" in {k.lower() for k in response.headers}, (
            f"503 without Retry-After: {response.text[:500]}"
        )


CHECKS = [
    no_server_error,
    retry_after_on_503,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclass(frozen=True)
class Finding:
    """One check that failed: on which operation, what, and the request that showed it."""

    operation: str
    check: str
    status: int | None
    detail: str
    request: str

    def __str__(self) -> str:
        return (
            f"{self.operation}: {self.check} (status {self.status})\n"
            f"  {self.detail[:800]}\n  {self.request[:800]}"
        )


def _exercise(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    examples: int,
    report: Callable[[Finding], None],
) -> None:
    """Send ``examples`` generated requests to ``operation`` and report every failed check."""

    @hypothesis.seed(SEED)
    @hypothesis.settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: findings are collected
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        label = f"{operation.label} [{mode.value}]"
        try:
            response = case.call(base_url=base_url, timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException as exc:
            report(Finding(label, "no response", None, repr(exc), case.as_curl_command()))
            return
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            for failure in group.exceptions:
                report(_finding(label, failure, response, case))

    with contextlib.suppress(hypothesis.errors.Unsatisfiable):
        run()  # Unsatisfiable: nothing in the operation can be made schema-violating


def _finding(label: str, failure: Failure, response: Response, case: Case) -> Finding:
    request = response.request
    curl = case.as_curl_command(headers=dict(request.headers))
    detail = f"{failure.title}: {failure.message}\n  response: {response.text[:400]}"
    return Finding(label, failure.title, response.status_code, detail, curl)


def fuzz(
    base_url: str,
    *,
    examples: int = EXAMPLES,
    health_path: str = "/v2/health/live",
) -> list[Finding]:
    """Fuzz every operation of the document ``base_url`` serves, with schema-valid requests
    and, where it takes a body, query or headers, schema-violating ones (a path parameter is
    any string already); the findings, at most three of a kind per operation. The server must
    still answer ``health_path`` after each operation."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    findings: list[Finding] = []
    seen: dict[tuple[str, str, int | None], int] = {}

    def report(finding: Finding) -> None:
        key = (finding.operation, finding.check, finding.status)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= 3:
            findings.append(finding)

    for result in schema.get_all_operations():
        operation = result.ok()
        modes = [GenerationMode.POSITIVE]
        if len(operation.body) or len(operation.query) or len(operation.headers):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            _exercise(operation, mode, base_url, examples, report)
        try:  # a fresh connection each time: a server may close one after an error
            health = str(requests.get(base_url + health_path, timeout=10).status_code)
        except requests.RequestException as exc:
            health = repr(exc)
        if health != "200":
            report(Finding(operation.label, "server unhealthy", None, health, ""))
            break
    return findings


def _report(findings: list[Finding]) -> str:
    return f"{len(findings)} findings:\n" + "\n".join(str(f) for f in findings)


@pytest.fixture(scope="module")
def fuzz_server(start_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Server:
    return start_server(  # type: ignore[no-any-return]
        **llm_env(tmp_path_factory, sessions=2, queue=2, max_tokens=4),
        ENRICH_MODELS_FILE=str(CATALOG),
        MAX_BODY_BYTES="2000000",
    )


@pytest.mark.timeout(900)
def test_fuzzing_every_operation_finds_nothing(fuzz_server: Server) -> None:
    started = time.monotonic()
    findings = fuzz(fuzz_server.url)
    print(f"fuzzed in {time.monotonic() - started:.0f} s")
    assert fuzz_server.process.poll() is None, "the server exited"
    assert requests.get(f"{fuzz_server.url}/v2/health/live", timeout=10).status_code == 200
    assert not findings, _report(findings)


class Thing(BaseModel):
    size: int


def misbehaving_app() -> FastAPI:
    """Each route breaks one promise of its documentation."""
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, bool]:
        return {"live": True}

    @app.get("/crash", response_model=Thing)
    def crash() -> Thing:
        raise RuntimeError("on purpose")

    @app.get("/teapot", response_model=Thing)
    def teapot() -> Thing:
        raise HTTPException(418, "undocumented")

    @app.get("/busy", response_model=Thing, responses={503: {"model": Thing}})
    def busy() -> JSONResponse:
        return JSONResponse({"size": 0}, 503)

    @app.get("/shape", response_model=None, responses={200: {"model": Thing}})
    def shape() -> JSONResponse:
        return JSONResponse({"size": "large"})

    @app.get("/fine", response_model=Thing)
    def fine() -> Thing:
        return Thing(size=1)

    return app


@pytest.fixture(scope="module")
def misbehaving_url() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(misbehaving_app(), host="127.0.0.1", port=port, log_level="critical")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the test app did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_the_harness_reports_each_broken_promise(misbehaving_url: str) -> None:
    findings = fuzz(misbehaving_url, examples=5, health_path="/health")
    found = {(f.operation.split(" [")[0], f.check, f.status) for f in findings}
    assert ("GET /crash", "Custom check failed: `no_server_error`", 500) in found, found
    assert ("GET /crash", "Undocumented status code", 500) in found, found
    assert ("GET /teapot", "Undocumented status code", 418) in found, found
    assert ("GET /busy", "Custom check failed: `retry_after_on_503`", 503) in found, found
    assert ("GET /shape", "Response violates schema", 200) in found, found
    assert not [f for f in findings if f.operation.startswith(("GET /fine", "GET /health"))]
