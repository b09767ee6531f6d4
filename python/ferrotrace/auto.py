"""`import ferrotrace.auto`: trace this process, configured only by environment variables.

Invalid settings never stop the program: each one is one warning on the `ferrotrace`
logger, and the safe fallback applies (a bad include/exclude disables tracing, a bad
redaction pattern keeps the default redaction, anything else takes its default).
"""

from ferrotrace import _autostart

_autostart.start()
