"""The FastAPI application behind ``npcai serve``: one page, a JSON API, OpenAPI at /docs.

Routes:

- ``GET /``: the upload form (clinical fields from the served model) and its model card;
- ``POST /predict``: the form's target; the results view (a fragment with ``?fragment=1``,
  which the page's script inserts while showing progress);
- ``POST /api/predict``: multipart ``images`` (zip), optional ``contour``, ``clinical`` (JSON
  object); the same results as JSON (``?with_images=true`` adds the PNGs as base64);
- ``GET /api/model``: the model card, the form's fields and what the model offers;
- ``GET /healthz``: liveness (no model details, no token needed).

Safety: the request body is counted while it streams in and cut at ``limits.max_bytes``
(413); with a token, every route but /healthz and /static needs ``Authorization: Bearer``
(or the cookie set by opening ``/?token=...`` once in the browser); refused uploads answer
4xx with ``{"error": "<one line>"}`` on the API and the same line on the page.

Examples:
    >>> app = create_app("demo/study")                          # doctest: +SKIP
    >>> import uvicorn; uvicorn.run(app, host="127.0.0.1")      # doctest: +SKIP
"""
from __future__ import annotations

import base64
import contextlib
import hmac
import json
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from npcai.serve.model import FOLDER_KINDS, ServedModel, open_model, validate_clinical_values
from npcai.serve.service import NOTICE, WorkerPool, predict_upload
from npcai.serve.upload import UploadError, UploadLimits

__all__ = ["create_app", "BodyLimitMiddleware"]

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
TOKEN_COOKIE = "npcai_token"
_OPEN_PATHS = ("/healthz", "/static/")


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Cut a request whose body exceeds ``max_bytes``, counting while it streams (pure ASGI).

    A declared ``Content-Length`` over the limit is refused before any byte is read; otherwise
    the bytes are counted as they arrive, and the first byte over the limit ends the request
    with 413, whatever the application was doing with the body.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        seen = 0
        over = False
        started = False

        async def counting_receive():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    raise _TooLarge()
            return message

        async def guarded_send(message):
            nonlocal started
            if over:
                return          # the application's answer to a cut body is replaced by the 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._refuse(send)

    async def _refuse(self, send):
        body = json.dumps({"error": f"upload: larger than the limit of {self.max_bytes / 1024 ** 2:.0f} MB; "
                                    "upload only the pre-treatment series the model needs"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def create_app(model: str | Path | ServedModel, *, token: str | None = None, limits: UploadLimits | None = None,
               workers: int = 1, queue: int = 8, tmp_root: str | Path | None = None):
    """The web application for one served MODEL_DIR.

    Args:
        model: a run or study folder, or an already opened :class:`ServedModel`.
        token: when given, every route but /healthz needs ``Authorization: Bearer <token>``.
        limits: upload limits (default 500 MB per request).
        workers: predictions computed at the same time.
        queue: requests allowed to wait; more are refused with 503.
        tmp_root: where each request's private folder is created (default the system temp folder).
    """
    served = model if isinstance(model, ServedModel) else open_model(model)
    limits = limits or UploadLimits()
    pool = WorkerPool(workers=workers, queue=queue)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["pct"] = lambda v: "-" if v is None else f"{100 * v:.0f}%"
    templates.env.filters["b64"] = lambda b: base64.b64encode(b).decode("ascii") if b else ""

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        pool.shutdown()

    app = FastAPI(title="npcai serve", version=_version(), lifespan=lifespan,
                  description=f"{NOTICE} One patient's pre-treatment MRI and tumour contour in; the model's risk, "
                              "its place among the training patients and Grad-CAM out.")
    app.state.served, app.state.pool, app.state.limits = served, pool, limits
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def wants_json(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if token is None or request.url.path.startswith(_OPEN_PATHS):
            return await call_next(request)
        given = request.headers.get("authorization", "")
        given = given[7:] if given.lower().startswith("bearer ") else request.cookies.get(TOKEN_COOKIE, "")
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return await call_next(request)
        query = request.query_params.get("token")
        if request.url.path == "/" and query and hmac.compare_digest(query.encode(), token.encode()):
            resp = RedirectResponse("/", status_code=303)
            resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return resp
        msg = "unauthorised: this server needs its token (Authorization: Bearer TOKEN, or open /?token=TOKEN once)"
        if wants_json(request) or request.url.path.startswith(("/docs", "/openapi")):
            return JSONResponse({"error": msg}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return HTMLResponse(f"<!doctype html><title>npcai</title><p>{msg}</p>", status_code=401)

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError):
        log.info("refused upload (%d): %s", exc.status, exc)
        if wants_json(request):
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return _page(request, exc.status, error=str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = str(first.get("loc", ["", "request"])[-1])
        what = "missing" if first.get("type") == "missing" else str(first.get("msg", "invalid"))
        msg = f"{where}: {what}; see /docs for the fields of this request"
        return JSONResponse({"error": msg}, status_code=422)

    def _page(request: Request, status: int, *, error: str | None = None, fragment: bool = False):
        name = "error_fragment.html" if fragment else "form.html"
        return templates.TemplateResponse(request, name, {"served": served, "card": served.card, "error": error,
                                                          "notice": NOTICE, "limits": limits,
                                                          "kinds": FOLDER_KINDS}, status_code=status)

    async def run_prediction(images: UploadFile | None, contour: UploadFile | None, values: dict[str, Any]):
        if images is None or not getattr(images, "filename", None):
            raise UploadError("images: missing; choose the zip of the patient's pre-treatment MRI")
        if contour is not None and not getattr(contour, "filename", None):
            contour = None
        clinical, warnings = validate_clinical_values(served, values)
        return await pool.run(predict_upload, served, images.file, contour.file if contour else None,
                              contour.filename if contour else None, clinical, limits, warnings=warnings,
                              tmp_root=tmp_root)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(request: Request):
        return _page(request, 200)

    @app.post("/predict", response_class=HTMLResponse, include_in_schema=False)
    async def predict_page(request: Request, fragment: bool = Query(False)):
        form = await request.form(max_files=2, max_fields=40)
        try:
            values = {f.name: form.get(f.name) for f in served.fields if form.get(f.name) not in (None, "")}
            images = form.get("images")
            contour = form.get("contour")
            pred = await run_prediction(images if hasattr(images, "file") else None,
                                        contour if hasattr(contour, "file") else None, values)
        except UploadError as exc:
            log.info("refused upload (%d): %s", exc.status, exc)
            if fragment:
                return _page(request, exc.status, error=str(exc), fragment=True)
            return _page(request, exc.status, error=str(exc))
        finally:
            await form.close()
        ctx = {"served": served, "card": served.card, "pred": pred, "notice": NOTICE,
               "data": pred.to_json(served), "figures": pred.figures}
        return templates.TemplateResponse(request, "result_fragment.html" if fragment else "result.html", ctx)

    @app.post("/api/predict")
    async def api_predict(images: UploadFile = File(..., description="zip of the patient's pre-treatment DICOM "
                                                                      "series or NIfTI volumes"),
                          clinical: str = Form(..., description='JSON object, e.g. {"age": 52, "t_stage": 3, '
                                                                '"n_stage": 1}; GET /api/model lists the fields'),
                          contour: UploadFile | None = File(None, description="tumour contour: NIfTI label map "
                                                                                "(1 tumour, 2 nodes) or RTSTRUCT"),
                          with_images: bool = Query(False, description="include overlays and report as base64 PNG")):
        """Score one patient; answers the same results as the page, as JSON."""
        try:
            values = json.loads(clinical)
        except json.JSONDecodeError as exc:
            raise UploadError(f"clinical: not valid JSON ({exc.msg}); send an object such as "
                              '{"age": 52, "t_stage": 3, "n_stage": 1}') from None
        if not isinstance(values, dict):
            raise UploadError("clinical: must be a JSON object of field: value; GET /api/model lists the fields")
        pred = await run_prediction(images, contour, values)
        return pred.to_json(served, images=with_images)

    @app.get("/api/model")
    async def api_model():
        """The model card, the clinical fields the form asks for and the outputs offered."""
        return {"card": served.card.to_dict(), "notice": NOTICE,
                "fields": [{"name": f.name, "label": f.label, "unit": f.unit, "kind": f.kind, "minimum": f.minimum,
                            "maximum": f.maximum, "choices": list(f.choices), "integer": f.integer,
                            "required": f.required, "why": f.why} for f in served.fields],
                "outputs": served.outputs, "kinds": FOLDER_KINDS,
                "limits": {"max_upload_mb": round(limits.max_bytes / 1024 ** 2, 1), "max_members": limits.max_members,
                           "max_uncompressed_mb": round(limits.max_uncompressed / 1024 ** 2, 1)},
                "workers": pool.workers, "queue": pool.queue}

    @app.get("/healthz")
    async def healthz():
        """Liveness: answers while the server runs (no model details)."""
        return {"status": "ok"}

    # added last, so outermost: the body is counted before anything else reads it
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_bytes)
    return app


def _version() -> str:
    from npcai import __version__

    return __version__

