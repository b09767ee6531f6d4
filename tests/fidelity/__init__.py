"""The fidelity suite: a corpus of code the project did not write (CPython regression modules,
third-party test suites, popular imports) run untraced and under `ferrotrace run --capture all`
with the standard library and site-packages traced, requiring identical outcomes.

`python -m tests.fidelity --help` runs it; `tests/test_fidelity.py` runs the CI subset."""
