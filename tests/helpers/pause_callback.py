"""A Hydra callback for tests that send a signal at a moment no log line marks: it prints
`paused at <event>` and sleeps, at Hydra's run start (the run folder just locked, nothing else
written) or job start (.hydra/ written, the job not yet started). Added to a run with
`+hydra.callbacks.pause._target_=helpers.pause_callback.Pause`
`+hydra.callbacks.pause.at=on_job_start` (tests/ on PYTHONPATH)."""

import time
from typing import Any

from hydra.experimental.callback import Callback


class Pause(Callback):
    def __init__(self, at: str, seconds: float = 1.0) -> None:
        self.at, self.seconds = at, seconds

    def _pause(self, event: str) -> None:
        if event == self.at:
            print(f"paused at {event}", flush=True)
            time.sleep(self.seconds)

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        self._pause("on_run_start")

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        self._pause("on_job_start")
