"""Durable webhooks: an outbox row per final execution, sent signed by worker processes.

`lg_deploy.webhooks.signing` is what a receiver written in Python imports to verify a request
(standard library only); docs/webhooks.md says how in any language.
"""

from lg_deploy.webhooks.signing import verify_signature

__all__ = ["verify_signature"]
