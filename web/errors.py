"""Errors as the caller expects them: JSON under /api/, a page elsewhere,
never a traceback; and the security headers every response carries."""

from __future__ import annotations

from flask import Flask, Response, abort, jsonify, render_template, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException, InternalServerError

from indexer.store import IndexDamaged, IndexMissing
from search.query import QueryError

#: Content-Security-Policy: our own scripts and styles only, no inline code.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


#: Headers every response carries, the server's own error answers included.
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
}
#: Longest request line (method, path and query) answered: a 1,000-character
#: Chinese query is about 9 KB percent-encoded.
MAX_REQUEST_LINE = 16 * 1024


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


class RequestTimedOut(Exception):  # noqa: N818 - named for what happened, as Whoosh's TimeLimit
    """A request ran past the server's worker timeout and was stopped."""


def error_response(status: int, code: str, message: str, field: str | None = None) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message, "field": field}}), status


def _is_api() -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def validation_to_api_error(err: ValidationError) -> ApiError:
    """The first problem of a marshmallow error, named by its field."""
    messages = err.messages if isinstance(err.messages, dict) else {"_schema": err.messages}
    field, problems = next(iter(messages.items()))
    if isinstance(problems, dict):  # list fields: {index: [messages]}
        problems = next(iter(problems.values()))
    text = problems[0] if isinstance(problems, list) and problems else str(problems)
    return ApiError(400, "invalid_parameter", f"{field}: {text}", None if field == "_schema" else field)


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(err: ApiError):
        return error_response(err.status, err.code, err.message, err.field)

    @app.errorhandler(ValidationError)
    def _validation(err: ValidationError):
        e = validation_to_api_error(err)
        return error_response(e.status, e.code, e.message, e.field)

    @app.errorhandler(QueryError)
    def _query(err: QueryError):
        return error_response(400, err.code, err.message, err.field)

    @app.errorhandler(IndexMissing)
    def _missing(err: IndexMissing):
        if _is_api():
            return error_response(503, err.code, str(err))
        return render_template("error.html", status=503, message="索引尚未建立，请先运行 search index。"), 503

    @app.errorhandler(IndexDamaged)
    def _damaged(err: IndexDamaged):
        app.logger.error("%s", err)
        if _is_api():
            return error_response(503, err.code, str(err))
        return render_template("error.html", status=503, message="索引已损坏，暂时无法搜索；请运行 search check。"), 503

    @app.errorhandler(RequestTimedOut)
    def _timed_out(err: RequestTimedOut):
        app.logger.error("request stopped after the worker timeout: %s", request.full_path)
        message = "The request took longer than the server allows and was stopped; try a narrower query."
        if _is_api():
            return error_response(503, "timeout", message)
        return render_template(
            "error.html", status=503, message="请求用时超过服务器的上限，已被中止；请缩小查询范围。"
        ), 503

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException):
        if _is_api():
            code = (err.name or "error").lower().replace(" ", "_")
            return error_response(err.code or 500, code, err.description or err.name)
        return render_template("error.html", status=err.code, message=err.description), err.code

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        app.logger.exception("unhandled error on %s", request.path)
        if _is_api():
            return error_response(500, "internal_error", "The server failed to answer; the error was logged.")
        return render_template("error.html", status=500, message=InternalServerError.description), 500

    @app.before_request
    def _limits():
        # Flask enforces MAX_CONTENT_LENGTH only on a body it reads, and no
        # handler reads one: a large body is refused here instead.
        if (request.content_length or 0) > (app.config.get("MAX_CONTENT_LENGTH") or 0) > 0:
            abort(413)
        if len(request.environ.get("RAW_URI") or request.full_path) > MAX_REQUEST_LINE:
            abort(414)

    @app.after_request
    def _headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response
