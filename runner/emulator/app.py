"""The emulated Segmind API (and xAI's, runner.emulator.xai_routes) as one Starlette (ASGI) app.

Routes follow ../shared/api/segmind-wire.md. Every call goes through one
pipeline (`_Pipeline.run`): draw a fault, check the key, check the rate
limit, answer, then apply the fault to the answer, and log the call.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runner.emulator.config import FAULTABLE, EndpointKind, FaultKind
from runner.emulator.faults import cut_length
from runner.emulator.hostile import HOSTILE_FAULTS, hostile_answer
from runner.emulator.images import CONTENT_TYPES, EXTENSIONS
from runner.emulator.log import CallRecord
from runner.emulator.responses import Dropped, Trickle, error, iso_utc
from runner.emulator.state import CreditsRefused, Emulator, JobView, hash_key
from runner.emulator.validation import ParamError, parse_job_params
from runner.emulator.xai_routes import EDITS_PATH, GENERATIONS_PATH, bearer_key, edits, generations

_SERVER_ERRORS = {
    "500": (500, "Internal server error"),
    "502": (502, "Bad gateway: the service is temporarily unavailable"),
    "504": (504, "Gateway timeout: the request timed out"),
}
_AFTER_ANSWER = (
    frozenset({"drop_after", "truncate", "cut", "corrupt", "slow_body"}) | HOSTILE_FAULTS
)
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass(slots=True)
class _Call:
    """What the pipeline knows about one call (mutable while it is answered)."""

    request: Request
    emulator: Emulator
    kind: EndpointKind
    now: float
    key_hash: str
    base: str
    offload: bool
    request_id: str | None = None
    fault: FaultKind | None = field(default=None)


Handler = Callable[[_Call], Awaitable[Response]]
KeyOf = Callable[[Request], str | None]


def _segmind_key(request: Request) -> str | None:
    return request.headers.get("x-api-key")


class _Pipeline:
    """Wraps each route's handler with faults, auth, rate limit and the request log."""

    def __init__(self, emulator: Emulator, *, offload: bool) -> None:
        self.emulator = emulator
        self.offload = offload

    def route(
        self, kind: EndpointKind, handler: Handler, key_of: KeyOf = _segmind_key
    ) -> Callable[[Request], Awaitable[Response]]:
        """`key_of` reads the caller's key: Segmind's x-api-key, or xAI's Bearer token."""

        async def endpoint(request: Request) -> Response:
            return await self.run(request, kind, handler, key_of)

        return endpoint

    async def run(
        self, request: Request, kind: EndpointKind, handler: Handler, key_of: KeyOf = _segmind_key
    ) -> Response:
        emu = self.emulator
        config = emu.config
        now = emu.now()
        api_key = key_of(request)
        call = _Call(
            request=request,
            emulator=emu,
            kind=kind,
            now=now,
            key_hash=hash_key(api_key),
            base=(config.public_base_url or str(request.base_url)).rstrip("/"),
            offload=self.offload,
        )
        fault = emu.faults.draw(kind) if kind in FAULTABLE else None
        call.fault = fault
        if fault == "drop_before":
            return self._log(call, Dropped())
        if fault in _SERVER_ERRORS:
            status, message = _SERVER_ERRORS[fault]
            return self._log(call, error(status, message))
        if fault == "429":
            return self._log(call, self._rate_limited(now, None))
        if fault == "slow":
            await anyio.sleep(config.scaled(config.slow_delay))
        if kind != "media":
            if not emu.authorized(api_key):
                return self._log(call, error(401, "Invalid API key"))
            reset = emu.admit(call.key_hash, kind, now)
            if reset is not None:
                return self._log(call, self._rate_limited(now, reset))
        response = await handler(call)
        if response.status_code == 200:
            response = self._damage(call, response)
        elif fault in _AFTER_ANSWER:
            call.fault = None  # drawn, but it only damages successful answers: not applied
        return self._log(call, response)

    def _damage(self, call: _Call, response: Response) -> Response:
        fault, config = call.fault, self.emulator.config
        body = bytes(response.body)
        if fault == "drop_after":
            return Dropped(len(body))
        if fault == "truncate":
            return Dropped(len(body), body[: cut_length(len(body))])
        if fault == "cut":
            return Response(body[: cut_length(len(body))], media_type=response.media_type)
        if fault == "corrupt":
            return Response(self.emulator.faults.corrupt(body), media_type=response.media_type)
        if fault == "slow_body":
            return Trickle(response, config.trickle_chunks, config.scaled(config.trickle_delay))
        if fault is not None and fault in HOSTILE_FAULTS:
            view = (
                self.emulator.lookup(call.request_id, call.now)
                if call.request_id is not None
                else None
            )
            n = view.params.n if view is not None else None
            return hostile_answer(fault, call.kind, response, config, base=call.base, n=n)
        return response

    def _rate_limited(self, now: float, reset: float | None) -> JSONResponse:
        emu = self.emulator
        utc_now = emu.utc(now)
        if reset is None:
            # An injected 429 resets at the next window boundary, as a fixed window would.
            window = emu.config.scaled(emu.config.rate_window)
            reset = (math.floor(utc_now / window + 1e-6) + 1) * window
        headers: dict[str, str] = {}
        hint = emu.config.reset_hint
        if hint == "exact":
            headers["x-rate-limit-reset-at-utc"] = iso_utc(reset)
        elif hint == "second":
            headers["x-rate-limit-reset-at-utc"] = iso_utc(math.floor(reset))
        if emu.config.retry_after_header:
            headers["retry-after"] = str(max(0, math.ceil(reset - utc_now)))
        return error(429, "Rate limit exceeded", **headers)

    def _log(self, call: _Call, response: Response) -> Response:
        dropped = isinstance(response, Dropped)
        self.emulator.record(
            CallRecord(
                time=call.now,
                utc=self.emulator.utc(call.now),
                method=call.request.method,
                path=call.request.url.path,
                kind=call.kind,
                key_hash=call.key_hash,
                status=None if dropped else response.status_code,
                request_id=call.request_id,
                fault=call.fault,
                header_names=frozenset(name.lower() for name in call.request.headers),
            )
        )
        return response


# -- handlers -------------------------------------------------------------------


def _urls(base: str, request_id: str) -> dict[str, str]:
    return {
        "poll_url": f"{base}/v1/requests/{request_id}",
        "status_url": f"{base}/v2/requests/{request_id}/status",
        "response_url": f"{base}/v2/requests/{request_id}",
    }


def _not_found(request_id: str) -> JSONResponse:
    return error(404, f"Request {request_id} not found")


async def _accept(call: _Call, endpoint: str) -> JobView | Response:
    slug = call.request.path_params["slug"]
    emu = call.emulator
    if slug not in emu.config.models:
        return error(404, f"Model {slug} not found")
    raw = await call.request.body()
    try:
        try:
            body = json.loads(raw) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ParamError(f"the request body is not valid JSON ({err})") from None
        job = parse_job_params(body, strict=emu.config.strict_params)
    except ParamError as err:
        return error(400, str(err))
    try:
        view = emu.accept(call.key_hash, job, "v2" if endpoint == "v2" else "v1", call.now)
    except CreditsRefused as err:
        return error(406, str(err))
    call.request_id = view.request_id
    return view


async def _submit(call: _Call) -> Response:
    view = await _accept(call, "v2")
    if isinstance(view, Response):
        return view
    body = {"request_id": view.request_id, "status": "QUEUED", **_urls(call.base, view.request_id)}
    return JSONResponse(body)


async def _media_bytes(call: _Call, view: JobView, index: int) -> bytes:
    if call.offload:
        # On loopback the event loop keeps serving other calls while Pillow encodes.
        return await anyio.to_thread.run_sync(call.emulator.media, view, index)
    return call.emulator.media(view, index)


async def _sync(call: _Call) -> Response:
    accepted = await _accept(call, "v1")
    if isinstance(accepted, Response):
        return accepted
    emu = call.emulator
    await anyio.sleep(max(0.0, accepted.finished_at - emu.now()))
    emu.balance_of(call.key_hash)  # settles this job's charge
    view = emu.lookup(accepted.request_id, max(emu.now(), accepted.finished_at)) or accepted
    if view.state == "FAILED":
        return JSONResponse(
            {"status": "FAILED", "request_id": view.request_id, "error": view.error},
            status_code=422,
        )
    data = await _media_bytes(call, view, 0)
    headers = {
        "x-request-id": view.request_id,
        "x-cost": f"{view.cost:.6g}",
        "x-remaining-credits": f"{emu.balance_of(call.key_hash):.6f}",
        "x-generation-time": f"{view.inference_time:.6g}",
        "x-seed-value": str(view.seed),
    }
    return Response(data, media_type=CONTENT_TYPES[view.params.output_format], headers=headers)


def _failed(view: JobView) -> JSONResponse:
    body = {
        "status": "FAILED",
        "request_id": view.request_id,
        "error": view.error,
        "metrics": {"inference_time": round(view.inference_time, 6), "cost": 0.0},
    }
    return JSONResponse(body, status_code=422)


async def _status(call: _Call) -> Response:
    request_id = call.request.path_params["request_id"]
    call.request_id = request_id
    view = call.emulator.lookup(request_id, call.now)
    if view is None:
        return _not_found(request_id)
    if view.state == "FAILED":
        return _failed(view)
    if view.state == "COMPLETED":
        metrics = {"inference_time": round(view.inference_time, 6)}
        return JSONResponse({"status": "COMPLETED", "request_id": request_id, "metrics": metrics})
    urls = _urls(call.base, request_id)
    return JSONResponse(
        {
            "status": view.state,
            "request_id": request_id,
            "metrics": {},
            "status_url": urls["status_url"],
            "response_url": urls["response_url"],
        }
    )


async def _result(call: _Call) -> Response:
    request_id = call.request.path_params["request_id"]
    call.request_id = request_id
    view = call.emulator.lookup(request_id, call.now)
    if view is None:
        return _not_found(request_id)
    if view.state == "FAILED":
        return _failed(view)
    if view.state != "COMPLETED":
        if not call.emulator.config.result_in_progress:
            return error(404, f"Request {request_id} not found")
        return JSONResponse(
            {"status": view.state, "request_id": request_id, "metrics": {}, "output": None}
        )
    job = view.params
    ext = EXTENSIONS[job.output_format]
    items = []
    for index in range(job.n):
        data = await _media_bytes(call, view, index)
        items.append(
            {
                "url": f"{call.base}/media/{request_id}/{index}.{ext}",
                "content_type": CONTENT_TYPES[job.output_format],
                "file_name": f"{request_id}-{index}.{ext}",
                "file_size": len(data),
            }
        )
    urls = [item["url"] for item in items]
    metrics: dict[str, float | None] = {"inference_time": round(view.inference_time, 6)}
    if call.emulator.config.report_queue_time:
        metrics["queue_time"] = round(view.queue_time, 6)
        metrics["total_time"] = round(view.total_time, 6)
    metrics["cost"] = view.charged
    metrics["remaining_credits"] = view.remaining_credits
    body = {
        "status": "COMPLETED",
        "request_id": request_id,
        "metrics": metrics,
        "output": urls[0] if job.n == 1 else urls,
        "images": items,
        "seed": view.seed,
    }
    return JSONResponse(body)


async def _credits(call: _Call) -> Response:
    balance = call.emulator.balance_of(call.key_hash)
    return JSONResponse({"credits": round(balance, 6), "free-credits": 0.0})


async def _media(call: _Call) -> Response:
    request_id = call.request.path_params["request_id"]
    name = call.request.path_params["name"]
    call.request_id = request_id
    view = call.emulator.lookup(request_id, call.now)
    if view is None:
        return _not_found(request_id)
    stem, _, ext = name.partition(".")
    job = view.params
    if (
        view.state != "COMPLETED"
        or not stem.isdigit()
        or int(stem) >= job.n
        or ext != EXTENSIONS[job.output_format]
    ):
        return error(404, f"Media {name} of request {request_id} not found")
    data = await _media_bytes(call, view, int(stem))
    return Response(data, media_type=CONTENT_TYPES[job.output_format])


async def _other(call: _Call) -> Response:
    request = call.request
    return error(404, f"Not found: {request.method} {request.url.path}")


def create_app(emulator: Emulator, *, offload_encoding: bool = False) -> Starlette:
    """The ASGI app serving `emulator`.

    `offload_encoding` encodes images in a worker thread; leave it off
    in-process (a thread would let a virtual clock jump while it runs) and
    turn it on for loopback serving.
    """
    pipe = _Pipeline(emulator, offload=offload_encoding)
    routes = [
        # xAI's API (runner.emulator.xai_routes), before Segmind's /v1/{slug}.
        Route(GENERATIONS_PATH, pipe.route("sync", generations, bearer_key), methods=["POST"]),
        Route(EDITS_PATH, pipe.route("sync", edits, bearer_key), methods=["POST"]),
        Route("/v1/get-user-credits", pipe.route("credits", _credits), methods=["GET"]),
        Route("/v1/requests/{request_id}", pipe.route("result", _result), methods=["GET"]),
        Route("/v2/requests/{request_id}/status", pipe.route("status", _status), methods=["GET"]),
        Route("/v2/requests/{request_id}", pipe.route("result", _result), methods=["GET"]),
        Route("/v2/{slug}", pipe.route("submit", _submit), methods=["POST"]),
        Route("/v1/{slug}", pipe.route("sync", _sync), methods=["POST"]),
        Route("/media/{request_id}/{name}", pipe.route("media", _media), methods=["GET"]),
        Route("/{path:path}", pipe.route("other", _other), methods=_ALL_METHODS),
    ]
    app = Starlette(routes=routes)
    app.state.emulator = emulator
    return app
