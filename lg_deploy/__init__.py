"""lg-deploy: durable background executions of LangGraph workflows on PostgreSQL alone."""

from lg_deploy.models import ExecutionState, ExecutionStatus

__all__ = ["ExecutionState", "ExecutionStatus"]
__version__ = "0.1.0"
