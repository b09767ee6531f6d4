"""The FastAPI test application (uvicorn `service_apps.fastapi_app:app`): async endpoints,
and sync ones (run on Starlette's worker threads)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from service_apps import common

app = FastAPI()


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict:
    return {"id": item_id, "sum": common.work(item_id)}


@app.get("/sync/{item_id}")
def sync_item(item_id: int) -> dict:
    return {"id": item_id, "sum": common.work(item_id)}


@app.get("/sleep")
async def sleep(s: float = 0.2) -> dict:
    await asyncio.sleep(s)
    common.work(1)
    return {"slept": True}


async def body() -> AsyncIterator[bytes]:
    """The streamed body, produced in the request's task."""
    for chunk in common.chunks():
        yield chunk
        await asyncio.sleep(0)


@app.get("/stream")
async def stream() -> StreamingResponse:
    return StreamingResponse(body(), media_type="text/plain")


@app.get("/boom")
async def boom() -> str:
    common.fail()
    return "unreachable"


@app.get("/health")
async def health() -> str:
    return "ok"
