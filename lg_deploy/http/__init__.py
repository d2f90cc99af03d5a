"""The HTTP API: a Starlette app whose lifespan runs the workers too."""

from lg_deploy.http.app import create_app

__all__ = ["create_app"]
