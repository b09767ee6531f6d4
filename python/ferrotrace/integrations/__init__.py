"""Served requests: WSGI and ASGI middleware (`ferrotrace.integrations.wsgi`,
`ferrotrace.integrations.asgi`) that make each sampled request one session of kind
`server`, and the framework integrations that apply them by themselves under
`ferrotrace run` and `import ferrotrace.auto` (per `FERROTRACE_INSTRUMENT`): Flask, Django,
and Starlette (with FastAPI, built on it). A framework is integrated when the program
imports it; an application also wrapped by hand is traced once.
"""
