"""Put first on PYTHONPATH by `ferrotrace run`: traces this interpreter and every Python
child process it starts, then hands over to any other `sitecustomize` on the path."""

import importlib.machinery
import importlib.util
import os
import sys


def _chain_next_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


try:
    import ferrotrace.auto  # noqa: F401
finally:
    _chain_next_sitecustomize()
