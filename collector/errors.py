"""The error a route answers with: ``ApiError`` and the refusals several modules raise.
A leaf: it imports nothing of the collector's, so a module at any depth can raise one."""


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status``; raised inside a
    transaction it also rolls that transaction back, so a rejected request writes nothing."""

    def __init__(
        self, status: int, message: str, *, headers: dict | None = None, **details: object
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.details = details  # more fields of the answer, beside "error"

    def answer(self) -> dict:
        return {"error": self.message, **self.details}


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body is larger than {limit} bytes")
