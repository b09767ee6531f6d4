"""The Flask test application (gunicorn `service_apps.flask_app:app`)."""

from __future__ import annotations

import os

from flask import Flask, Response, request

from service_apps import common

app = Flask(__name__)


@app.route("/items/<int:item_id>")
def item(item_id: int) -> dict:
    return {"id": item_id, "sum": common.work(item_id)}


@app.route("/sleep")
def sleep() -> dict:
    common.nap(float(request.args.get("s", "0.2")))
    return {"slept": True}


@app.route("/stream")
def stream() -> Response:
    return Response(common.chunks(), mimetype="text/plain")


@app.route("/boom")
def boom() -> str:
    common.fail()
    return "unreachable"


@app.route("/health")
def health() -> str:
    return "ok"


if os.environ.get("SERVICE_APP_WRAPPED_BY_HAND") == "1":
    from ferrotrace.integrations.wsgi import TracingMiddleware

    app.wsgi_app = TracingMiddleware(app.wsgi_app)  # type: ignore[method-assign]
