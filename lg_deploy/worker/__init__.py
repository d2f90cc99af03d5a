"""The worker: slots and lifecycle, the intake from a claimer, one object per run, outcomes."""

from lg_deploy.worker.run import ExecutionRun, GraphRunner
from lg_deploy.worker.slots import ExecutionWorker, make_worker_id

__all__ = ["ExecutionRun", "ExecutionWorker", "GraphRunner", "make_worker_id"]
