"""FastAPI under uvicorn, traced with no code change (`ferrotrace run -- uvicorn ...`), with
one worker and with two (spawned worker processes, each exporting on its own): async
endpoints, sync endpoints (run on Starlette's worker threads, attributed to their request),
streaming, errors. One server per worker count serves the whole scenario."""

from __future__ import annotations

from pathlib import Path

import pytest
import servers
from servers import Outcome

#: Sync endpoint requests of the scenario.
SYNC = [f"/sync/{i}" for i in range(1, 6)]


@pytest.fixture(scope="module", params=[1, 2])
def outcome(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    out: Path = tmp_path_factory.mktemp(f"fastapi-{request.param}")
    port = servers.free_port()
    argv = servers.uvicorn("service_apps.fastapi_app:app", port, "--workers", str(request.param))
    return servers.exercise(servers.traced(argv, out, port), extra=tuple(SYNC))


def test_one_session_per_request(outcome: Outcome) -> None:
    servers.check_one_session_per_request(outcome, extra_sessions=len(SYNC))


def test_trace_ids_parents_and_routes(outcome: Outcome) -> None:
    servers.check_trace_ids_parents_routes(outcome, "/items/{item_id}")


def test_async_handler_spans_are_inside_their_request(outcome: Outcome) -> None:
    servers.check_handler_spans_inside(outcome)


def test_sync_handler_spans_are_inside_their_request(outcome: Outcome) -> None:
    """Depends on sessions following work handed to threads (`anyio.to_thread`)."""
    sessions = servers.by_path(outcome.records)
    for path in SYNC:
        assert outcome.extra[path].status == 200
        (s,) = sessions[path]
        assert s["tag"] == "GET /sync/{item_id}"
    servers.check_handler_spans_inside(outcome, SYNC)


def test_concurrent_requests_keep_their_spans_apart(outcome: Outcome) -> None:
    servers.check_concurrent_requests_apart(outcome, "work")


def test_streamed_body_is_unchanged(outcome: Outcome) -> None:
    servers.check_stream(outcome)


def test_a_failed_request_is_an_error(outcome: Outcome) -> None:
    servers.check_error(outcome)


def test_sigterm_loses_nothing(outcome: Outcome) -> None:
    servers.check_nothing_lost_or_doubled(outcome)
