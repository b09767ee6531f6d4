"""Flask under gunicorn, traced with no code change (`ferrotrace run -- gunicorn ...`): the
sync worker with --preload and two workers (forked after the application was imported; each
exports on its own), and the gthread worker (requests on a pool of threads) with the
application also wrapped by hand (served once). One server per worker type serves the whole
scenario; each test checks one property of what it wrote."""

from __future__ import annotations

from pathlib import Path

import pytest
import servers
from servers import Outcome


@pytest.fixture(scope="module", params=["sync", "gthread"])
def outcome(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    out: Path = tmp_path_factory.mktemp(f"flask-{request.param}")
    port = servers.free_port()
    if request.param == "sync":
        argv = servers.gunicorn("service_apps.flask_app:app", port, "-w", "2", "--preload")
        env = {}
    else:
        argv = servers.gunicorn("service_apps.flask_app:app", port, "-k", "gthread", "--threads", "8")
        env = {"SERVICE_APP_WRAPPED_BY_HAND": "1"}
    return servers.exercise(servers.traced(argv, out, port, env))


def test_one_session_per_request(outcome: Outcome) -> None:
    servers.check_one_session_per_request(outcome)


def test_trace_ids_parents_and_routes(outcome: Outcome) -> None:
    servers.check_trace_ids_parents_routes(outcome, "/items/<int:item_id>")


def test_handler_spans_are_inside_their_request(outcome: Outcome) -> None:
    servers.check_handler_spans_inside(outcome)


def test_concurrent_requests_keep_their_spans_apart(outcome: Outcome) -> None:
    servers.check_concurrent_requests_apart(outcome, "nap")


def test_streamed_body_is_unchanged(outcome: Outcome) -> None:
    servers.check_stream(outcome)


def test_a_failed_request_is_an_error(outcome: Outcome) -> None:
    servers.check_error(outcome)


def test_sigterm_loses_nothing_and_forked_workers_export_once(outcome: Outcome) -> None:
    servers.check_nothing_lost_or_doubled(outcome)
    workers = {s["pid"] for s in servers.server_sessions(outcome.records)}
    metas = {r["pid"] for r in outcome.records if r["type"] == "meta"}
    assert workers < metas, "the master exports too, and requests only in workers"
