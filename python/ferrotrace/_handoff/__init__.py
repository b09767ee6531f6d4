"""Work handed to another thread or process runs in the session it was handed over in.

- `threads`: a `threading.Thread` (and `Timer`) started inside a session runs its target in
  it, its first recorded call a child of the call that started it.
- `executors`: each task submitted to a `ThreadPoolExecutor` (so also `run_in_executor` and
  `asyncio.to_thread`), a `multiprocessing.pool.ThreadPool` or `anyio.to_thread.run_sync`
  carries its submitter's session.
- `processes`: `multiprocessing` pools and processes and `ProcessPoolExecutor` tasks record
  into the submitting session's trace and export before the worker leaves. (`subprocess`
  is left alone: see `processes`.)

The session and parent are taken natively (`_native.handoff_capture`); with
`FERROTRACE_FOLLOW_THREADS=0` there is none and the work runs as without ferrotrace. Modules
of the standard library are patched when the program imports them, never imported here.
"""

from __future__ import annotations

from ferrotrace._handoff import executors, processes, threads
from ferrotrace._on_import import when_imported

_installed = False


def install() -> None:
    """Patches `threading` now and the executor and process modules when they are imported
    (at once if they already are). Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    threads.patch()
    when_imported("concurrent.futures.thread", executors.patch_thread_pool_executor)
    when_imported("anyio.to_thread", executors.patch_anyio)
    when_imported("multiprocessing.pool", processes.patch_pools)
    when_imported("concurrent.futures.process", processes.patch_process_pool_executor)
    when_imported("multiprocessing.process", processes.patch_process)
