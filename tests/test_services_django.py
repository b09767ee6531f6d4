"""Django under gunicorn, traced with no code change: under `ferrotrace run` with two sync
workers, and with `import ferrotrace.auto` in the application under a plain gunicorn with
the gthread worker (each worker imports the application and writes its own `{pid}` file).
One server per setup serves the whole scenario."""

from __future__ import annotations

from pathlib import Path

import pytest
import servers
from servers import Outcome


@pytest.fixture(scope="module", params=["run-sync", "auto-gthread"])
def outcome(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    out: Path = tmp_path_factory.mktemp(f"django-{request.param}")
    port = servers.free_port()
    app = "service_apps.django_app:application"
    if request.param == "run-sync":
        server = servers.traced(servers.gunicorn(app, port, "-w", "2"), out, port)
    else:
        argv = servers.gunicorn(app, port, "-w", "2", "-k", "gthread", "--threads", "8")
        env = {
            "SERVICE_APP_AUTO": "1",
            "FERROTRACE_OUTPUT": str(out / "trace.{pid}.jsonl"),
            "FERROTRACE_EXCLUDED_URLS": "^/health$",
        }
        server = servers.Server(argv, out, env, port)
    return servers.exercise(server)


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


def test_sigterm_loses_nothing(outcome: Outcome) -> None:
    servers.check_nothing_lost_or_doubled(outcome)
