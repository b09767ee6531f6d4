"""Notes that the processes of one `ferrotrace run` leave for its top process.

`ferrotrace run` creates a private directory and names it in FERROTRACE__NOTES. A process
that could not be traced, or whose tracing has diagnostics, writes one small file there
(`<pid>.untraced`: the reason; `<pid>.diagnostics`: one message a line) instead of printing
anything; the top process reads them for its summary at exit and removes the directory.
The bootstrap `sitecustomize` writes the same files with its own copy of `write`, since it
runs where ferrotrace may not import.
"""

from __future__ import annotations

import os

NOTES_VAR = "FERROTRACE__NOTES"
UNTRACED = "untraced"
DIAGNOSTICS = "diagnostics"


def write(kind: str, lines: list[str]) -> None:
    """Leaves this process's note of `kind` (replacing an earlier one); never raises."""
    notes = os.environ.get(NOTES_VAR)
    if not notes or not lines:
        return
    try:
        data = "".join(" ".join(line.splitlines()) + "\n" for line in lines)
        path = os.path.join(notes, f"{os.getpid()}.{kind}")
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data.encode("utf-8", "backslashreplace"))
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except (OSError, ValueError):
        pass


def collect(exclude_pid: int) -> dict[str, list[tuple[int, str]]]:
    """Every note left so far (except `exclude_pid`'s), as kind -> [(pid, line)], then
    removes the directory."""
    found: dict[str, list[tuple[int, str]]] = {UNTRACED: [], DIAGNOSTICS: []}
    notes = os.environ.get(NOTES_VAR)
    if not notes:
        return found
    try:
        names = sorted(os.listdir(notes))
    except OSError:
        names = []
    for name in names:
        pid, _, kind = name.partition(".")
        if kind not in found or not pid.isdigit() or int(pid) == exclude_pid:
            continue
        try:
            with open(os.path.join(notes, name), encoding="utf-8", errors="replace") as f:
                found[kind].extend((int(pid), line.rstrip("\n")) for line in f if line.strip())
        except OSError:
            continue
    import shutil  # only the top process, once, at exit

    shutil.rmtree(notes, ignore_errors=True)
    return found
