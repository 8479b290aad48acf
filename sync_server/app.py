"""The sync server's HTTP app (FastAPI). Routes are thin: authenticate, check the protocol
version, call one store method. A lifespan owns the database; database work runs in the
thread pool and never blocks the event loop. Push and pull, the hot path, are answered by
BodyLimitMiddleware from the body it read (one trip to the pool for token, validation, store
call and response encoding); their FastAPI routes describe them in the OpenAPI spec and answer
the same way.

Request bodies may be gzip-compressed (``Content-Encoding: gzip``); both the body on the wire
and the decompressed body are capped (413 ``BODY_TOO_LARGE``). Responses above 1 KB are
gzip-compressed for clients that accept it.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from pydantic_core import from_json, to_json
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware

from pharmacy.clock import Clock, iso, utcnow
from pharmacy.errors import PharmosError
from sync_server import schemas
from sync_server.errors import BadRequest, SyncError, Unauthorized
from sync_server.storage import SqlServerStore, Terminal, open_store

log = logging.getLogger("pharmos.sync_server")

DEFAULT_MAX_BODY = 16 * 1024 * 1024
API_VERSION = "1"
# responses: a pull of a store's catalog (~100 KB of JSON) compresses to ~14 KB at level 3
# in ~0.4 ms of server CPU, to ~12 KB at Starlette's default 9 in ~1.6 ms
RESPONSE_GZIP_LEVEL = 3
RESPONSE_GZIP_MIN = 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# a route answered straight from the request body read by BodyLimitMiddleware
BodyRoute = Callable[[Scope, bytes, Send], Awaitable[None]]


def _error(status: int, code: str, message: str, **details: Any) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status)


def error_response(err: Exception) -> JSONResponse:
    """The answer to an error a route raised (what the app's exception handlers send)."""
    if isinstance(err, SyncError):
        return JSONResponse(err.to_json(), status_code=err.status)
    if isinstance(err, PharmosError):
        return JSONResponse(err.to_json(), status_code=400)
    if isinstance(err, psycopg.OperationalError):
        log.warning("database unavailable: %s", err)
        return _error(503, "DB_UNAVAILABLE", "the database is unavailable; retry later")
    if isinstance(err, sqlite3.OperationalError):
        log.warning("database error: %s", err)
        return _error(503, "DB_UNAVAILABLE", f"the database is busy or unavailable: {err}")
    if isinstance(err, psycopg.DataError):
        # a value the request carried that PostgreSQL cannot hold (a NUL character, a number
        # beyond its column): validation should have refused it; nothing was written
        log.warning("value refused by the database: %s", err)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return _error(400, "BAD_VALUE", f"a value in the request cannot be stored: {first}")
    log.error("internal error", exc_info=err)
    return _error(500, "INTERNAL", "internal server error; see the server log")


def json_answer(status: int, body: bytes, gzip_ok: bool) -> tuple[int, list[tuple[bytes, bytes]],
                                                                  bytes]:
    """(status, headers, body) of a JSON response as the app's GZip middleware sends it:
    ``Vary: Accept-Encoding`` from 1 KB, compressed too when the client accepts gzip."""
    headers = [(b"content-length", b""), (b"content-type", b"application/json")]
    if len(body) >= RESPONSE_GZIP_MIN:
        headers.append((b"vary", b"Accept-Encoding"))
        if gzip_ok:
            z = zlib.compressobj(RESPONSE_GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            body = z.compress(body) + z.flush()
            headers.append((b"content-encoding", b"gzip"))
    headers[0] = (b"content-length", str(len(body)).encode())
    return status, headers, body


class BodyLimitMiddleware:
    """Cap request bodies (raw and decompressed) and undo ``Content-Encoding: gzip``.

    ``routes`` (POST path -> handler) are answered here from the body already read, without
    passing it on (the sync hot path: push and pull)."""

    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_BODY,
                 routes: Mapping[str, BodyRoute] | None = None) -> None:
        self.app = app
        self.max_body = max_body
        self.routes = dict(routes or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"]]
        encoding = b""
        length = None
        for k, v in headers:
            if k == b"content-encoding":
                encoding = v.strip().lower()
            elif k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    length = None
        too_big = _error(413, "BODY_TOO_LARGE",
                         f"request body larger than {self.max_body} bytes; push in smaller "
                         "pages", limit=self.max_body)
        if length is not None and length > self.max_body:
            await too_big(scope, receive, send)
            return
        if encoding not in (b"", b"identity", b"gzip"):
            await _error(415, "UNSUPPORTED_ENCODING",
                         f"Content-Encoding {encoding.decode(errors='replace')!r} is not "
                         "supported; send gzip or nothing")(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await too_big(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if encoding == b"gzip" and body:
            d = zlib.decompressobj(wbits=31)
            try:
                out = d.decompress(body, self.max_body + 1)
                if len(out) > self.max_body or d.unconsumed_tail:
                    await too_big(scope, receive, send)
                    return
                out += d.flush()
                if not d.eof:
                    raise zlib.error("truncated gzip stream")
            except zlib.error as e:
                await _error(400, "BAD_GZIP", f"the gzip body does not decompress: {e}")(
                    scope, receive, send)
                return
            body = out
        route = self.routes.get(scope["path"]) \
            if scope["method"] == "POST" and not scope.get("root_path") else None
        if route is not None:
            await route(scope, body, send)
            return
        new_headers = [(k, v) for k, v in headers
                       if k not in (b"content-encoding", b"content-length")]
        new_headers.append((b"content-length", str(len(body)).encode()))
        scope = dict(scope)
        scope["headers"] = new_headers
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


_ERRORS = {
    400: "malformed request, unknown protocol version (PROTOCOL_VERSION), bad rows or a "
         "value the database cannot hold (BAD_VALUE)",
    401: "no, unknown or revoked terminal token",
    403: "a row names another store or tenant, or a kind only head office writes",
    404: "not found",
    409: "conflict: COUNTER_REGRESSION, REPLICA_FORKED, CURSOR_AHEAD",
    413: "body too large",
    415: "unsupported Content-Encoding",
    422: "the body does not match the schema",
    503: "database unavailable; retry later",
}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": schemas.ErrorBody, "description": _ERRORS[c]} for c in codes}


_bearer = HTTPBearer(auto_error=False, description="terminal token from /v1/enroll")


async def get_store(request: Request) -> SqlServerStore:
    s: SqlServerStore = request.app.state.store
    return s


StoreDep = Annotated[SqlServerStore, Depends(get_store)]
CredDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def bearer_token(cred: HTTPAuthorizationCredentials | None) -> str:
    if cred is None or cred.scheme.lower() != "bearer":
        raise Unauthorized("send 'Authorization: Bearer <terminal token>'", code="NO_TOKEN")
    return cred.credentials


def header_token(authorization: str | None) -> str:
    """The token of an ``Authorization`` header, read as the ``HTTPBearer`` dependency does."""
    scheme, _, credentials = (authorization or "").partition(" ")
    credentials = credentials.strip()
    return bearer_token(HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials)
                        if scheme and credentials else None)


def get_terminal(store: StoreDep, cred: CredDep) -> Terminal:
    return store.authenticate(bearer_token(cred))


TermDep = Annotated[Terminal, Depends(get_terminal)]


def create_app(db_url: str | None = None, *, store: SqlServerStore | None = None,
               max_body: int = DEFAULT_MAX_BODY, clock: Clock = utcnow,
               migrate: bool = False) -> FastAPI:
    """The app over ``db_url`` (opened by the lifespan) or an already open ``store``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = store is None
        s = store if store is not None else open_store(str(db_url), clock)
        try:
            if migrate:
                s.migrate()
            s.check_schema()
            app.state.store = s
            yield
        finally:
            if own:
                s.close()

    app = FastAPI(title="pharmos sync server", version=API_VERSION, lifespan=lifespan,
                  description="Head-office sync for pharmos terminals (protocol 1).")
    app.add_middleware(GZipMiddleware, minimum_size=RESPONSE_GZIP_MIN,
                       compresslevel=RESPONSE_GZIP_LEVEL)

    def body_route(handler: Callable[[SqlServerStore, str, bytes], bytes]) -> BodyRoute:
        """``handler`` (store, token, body -> JSON) as a route of BodyLimitMiddleware: token,
        body, store call, errors and compression in one trip to the thread pool."""
        def answer(authorization: str | None, raw: bytes, gzip_ok: bool
                   ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            try:
                return json_answer(200, handler(app.state.store, header_token(authorization),
                                                raw), gzip_ok)
            except Exception as err:
                resp = error_response(err)
                return json_answer(resp.status_code, bytes(resp.body), gzip_ok)

        async def route(scope: Scope, body: bytes, send: Send) -> None:
            authorization: str | None = None
            accept: str | None = None
            for k, v in scope["headers"]:
                if k == b"authorization" and authorization is None:
                    authorization = v.decode("latin-1")
                elif k == b"accept-encoding" and accept is None:
                    accept = v.decode("latin-1")
            status, headers, out = await run_in_threadpool(answer, authorization, body,
                                                           "gzip" in (accept or ""))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": out})

        return route

    app.add_middleware(BodyLimitMiddleware, max_body=max_body, routes={
        "/v1/push": body_route(lambda store, token, raw: push_json(push_raw(store, token, raw))),
        "/v1/pull": body_route(lambda store, token, raw: pull_json(store, token, raw))})

    async def mapped_error(request: Request, err: Exception) -> JSONResponse:
        return error_response(err)

    # domain and database errors answer with their code; anything else is a logged 500
    for cls in (SyncError, PharmosError, psycopg.OperationalError, psycopg.DataError,
                sqlite3.OperationalError, Exception):
        app.add_exception_handler(cls, mapped_error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        e = invalid_body(getattr(err, "body", None), err.errors())
        return JSONResponse(e.to_json(), status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(err.status_code, "HTTP_ERROR")
        return _error(err.status_code, code, str(err.detail))

    @app.get("/v1/health", response_model=schemas.Health, tags=["sync"])
    def health() -> dict[str, Any]:
        return {"ok": True, "protocols": list(schemas.PROTOCOL_VERSIONS),
                "server_time": iso(clock())}

    @app.post("/v1/enroll", response_model=schemas.EnrollResponse, tags=["sync"],
              responses=_responses(400, 401, 413, 415, 422, 503))
    def enroll(req: schemas.EnrollRequest, store: StoreDep) -> dict[str, Any]:
        """Trade a one-time enrollment code for a terminal token."""
        return {"protocol": 1, **store.enroll(req.code, req.name, req.replica_id)}

    def push_raw(store: SqlServerStore, token: str, raw: bytes) -> dict[str, Any]:
        term = store.authenticate(token)
        try:
            req = schemas.push_request(raw)
        except ValidationError as err:
            raise invalid_body(_json_or_none(raw), err.errors()) from None
        return store.push(term, req)

    @app.post("/v1/push", response_model=schemas.PushResponse, tags=["sync"],
              responses=_responses(400, 401, 403, 409, 413, 415, 422, 503),
              openapi_extra=_body_ref("PushRequest"))
    async def push(request: Request, store: StoreDep, cred: CredDep) -> dict[str, Any]:
        """Counter rows (totals) and append-only events of this terminal; idempotent.

        The body is parsed in the thread pool straight from its bytes (the hot path); the
        token is checked there too, before the body (one trip to the thread pool)."""
        token = bearer_token(cred)
        raw = await request.body()
        return await run_in_threadpool(push_raw, store, token, raw)

    def push_json(resp: dict[str, Any]) -> bytes:
        return schemas.PushResponse.model_validate(resp).model_dump_json().encode()

    def pull_json(store: SqlServerStore, token: str, raw: bytes) -> bytes:
        term = store.authenticate(token)
        if not raw.strip():
            raise invalid_body(None, [{"loc": ("body",), "msg": "Field required",
                                       "type": "missing"}])
        try:
            req = schemas.PullRequest.model_validate_json(raw)
        except ValidationError as err:
            raise invalid_body(_json_or_none(raw), [
                {**e, "loc": ("body", *e.get("loc", ()))} for e in err.errors()]) from None
        return to_json(store.pull(term, req.model_dump()))

    @app.post("/v1/pull", response_model=schemas.PullResponse, tags=["sync"],
              responses=_responses(400, 401, 403, 409, 413, 415, 422, 503),
              openapi_extra=_body_ref("PullRequest"))
    async def pull(request: Request, store: StoreDep, cred: CredDep) -> Response:
        """Rows of the terminal's store above ``cursor``, other replicas only."""
        token = bearer_token(cred)
        raw = await request.body()
        return Response(await run_in_threadpool(pull_json, store, token, raw),
                        media_type="application/json")

    @app.post("/v1/events/known", response_model=schemas.KnownResponse, tags=["sync"],
              responses=_responses(400, 401, 413, 415, 422, 503))
    def known(req: schemas.KnownRequest, store: StoreDep, term: TermDep) -> dict[str, Any]:
        """Which of these event ids the server holds for the terminal's store."""
        return {"protocol": 1, "known": store.known_events(term, req.event_ids)}

    @app.get("/v1/blobs/{sha256}", tags=["sync"],
             responses={200: {"content": {"application/octet-stream": {}},
                              "description": "the published file"},
                        **_responses(401, 404, 503)})
    def blob(sha256: str, store: StoreDep, term: TermDep) -> Response:
        """A policy or model bundle published to the terminal's store."""
        return Response(store.blob(term, sha256), media_type="application/octet-stream")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version, description=app.description,
                           routes=app.routes)
        comps = spec.setdefault("components", {}).setdefault("schemas", {})
        for model in (schemas.PushRequest, schemas.PullRequest):
            sch = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in sch.pop("$defs", {}).items():
                comps.setdefault(name, sub)
            comps[model.__name__] = sch
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _body_ref(model: str) -> dict[str, Any]:
    """OpenAPI for a route that reads its JSON body itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model}"}}}}}


def _json_or_none(raw: bytes) -> Any:
    try:
        return from_json(raw)
    except ValueError:
        return None


def invalid_body(body: Any, errors: Sequence[Any]) -> SyncError:
    """The error for a body that failed validation: PROTOCOL_VERSION when it names a protocol
    this server does not speak, BAD_JSON when it is not JSON, else BAD_REQUEST (422)."""
    if isinstance(body, dict) and "protocol" in body:
        v = body.get("protocol")
        if not (isinstance(v, int) and not isinstance(v, bool)
                and v in schemas.PROTOCOL_VERSIONS):
            return BadRequest(f"sync protocol {v!r} is not supported by this server (it speaks "
                              f"{list(schemas.PROTOCOL_VERSIONS)}); update pharmos",
                              code="PROTOCOL_VERSION",
                              supported=list(schemas.PROTOCOL_VERSIONS))
    errs = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg")),
             "type": str(e.get("type"))} for e in list(errors)[:20]]
    if any(e["type"] == "json_invalid" for e in errs):
        return BadRequest("the request body is not valid JSON", code="BAD_JSON", errors=errs)
    first = errs[0] if errs else {"loc": [], "msg": "invalid"}
    return SyncError(f"{'.'.join(first['loc'])}: {first['msg']}", code="BAD_REQUEST",
                     status=422, errors=errs)


def app_from_env() -> FastAPI:
    """App factory for multi-process serving (``uvicorn --factory``): reads PHARMOS_SYNC_DB
    and PHARMOS_SYNC_MAX_BODY."""
    import os

    return create_app(os.environ["PHARMOS_SYNC_DB"],
                      max_body=int(os.environ.get("PHARMOS_SYNC_MAX_BODY", DEFAULT_MAX_BODY)))


def serve(db_url: str, host: str = "127.0.0.1", port: int = 8787, *,
          max_body: int = DEFAULT_MAX_BODY, migrate: bool = False, workers: int = 1,
          log_level: str = "info") -> None:
    """Run the server with uvicorn until interrupted (``workers`` processes)."""
    import os

    import uvicorn

    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO))
    if migrate:
        store = open_store(db_url)
        try:
            store.migrate()
        finally:
            store.close()
    if workers > 1 and hasattr(os, "fork"):
        _serve_forked(db_url, host, port, max_body=max_body, workers=workers,
                      log_level=log_level)
        return
    if workers > 1:
        os.environ["PHARMOS_SYNC_DB"] = db_url
        os.environ["PHARMOS_SYNC_MAX_BODY"] = str(max_body)
        uvicorn.run("sync_server.app:app_from_env", factory=True, workers=workers, host=host,
                    port=port, log_level=log_level, access_log=False, timeout_keep_alive=30)
        return
    app = create_app(db_url, max_body=max_body)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                timeout_keep_alive=30)


def _serve_forked(db_url: str, host: str, port: int, *, max_body: int, workers: int,
                  log_level: str) -> None:
    """``workers`` processes accepting on one listening socket (POSIX).

    The socket is made with protocol IPPROTO_TCP, so asyncio turns Nagle off on every
    accepted connection (uvicorn's own multi-process mode binds with protocol 0: each
    keep-alive request then waits ~40 ms for a delayed ACK). Each process opens its own
    database connections after the fork. If a worker dies, the others are stopped and the
    exit code is non-zero, for the service manager to restart the server."""
    import os
    import signal
    import socket

    import uvicorn

    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(addr)
    sock.listen(2048)
    sock.set_inheritable(True)
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - a worker process
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                config = uvicorn.Config(create_app(db_url, max_body=max_body),
                                        log_level=log_level, access_log=False,
                                        timeout_keep_alive=30)
                uvicorn.Server(config).run(sockets=[sock])
            except BaseException:
                log.exception("sync server worker failed")
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    sock.close()
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = False
    alive = set(children)
    while alive:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        alive.discard(pid)
        if not stopping:
            failed = True
            log.error("sync server worker %d exited (status %d); stopping", pid, status)
            stop(signal.SIGTERM, None)
    if failed:
        raise SystemExit(1)
