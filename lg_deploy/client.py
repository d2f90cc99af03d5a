"""A small HTTP client of the lg-deploy API (standard library only), used by the CLI."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from lg_deploy.errors import ConfigError, LgDeployError

# Client-side margin on top of a server-side wait, so the server answers first.
WAIT_MARGIN_SECONDS = 10.0


class ApiCallError(LgDeployError):
    """The API answered with an error (`status` its HTTP status), or could not be reached (None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Client:
    """Calls one lg-deploy server."""

    def __init__(self, base_url: str, *, api_key: str | None = None) -> None:
        scheme = urllib.parse.urlsplit(base_url).scheme
        if scheme not in ("http", "https"):
            raise ConfigError(f"the server URL must start with http:// or https://: {base_url}")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, Any] | None = None,
        timeout: float = 30.0,
    ) -> Any:
        """Send one request and return the decoded JSON answer; ApiCallError on any failure."""
        params = {k: v for k, v in (query or {}).items() if v is not None}
        url = f"{self.base_url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("X-API-Key", self.api_key)
        try:
            # http(s) only (checked in __init__): no file:// or custom schemes.
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310  # nosec B310
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            raise ApiCallError(_error_message(error), error.code) from None
        except (urllib.error.URLError, OSError) as error:
            raise ApiCallError(f"cannot reach {self.base_url}: {error}") from None
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise ApiCallError(f"{status}: the answer is not JSON", status) from None

    def wait(self, execution_id: str, timeout: float) -> Any:
        """The execution once final or when `timeout` seconds pass (server-side long poll)."""
        path = f"/executions/{execution_id}/wait"
        client_timeout = timeout + WAIT_MARGIN_SECONDS
        return self.call("GET", path, query={"timeout": timeout}, timeout=client_timeout)


def _error_message(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read())
        return f"{error.code} {body.get('error')}: {body.get('message')}"
    except ValueError:
        return f"{error.code} {error.reason}"
