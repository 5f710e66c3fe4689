"""Errors a client sees, in the OpenAI error shape ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from typing import Any

from impkit.errors import ImpkitError

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "invalid_request_error",
}


class ChatError(ImpkitError):
    """A request the server answers with ``status`` and a message that says what to change."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        kind = _TYPES.get(self.status, "invalid_request_error" if self.status < 500 else "server_error")
        if self.status in (429, 503):
            kind = "overloaded_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}
