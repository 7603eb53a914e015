"""What every worker process of a private training Ray runs when it starts (Ray's
``worker_process_setup_hook``). A module of its own, importing nothing heavy: every process of
the job imports it, Ray Data's and Ray Train's helpers included (``dugray.train.launch`` took
3.6 s to import there and slowed each job's start by as much per process)."""

import logging

CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


def quiet_blind_cleaner() -> None:
    """Ray Train's placement-group cleaner asks Ray's state API, which lives in the dashboard,
    whether the controller still runs; a private Ray has no dashboard, so every few seconds of
    the job it warned "Failed to query Ray Train Controller actor state" (33 lines in a 70 s
    job). Its warnings go; its errors stay."""
    logging.getLogger(CLEANER_LOGGER).setLevel(logging.ERROR)
