"""What the client raises: one exception per kind of problem the API answers.

Every error of the API is an RFC 9457 ``application/problem+json`` body; it becomes the
exception of its status, carrying the parsed :class:`~foldflow.client.models.Problem`.
"""

from __future__ import annotations

from foldflow.client.models import FieldProblem, Problem, WorkflowPublic

__all__ = [
    "ApiError",
    "Conflict",
    "FoldflowClientError",
    "Forbidden",
    "Invalid",
    "NotFound",
    "RateLimited",
    "ServerError",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
    "error_for",
]


class FoldflowClientError(Exception):
    """The base of every error this client raises."""


class ApiError(FoldflowClientError):
    """The gateway answered with an error; ``problem`` is its problem+json body."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(f"{problem.status} {problem.title}: {problem.detail or ''}".rstrip(": "))
        self.problem = problem

    @property
    def status(self) -> int:
        """The HTTP status."""
        return self.problem.status


class Unauthorized(ApiError):
    """401: no credential, or an unknown or expired one."""


class Forbidden(ApiError):
    """403: the credential lacks the scope the operation needs."""


class NotFound(ApiError):
    """404: no such workflow or definition for the caller's tenant."""


class Conflict(ApiError):
    """409: the workflow is finished, the id is taken, or the definition version differs."""


class Invalid(ApiError):
    """400, 413, 415 or 422: the request was refused; ``errors`` names each invalid field."""

    @property
    def errors(self) -> list[FieldProblem]:
        """Every invalid field, with its location (``body.input``, ``query.limit``...)."""
        return list(self.problem.errors or [])


class RateLimited(ApiError):
    """429: over the caller's rate limit; ``retry_after`` is in seconds."""

    def __init__(self, problem: Problem, *, retry_after: float | None) -> None:
        super().__init__(problem)
        self.retry_after = retry_after


class Unavailable(ApiError):
    """503: a dependency (``dependency``: ``kafka`` or ``postgresql``) is down."""

    def __init__(self, problem: Problem, *, retry_after: float | None) -> None:
        super().__init__(problem)
        self.retry_after = retry_after

    @property
    def dependency(self) -> str | None:
        """The dependency that did not answer."""
        return self.problem.dependency


class ServerError(ApiError):
    """Any other 5xx."""


class WaitTimeout(FoldflowClientError, TimeoutError):
    """``wait`` ran out of time; ``workflow`` is the last state read (None: never seen)."""

    def __init__(self, workflow_id: str, until: str, workflow: WorkflowPublic | None) -> None:
        status = workflow.status if workflow is not None else "not found"
        super().__init__(f"workflow {workflow_id} is {status}, not {until}, after the timeout")
        self.workflow_id = workflow_id
        self.workflow = workflow


_BY_STATUS: dict[int, type[ApiError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: Invalid,
    415: Invalid,
    422: Invalid,
}


def error_for(problem: Problem, *, retry_after: float | None = None) -> ApiError:
    """The exception of a problem answer."""
    if problem.status == 429:
        return RateLimited(problem, retry_after=retry_after)
    if problem.status == 503:
        return Unavailable(problem, retry_after=retry_after)
    if problem.status >= 500:
        return ServerError(problem)
    return _BY_STATUS.get(problem.status, ApiError)(problem)
