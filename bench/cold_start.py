"""Cold start: the import time of each handler module in a fresh interpreter, next to ``import boto3``.

Each figure is the median of several runs; each run is a new ``python`` process timing one
``importlib.import_module`` with ``time.perf_counter`` (interpreter start-up itself is left out, the same
for every module). The modules are the ``Handler`` strings of the template's functions, so what is timed
is exactly what Lambda imports at an init.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from embedded.template import resources_of_type, template

_TIMER = (
    "import importlib, json, sys, time\n"
    "started = time.perf_counter()\n"
    "importlib.import_module(sys.argv[1])\n"
    "print(json.dumps({'ms': (time.perf_counter() - started) * 1000, 'modules': len(sys.modules)}))\n"
)


def handler_modules(tpl: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Function logical id -> handler module (``expander.handler``), for every function in the template."""
    tpl = tpl or template()
    modules = {}
    for logical, body in resources_of_type(tpl, "AWS::Serverless::Function").items():
        handler = str(body.get("Properties", {}).get("Handler", ""))
        if handler:
            modules[logical] = handler.rpartition(".")[0]
    return dict(sorted(modules.items()))


def import_ms(module: str, *, runs: int, python_path: Sequence[str], env: Mapping[str, str] | None = None) -> float:
    """Median milliseconds to import ``module`` in a fresh interpreter."""
    environment = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(python_path)}
    timings = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", _TIMER, module],
            capture_output=True,
            text=True,
            env=environment,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"importing {module} failed:\n{done.stderr[-2000:]}")
        timings.append(float(json.loads(done.stdout.strip().splitlines()[-1])["ms"]))
    return statistics.median(timings)


def measure(*, runs: int, python_path: Sequence[str], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``boto3_ms``, ``handlers`` (module -> ms) and each handler's ratio to ``import boto3``."""
    # With several runs, one untimed import of each first: bytecode caches are written, as they would be in
    # a built package (a single smoke run skips it: the median of one is only a check that it runs).
    modules = handler_modules()
    if runs > 1:
        for module in ["boto3", *modules.values()]:
            import_ms(module, runs=1, python_path=python_path, env=env)
    boto3_ms = import_ms("boto3", runs=runs, python_path=python_path, env=env)
    handlers = {module: import_ms(module, runs=runs, python_path=python_path, env=env) for module in modules.values()}
    return {
        "runs": runs,
        "method": "median of fresh interpreters timing importlib.import_module (start-up excluded)",
        "boto3_ms": round(boto3_ms, 1),
        "handlers": {m: round(ms, 1) for m, ms in handlers.items()},
        "ratio_to_boto3": {m: round(ms / boto3_ms, 2) for m, ms in handlers.items()},
        "functions": modules,
    }
