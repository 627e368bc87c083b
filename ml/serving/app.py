"""The scoring service: `create_app(model_uri)` -> a FastAPI app.

    GET  /health         model, cut-offs, follow-up: the service is up and which model it serves
    POST /score          one patient object, or {"patients": [...]}; ?curve=true adds S(t) points
    GET  /               a page for clinicians: a form for one patient, the PFS curve, the risk
                         group and the features pushing the risk up and down (no external assets)
    GET  /openapi.json   the contract (`features.patient.PatientIn`, generated from the cohort
                         contract), with JSON Schema's own minimum / maximum keywords; /docs renders
                         it with Swagger UI served by the app itself (fastapi-offline: no CDN)

POST /score?both_arms=true adds, per patient, the score under either regimen (CI, CIA) and the
CIA - CI differences in S(t) and in median PFS with their CIs (`ml.serving.contrast`); /health
carries the model card (`ml.serving.model_card`). Each request is logged on one line (logger
`rechallenge.access`: method, path, status, milliseconds).

The model is loaded once, at start, from the configured URI (models:/NAME@ALIAS, a run or a
local path); no request can name another location. Bad input gets 422 with the offending
field named (`age`, `patients[2].pdl1`), an oversized body 413; an unexpected failure a
JSON 500 without traceback (logged on the server).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from importlib.resources import files
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag
from starlette.exceptions import HTTPException as StarletteHTTPException

from features.patient import EXAMPLE_PATIENT, PatientIn, form_fields
from ml.serving.contrast import both_arms as score_both_arms
from ml.serving.inputs import ScoringInputError, frame_from_models, problems_from
from ml.serving.model_card import model_card
from ml.serving.resolve import load_scorer, registered_version
from ml.serving.results import RISK_GROUPS, to_records
from ml.serving.scorer import SurvivalScorer

log = logging.getLogger("rechallenge.serve")
access_log = logging.getLogger("rechallenge.access")

MAX_BODY_BYTES = 1_000_000
MAX_PATIENTS = 1_000
CONTRAST_BOOTSTRAP = 50
# pydantic writes the bounds of a constrained type wrapped in a validator with its own names (ge,
# le, gt, lt); JSON Schema (and so OpenAPI 3.1) calls them these:
SCHEMA_KEYWORDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}
PAGE = "page.html"
_BODY_TAGS = ("patient", "batch")


class ScoreRequest(BaseModel):
    """Several patients at once."""

    model_config = ConfigDict(extra="forbid")
    patients: list[PatientIn] = Field(..., min_length=1, max_length=MAX_PATIENTS)


def _body_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "batch" if "patients" in value else "patient"
    if isinstance(value, ScoreRequest):
        return "batch"
    if isinstance(value, PatientIn):
        return "patient"
    return None


ScoreBody = Annotated[
    Annotated[PatientIn, Tag("patient")] | Annotated[ScoreRequest, Tag("batch")],
    Discriminator(_body_kind, custom_error_type="body_shape",
                  custom_error_message='the body must be one patient object or {"patients": [...]}'),
]


class Contribution(BaseModel):
    feature: str
    value: str = Field(..., description="the patient's value ('missing (imputed)' if not recorded)")
    effect: float = Field(..., description="SHAP value on the model's risk scale (+ raises risk)")
    clinical: float | None = Field(None, description="the same in clinician units (see effect_scale): a "
                                   "hazard ratio (Cox) or a change in P(PFS > 12 months), in points")


class Curve(BaseModel):
    months: list[float]
    survival: list[float]
    low: list[float | None] | None = Field(None, description="lower limit of the pointwise 95% CI")
    high: list[float | None] | None = Field(None, description="upper limit of the pointwise 95% CI")


class PatientScore(BaseModel):
    id: str
    risk_score: float = Field(..., description="the model's risk score, higher = worse")
    risk_percentile: float = Field(..., description="percent of training patients with lower risk")
    risk_group: Literal[RISK_GROUPS]
    survival: dict[str, float | None] = Field(..., description="P(PFS > t) at 3, 6, 12, 24 months")
    survival_ci: dict[str, list[float | None]] = Field(
        ..., description="pointwise 95% CI [low, high] of P(PFS > t) (null: none, see ci_method)")
    median_pfs_months: float | None = Field(..., description="null when not reached")
    median_pfs_ci: list[float | None] = Field(
        ..., description="95% CI [low, high] of the median (null: not reached, or no CI)")
    median_pfs: str
    top_up: list[Contribution]
    top_down: list[Contribution]
    imputed: list[str]
    ci_method: str = Field(..., description="how the intervals were computed (delta method, bootstrap, none)")
    effect_unit: str | None = Field(None, description="hazard_ratio or survival_points")
    effect_scale: str = Field("", description="what the contributions' `clinical` values are, in words")
    curve: Curve | None = None


class BothArms(BaseModel):
    id: str
    arms: dict[str, PatientScore] = Field(..., description="the patient's score under each regimen (CI, CIA)")
    difference: dict[str, Any] = Field(
        ..., description="CIA minus CI: {estimate, low, high} (95% CI) of S(t) at each horizon and of the "
        "median PFS in months (null: not reached / not estimable), and the methods of the intervals")
    caveat: str


class ScoreResponse(BaseModel):
    model: dict[str, Any]
    results: list[PatientScore]
    both_arms: list[BothArms] | None = Field(None, description="with ?both_arms=true")


class ErrorItem(BaseModel):
    field: str
    message: str


class ErrorResponse(BaseModel):
    message: str
    errors: list[ErrorItem] = []


def _error(status: int, problems: list[dict[str, str]], message: str | None = None) -> JSONResponse:
    text = message or "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    return JSONResponse({"message": text, "errors": problems}, status_code=status)


def _validation_problems(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    problems = []
    for err in errors:
        loc = list(err.get("loc", ()))
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "")
            where = f" at character {loc[0]}" if loc else ""
            problems.append({"field": "body", "message": f"invalid JSON: {reason}{where}"})
            continue
        if not loc and err.get("type") == "missing":
            problems.append({"field": "body", "message": "a JSON body is required (one patient object "
                             'or {"patients": [...]})'})
            continue
        problems += problems_from([{**err, "loc": loc}], skip=_BODY_TAGS)
    return problems


class BodySizeLimit:
    """413 (JSON, naming the body) for a request body over `max_bytes`.

    A declared Content-Length over the limit is refused before reading; a body sent without
    one (chunked) is counted as it arrives and refused when it passes the limit.
    """

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"request body larger than {self.max_bytes} bytes; send fewer patients per request"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = _error(413, [{"field": "body", "message": self._message()}])
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # FastAPI re-raises an HTTPException met while reading the body
                    raise StarletteHTTPException(413, self._message())
            return message

        await self.app(scope, counted, send)


def _page() -> str:
    html = files(__package__).joinpath(PAGE).read_text(encoding="utf-8")
    return html.replace("/*__FORM_FIELDS__*/[]", json.dumps(form_fields()))


async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _error(422, _validation_problems(list(exc.errors())))


async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 413:
        return _error(413, [{"field": "body", "message": str(exc.detail)}])
    return JSONResponse({"message": str(exc.detail), "errors": []}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


async def _on_input(request: Request, exc: ScoringInputError) -> JSONResponse:
    return _error(422, exc.problems)


async def _on_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("scoring failed")
    return _error(500, [], message=f"internal error ({type(exc).__name__}); see the server log")


ERROR_HANDLERS = ((RequestValidationError, _on_validation), (StarletteHTTPException, _on_http),
                  (ScoringInputError, _on_input), (Exception, _on_error))


def standard_keywords(node: Any) -> Any:
    """The schema with pydantic's ge / le / gt / lt renamed to JSON Schema's keywords."""
    if isinstance(node, dict):
        return {SCHEMA_KEYWORDS.get(k, k) if not isinstance(v, dict | list) else k: standard_keywords(v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [standard_keywords(v) for v in node]
    return node


def _standard_openapi(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = standard_keywords(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _log_request(request: Request, call_next: Any) -> Any:
    """One access-log line per request: method, path (with query), status, milliseconds."""
    start = time.perf_counter()
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
        return response
    finally:
        query = f"?{request.url.query}" if request.url.query else ""
        client = request.client.host if request.client else "-"
        access_log.info("%s %s %s%s %d %.1f ms", client, request.method, request.url.path, query, status,
                        1000 * (time.perf_counter() - start))


def _add_routes(app: FastAPI, scorer: SurvivalScorer, info: dict[str, Any], contrast_bootstrap: int) -> None:
    lock = threading.Lock()  # scoring is CPU-bound; one at a time keeps shap/xgboost state safe
    page = _page()

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", **info}

    @app.post("/score", response_model=ScoreResponse,
              responses={413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}})
    def score_patients(body: ScoreBody,
                       curve: bool = Query(False, description="add S(t) points for a plot"),
                       both_arms: bool = Query(False, description="add the score under either regimen "
                                               "(CI, CIA) and the CIA - CI differences with 95% CIs")
                       ) -> JSONResponse:
        patients = body.patients if isinstance(body, ScoreRequest) else [body]
        frame = frame_from_models(patients)
        with lock:
            result = scorer.result_for(frame, curve=curve)
            arms = score_both_arms(scorer, frame, contrast_bootstrap).records() if both_arms else None
        # built from the model's own records (tested against ScoreResponse); skip re-validating
        body_out: dict[str, Any] = {"model": info, "results": to_records(result)}
        if arms is not None:
            body_out["both_arms"] = arms
        return JSONResponse(body_out)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page)


def create_app(model_uri: str | None = None, *, scorer: SurvivalScorer | None = None,
               notes: list[str] | None = None, max_body_bytes: int = MAX_BODY_BYTES,
               contrast_bootstrap: int = CONTRAST_BOOTSTRAP) -> FastAPI:
    """The service for the model at `model_uri` (loaded once, here), or for a fitted `scorer`.

    contrast_bootstrap: B refits for the intervals of the both-arms differences (made once, at
    start; see `ml.serving.contrast`)."""
    if scorer is None:
        if model_uri is None:
            raise ValueError("create_app needs a model URI or a fitted scorer")
        scorer, notes = load_scorer(model_uri)
    scorer.warm()
    card = model_card(scorer, registered_version(model_uri))
    info = {**scorer.info(), "uri": model_uri or "in-process", "notes": list(notes or []), "model_card": card}
    if contrast_bootstrap > 0 and getattr(scorer, "train_", None) is not None:
        score_both_arms(scorer, frame_from_models([PatientIn.model_validate(EXAMPLE_PATIENT)]),
                        contrast_bootstrap)  # the refits, once, before taking traffic
    app = FastAPIOffline(title="rechallenge PFS scoring", version="1",
                  description="Progression-free survival risk after immunotherapy rechallenge in "
                  "advanced NSCLC: risk group, survival curve, median PFS and explanation per patient.")
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.middleware("http")(_log_request)
    for exc_class, handler in ERROR_HANDLERS:
        app.add_exception_handler(exc_class, handler)
    _add_routes(app, scorer, info, contrast_bootstrap)
    _standard_openapi(app)
    return app


class BackgroundServer:
    """uvicorn serving `app` on 127.0.0.1 (a free port) in a thread; for tests and load scripts.

        with BackgroundServer(create_app(uri)) as server:
            httpx.post(server.url + "/score", json=patient)
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", start_timeout: float = 30.0):
        self.app = app
        self.host = host
        self.start_timeout = start_timeout

    def __enter__(self) -> BackgroundServer:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((self.host, 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        daemon=True, name="rechallenge-serve")
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
