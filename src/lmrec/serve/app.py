"""The HTTP service (FastAPI): a bundle served in real time, with a feedback loop through the event store.

Reads: ``GET /health``, ``GET /ready``, ``POST /recommend``, ``GET /users/{id}``, ``GET /items/{id}``,
``GET /items/{id}/similar``. Writes: ``POST /events`` and ``POST /items`` (committed before the answer),
``POST /admin/reload`` (swap in another bundle, e.g. one ``lmrec refit`` wrote). Writes need the API key in
``X-API-Key`` (compared in constant time, never logged); with no key configured, writes are refused.
Every request body is validated (unknown fields, types, ranges, sizes): a bad request is a 4xx with a
message, never a 500.
"""

import hmac
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.json_schema import SkipJsonSchema

from lmrec import __version__
from lmrec.bundle import BUNDLE_JSON, Recommendation
from lmrec.errors import ArtifactError, ConfigError, DataError, LmrecError, Unsupported
from lmrec.fsutil import inside
from lmrec.retrieval import RetrievalKind
from lmrec.serve import online
from lmrec.serve.state import EVENT_TYPES, NotFound, Service
from lmrec.serve.store import Conflict, Event, EventStore, ServedList

logger = logging.getLogger("lmrec.serve")

STATIC = Path(__file__).parent / "static"
MAX_BODY_BYTES = 1 << 20  # 1 MiB: a thousand events fit many times over
# "Holds a character that is not white space", the same in every regex engine that reads the schema: \S
# differs between Python (U+001C-U+001F are space), ECMA-262 (U+0085 is not) and pydantic's Rust engine.
NOT_BLANK = r"[^\s\x1c-\x1f\x85]"
MAX_QUERY = 2000  # characters of free text: a paragraph; the encoder reads at most its max length of tokens
Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
FieldName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
FieldValue = Annotated[str, StringConstraints(min_length=1, max_length=10_000, pattern=NOT_BLANK)]
BundleName = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendBase(Strict):
    # the schema says it too: a user, a history, or both
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [{"required": ["user_id"]},
                                                                           {"required": ["history"]},
                                                                           {"required": ["query"]}]})
    # SkipJsonSchema[None]: omit the key rather than send null (the schema has no null, so its anyOf holds)
    user_id: Id | SkipJsonSchema[None] = Field(None, description="a known user (raw id): their whole history is the input")
    history: list[Id] | SkipJsonSchema[None] = Field(None, max_length=1000,
                                                     description="raw item ids of a session, oldest first")
    query: Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUERY, pattern=NOT_BLANK)] | SkipJsonSchema[None] = Field(
        None, description="what the person asks for, in their own words (models that read text)")
    k: int = Field(10, ge=1, le=1000)
    exclude_seen: bool = Field(True, description="leave out the items of the history")


class ExplainRequest(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [{"required": ["user_id"]},
                                                                           {"required": ["history"]}]})
    item: Id = Field(..., description="the recommended item to explain (raw id)")
    user_id: Id | SkipJsonSchema[None] = Field(None, description="a known user: their whole history")
    # the length rule inside the type, so that the schema carries it (on the union pydantic drops minItems)
    history: Annotated[list[Id], Field(min_length=1, max_length=1000)] | SkipJsonSchema[None] = Field(
        None, description="raw item ids of a session, oldest first")


class HistoryContribution(BaseModel):
    id: str
    title: str
    contribution: float = Field(description="how much this history item raised the score (negative: lowered)")


class WordContribution(BaseModel):
    word: str
    contribution: float = Field(description="how much the score falls when the item's text lacks this word")


class ExplainResponse(BaseModel):
    item: str
    title: str
    score: float
    method: Literal["exact", "occlusion"]
    history: list[HistoryContribution]
    words: list[WordContribution]
    history_words: list[WordContribution] = Field(
        description="words of the first history item's text, by how much the item's score falls without them")
    ms: float


class RecommendedItem(BaseModel):
    id: str
    title: str
    score: float


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]
    model: str
    known_user: bool
    arm: str = Field("A", description="the A/B arm that answered (A when no test runs)")
    request_id: str | None = Field(None, description="the logged list's id (lists served to a known user)")


class EventIn(Strict):
    user: Id
    item: Id
    type: Literal[EVENT_TYPES] = "view"  # type: ignore[valid-type]
    value: float | None = Field(None, allow_inf_nan=False)
    time: int | None = Field(None, ge=0, le=32_503_680_000, description="unix seconds (default: now)")
    id: Id | None = Field(None, description="the client's id for this event: a retry is stored once")


class EventsRequest(Strict):
    events: list[EventIn] = Field(..., min_length=1, max_length=1000)


class ItemAdded(BaseModel):
    id: str
    items: int


class ReloadRequest(Strict):
    bundle: BundleName | SkipJsonSchema[None] = Field(
        None, description="the name of a bundle folder beside the one served (default: the one served, read again)")


class ReloadResponse(BaseModel):
    bundle: str
    model: str
    items: int
    generation: int


class EventsResponse(BaseModel):
    stored: int
    last_seq: int


class ErrorResponse(BaseModel):
    """Every error: a message that says what to fix (a list of field problems for request validation)."""

    detail: str | list[dict[str, Any]]


# Documented on every operation: the schema lists every status the service may answer with.
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "the API key is needed and missing"},
    403: {"model": ErrorResponse, "description": "wrong API key, or writes are disabled"},
    404: {"model": ErrorResponse, "description": "unknown user or item id"},
    409: {"model": ErrorResponse, "description": "the item is already in the catalogue, or the served model cannot "
                                                  "do this (rank items added after training, read free text)"},
    411: {"model": ErrorResponse, "description": "a body without Content-Length"},
    413: {"model": ErrorResponse, "description": "a body over 1 MiB"},
    422: {"model": ErrorResponse, "description": "the request is not valid (the message says how)"},
}


class UserResponse(BaseModel):
    id: str
    known_in_training: bool
    history: list[RecommendedItem]


class ForgetResponse(BaseModel):
    id: str
    events_deleted: int
    served_deleted: int
    in_bundle: bool = Field(description="the served bundle's training data hold this user: the model still "
                            "carries what it learned from them until `lmrec refit` (which leaves them out)")


def create_app(bundle_dir: str | Path, store_path: str | Path | None = None, api_key: str | None = None,
               keyed_reads: bool = False, retrieval: RetrievalKind = "auto", int8_queries: bool = False,
               ab: str | Path | None = None, split: float = 0.5, history_parts: tuple[str, ...] | None = None,
               ) -> FastAPI:
    """The service for one bundle; events go to ``store_path`` (default: ``events.sqlite`` beside the
    bundle folder, never inside it: the bundle stays as trained). ``retrieval``: how the top k are found
    (``lmrec.retrieval``: exact, or a FAISS index; auto chooses by catalogue size). ``int8_queries``: encode
    free-text queries with an int8 copy of the model's encoder (CPU). ``ab``: a second bundle answering the
    share ``split`` of users (a stable hash of the id), for an A/B test read by ``GET /metrics/online``.
    ``history_parts``: the split parts a user's history is made of (default all; ``lmrec.bundle.Bundle``)."""
    bundle_dir = Path(bundle_dir)
    store = EventStore(store_path or bundle_dir.with_name(bundle_dir.name + ".events.sqlite"))
    service = Service(bundle_dir, store, retrieval, int8_queries, ab, split, history_parts)
    fields = service.state.bundle.catalogue.fields
    # The schema names the catalogue's own fields, so a client (and a schema-driven test) sees which exist.
    field_name: Any = Literal[tuple(fields)] if fields else FieldName

    class RecommendRequest(RecommendBase):
        filters: dict[field_name, Annotated[str, StringConstraints(max_length=256)]] | None = Field(
            None, max_length=8, description="only items whose field equals the value")

    class ItemIn(Strict):
        id: Id
        fields: dict[field_name, FieldValue] = Field(..., min_length=1, max_length=32,
                                                     description="the item's text fields (those of the catalogue)")

    app = FastAPI(title="lmrec", version=__version__, responses=ERRORS,
                  description=f"Recommendations from the {service.state.model.name!r} model of bundle "
                              f"{bundle_dir.name}.")

    def need_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
        if api_key is None:
            raise _Refused(403, "writes are disabled: start the service with LMREC_API_KEY set (or --api-key-file)")
        if x_api_key is None:
            raise _Refused(401, "this endpoint needs the API key in the X-API-Key header")
        if not hmac.compare_digest(x_api_key.encode(), api_key.encode()):
            raise _Refused(403, "wrong API key")

    reads = [Depends(need_key)] if keyed_reads else []

    @app.exception_handler(_Refused)
    async def _refused(request: Request, exc: _Refused) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(LmrecError)
    async def _user_error(request: Request, exc: LmrecError) -> JSONResponse:
        status = (404 if isinstance(exc, NotFound) else 409 if isinstance(exc, (Conflict, Unsupported))
                  else 422 if isinstance(exc, (ConfigError, DataError, ArtifactError)) else 400)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.middleware("http")
    async def _limit_body(request: Request, call_next: Any) -> Any:
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > MAX_BODY_BYTES):
            return JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        if "transfer-encoding" in request.headers:  # chunked: its size is unknown up front (no length: no body)
            return JSONResponse({"detail": "send the body with a Content-Length header"}, status_code=411)
        return await call_next(request)

    @app.get("/health")
    def health() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> dict[str, Any]:
        """The model is loaded and the event store is open."""
        state = service.current()
        arms = {"A": {"version": state.version, "share": 1.0 - (service.split if service.arm_b else 0.0)}}
        if service.arm_b is not None:
            arms["B"] = {"version": service.arm_b.version, "share": service.split}
        return {"status": "ready", "model": state.model.name, "items": state.n_items, "events": store.count(),
                "bundle": service.bundle_dir.name, "generation": service.generation, "arms": arms,
                "reads_text": hasattr(state.model, "score_text") and hasattr(state.model, "query_encoder"),
                "title_field": state.bundle.catalogue.display_field}

    @app.post("/recommend", response_model=RecommendResponse, dependencies=reads)
    def recommend(body: RecommendRequest) -> RecommendResponse:
        """Top k items for a user, a session (history), free text (query), or a mix. A list served to a known
        user is logged for online evaluation (``request_id``)."""
        arm, state = service.for_user(body.user_id)
        found = state.recommend(body.user_id, body.history, body.k, body.exclude_seen, filters=body.filters,
                                query=body.query)
        answer = _answer(found, state.model.name, body.user_id is not None and state.knows_user(body.user_id))
        answer.arm = arm
        if body.user_id is not None:
            answer.request_id = uuid.uuid4().hex
            store.log_served(ServedList(answer.request_id, body.user_id, tuple(r.item for r in found), arm,
                                        state.version, time.time()))
        return answer

    @app.post("/events", response_model=EventsResponse, dependencies=[Depends(need_key)])
    def events(body: EventsRequest) -> EventsResponse:
        """Store feedback (committed before this answer); the users' next recommendations reflect it."""
        stored = service.current().add_events([Event(e.user, e.item, e.type, e.value, e.time, e.id) for e in body.events])
        return EventsResponse(stored=len(stored), last_seq=max(s.seq for s in stored))

    @app.post("/explain", response_model=ExplainResponse, dependencies=reads)
    def explain(body: ExplainRequest) -> ExplainResponse:
        """Why an item is recommended: each history item's contribution to its score (exact for models whose
        score is a sum over the history, occlusion otherwise) and, for text models, the words of its text
        that raise the score most."""
        _, state = service.for_user(body.user_id)
        found = state.explain(body.item, body.user_id, body.history)
        return ExplainResponse(
            item=body.item, title=str(state.titles[found.item]), score=found.score, method=found.method,  # type: ignore[arg-type]
            history=[HistoryContribution(id=str(state.items.raw(c.item)), title=str(state.titles[c.item]),
                                         contribution=c.contribution) for c in found.history],
            words=[WordContribution(word=w.word, contribution=w.contribution) for w in found.words],
            history_words=[WordContribution(word=w.word, contribution=w.contribution) for w in found.history_words],
            ms=round(1000 * found.seconds, 2))

    @app.get("/metrics/online", dependencies=reads)
    def online_metrics(k: Annotated[int, Query(ge=1, le=1000)] = 10,
                       window: Annotated[float, Query(gt=0, le=30 * 86400)] = 3600.0) -> dict[str, Any]:
        """How the served lists did, judged by what each user did next (``lmrec.serve.online``): hit@k,
        NDCG@k and click-through per A/B arm and model version, per hour, and the test between the arms."""
        return online.report(store, k, window, n_items=service.current().n_items)

    @app.get("/metrics/events", dependencies=reads)
    def event_rates(minutes: Annotated[int, Query(ge=1, le=1440)] = 60) -> dict[str, Any]:
        """Events and served lists per minute over the last ``minutes``, oldest first (the dashboard)."""
        return store.per_minute(minutes)

    # --- the web page and the dashboard (static files shipped in the package; no build step, no CDN) ---------
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/dashboard", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "dashboard.html")

    @app.get("/users/{user_id}", response_model=UserResponse, dependencies=reads)
    def user(user_id: Id, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> UserResponse:
        """The user's recent history, most recent first."""
        state = service.current()
        if not state.knows_user(user_id):
            raise NotFound(f"unknown user {user_id!r}: send their events to POST /events first")
        recent = state.history(user_id)[::-1][:limit]
        return UserResponse(id=user_id, known_in_training=state.bundle_row(user_id) is not None,
                            history=[RecommendedItem(id=str(state.items.raw(int(i))), title=str(state.titles[i]),
                                                     score=0.0) for i in recent])

    @app.delete("/users/{user_id}", response_model=ForgetResponse, dependencies=[Depends(need_key)])
    def forget(user_id: Id) -> ForgetResponse:
        """Delete a user: their events and served lists leave the store (overwritten, the file vacuumed), and
        no worker uses what the bundle's data hold about them any more; `lmrec refit` then trains without them."""
        _, state = service.for_user(user_id)
        done = state.forget(user_id)
        return ForgetResponse(id=user_id, events_deleted=done["events"], served_deleted=done["served"],
                              in_bundle=done["in_bundle"])

    @app.get("/items/{item_id}", dependencies=reads)
    def item(item_id: Id) -> dict[str, Any]:
        """An item's title and text fields."""
        return service.current().item(item_id)

    @app.get("/items/{item_id}/similar", response_model=RecommendResponse, dependencies=reads)
    def similar(item_id: Id, k: Annotated[int, Query(ge=1, le=1000)] = 10) -> RecommendResponse:
        """What the model recommends to someone whose history is this one item."""
        state = service.current()
        found = state.similar(item_id, k)
        return _answer(found, state.model.name, known_user=False)

    @app.post("/items", response_model=ItemAdded, dependencies=[Depends(need_key)])
    def add_item(body: ItemIn) -> ItemAdded:
        """Add an item with its text: a model that reads text ranks it from the next request on (cold start)."""
        state = service.current()
        if body.id in state.items:
            raise Conflict(f"item {body.id!r} is already in the catalogue (items are never replaced)")
        state.add_item(body.id, dict(body.fields))
        return ItemAdded(id=body.id, items=state.n_items)

    @app.post("/admin/reload", response_model=ReloadResponse, dependencies=[Depends(need_key)])
    def reload(body: ReloadRequest | None = None) -> ReloadResponse:
        """Serve another bundle (or the same folder read again, after `lmrec refit --out` replaced it). The new
        bundle is loaded and checked in full before the swap; requests meanwhile get the old one."""
        target = service.bundle_dir
        if body is not None and body.bundle is not None:
            target = inside(service.bundle_dir.parent, body.bundle)  # a plain name (the schema's pattern) stays beside
        if not (target / BUNDLE_JSON).is_file():
            raise NotFound(f"no bundle named {target.name!r} beside the one served ({service.bundle_dir.parent})")
        state = service.reload(target)
        return ReloadResponse(bundle=target.name, model=state.model.name, items=state.n_items,
                              generation=service.generation)

    app.state.lmrec = service
    return app


def _answer(found: list[Recommendation], model: str, known_user: bool) -> RecommendResponse:
    return RecommendResponse(items=[RecommendedItem(id=r.item, title=r.title, score=r.score) for r in found],
                             model=model, known_user=known_user)


class _Refused(Exception):
    def __init__(self, status: int, detail: str):
        self.status, self.detail = status, detail


SERVE_ENV = "LMREC_SERVE"  # how `lmrec serve --workers N` tells each worker process what to serve


def app_from_environment() -> FastAPI:
    """The app of one worker of ``lmrec serve --workers N`` (uvicorn calls this in each process)."""
    options = json.loads(os.environ[SERVE_ENV])
    torch.set_num_threads(options["threads"])
    return create_app(options["bundle"], options["store"], os.environ.get("LMREC_API_KEY") or None,
                      options["keyed_reads"], options["retrieval"], options["int8_queries"], options["ab"],
                      options["split"])


def api_key_from(env_value: str | None, key_file: str | Path | None) -> str | None:
    """The API key: from ``--api-key-file`` (first line) or ``LMREC_API_KEY``; None when neither is set."""
    if key_file is not None:
        try:
            key = Path(key_file).read_text().strip().splitlines()[0].strip()
        except (OSError, IndexError):
            raise ArtifactError(f"{key_file}: cannot read an API key from it (one line, the key)") from None
        if len(key) < 16:
            raise ConfigError(f"{key_file}: the API key is too short (use at least 16 characters)")
        return key
    return env_value or None
