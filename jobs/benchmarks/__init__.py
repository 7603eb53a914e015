"""The benchmarks, soak and GPU smoke behind the thin scripts ``jobs/bench_*.py``, ``jobs/soak_serve.py`` and
``jobs/gpu_smoke.py``: one module a command, each with its ``main(argv)`` and flags. They live under jobs/, not in
the installed ``dugray`` package (they import ``serve``, ``dugray.train`` and ``dugray.evaluation``, and nothing
installed imports them), and import each other relatively, so they load as ``benchmarks.X`` from the scripts
(``python jobs/X.py`` puts jobs/ first on ``sys.path``) and as ``jobs.benchmarks.X`` from the tests.
"""
