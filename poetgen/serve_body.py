"""The JSON bodies `poetgen serve` takes (GenerateBody, CheckBody), read from a request with its limits,
and the one error shape every refusal has. Nothing here runs the model or knows the batching.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from poetgen.control import STYLES
from poetgen.errors import BadInput
from poetgen.options import bounds
from poetgen.request import (FORM_NAMES, MAX_THEME, MAX_TITLE, SERVER_MAX_ACROSTIC, SERVER_MAX_BEST_OF,
                             SERVER_MAX_CHARS, SERVER_MAX_POEMS, SERVER_MAX_POLISH, SERVER_MAX_PROMPT,
                             SERVER_MAX_TEMPERATURE, PoemRequest, holds_surrogate)
from poetgen.sampling import SampleOptions
from poetgen.scansion import MAX_SCANNED
from poetgen.tunes import lookup_key

MAX_BODY = 16 * 1024       # bytes of JSON
MAX_TUNE = 32              # characters of a tune name or pinyin
MAX_VARIANT = 99           # no tune has more variants
# A body refused unread (413, 408) closes its connection: kept open, the server read and dropped the
# rest of the body as the client sent it, however large (all of a `Content-Length: 1000000000`).
CLOSE = {"Connection": "close"}

_DEFAULT_REQUEST, _DEFAULT_SAMPLE = PoemRequest(), SampleOptions()


class GenerateBody(BaseModel):
    """POST /api/generate: the options of `poetgen generate`, with server limits."""

    model_config = ConfigDict(extra="forbid", strict=True)
    # Defaults and ranges are PoemRequest's and SampleOptions' own; SERVER_* limits are tighter.
    prompt: str = Field("", max_length=SERVER_MAX_PROMPT)    # the poem starts with this text
    form: Literal[FORM_NAMES] | None = _DEFAULT_REQUEST.form   # None: wujue, or by acrostic length
    tune: str = Field("", max_length=MAX_TUNE)               # a ci tune by any name or pinyin; "" for shi
    variant: int | None = Field(None, ge=1, le=MAX_VARIANT)  # the tune's variant (格); None: its usual one
    acrostic: str = Field("", max_length=SERVER_MAX_ACROSTIC)   # 藏头: line i starts with character i
    theme: str = Field("", max_length=MAX_THEME)             # free text; keywords steer the lines
    title: str = Field("", max_length=MAX_TITLE)             # write to this title (a model trained with titles)
    rhyme: bool | None = _DEFAULT_REQUEST.rhyme              # None: on for the regular forms
    tone: bool = _DEFAULT_REQUEST.tone                       # steer toward a standard 平仄 pattern
    temperature: float = Field(_DEFAULT_SAMPLE.temperature, **{**bounds(SampleOptions, "temperature"),
                               "le": SERVER_MAX_TEMPERATURE}, allow_inf_nan=False)   # 0 is greedy
    top_k: int = Field(_DEFAULT_SAMPLE.top_k, **bounds(SampleOptions, "top_k"))   # 0 turns the top-k cut off
    top_p: float = Field(_DEFAULT_SAMPLE.top_p, **bounds(SampleOptions, "top_p"), allow_inf_nan=False)
    seed: int | None = Field(_DEFAULT_SAMPLE.seed, **bounds(SampleOptions, "seed"))   # None draws one
    n: int = Field(_DEFAULT_REQUEST.n, ge=1, le=SERVER_MAX_POEMS)   # poems to return
    best_of: int = Field(_DEFAULT_REQUEST.best_of, ge=1, le=SERVER_MAX_BEST_OF)   # candidates per poem (1: fastest)
    polish: int = Field(_DEFAULT_REQUEST.polish, ge=0, le=SERVER_MAX_POLISH)   # line-by-line rewriting rounds (slow)
    polish_lines: int = Field(_DEFAULT_REQUEST.polish_lines, **bounds(PoemRequest, "polish_lines"))   # lines a round visits (0: all)
    no_repeat: bool = _DEFAULT_REQUEST.no_repeat             # no character twice within a line
    repeat_penalty: float = Field(_DEFAULT_REQUEST.repeat_penalty, **bounds(PoemRequest, "repeat_penalty"),
                                  allow_inf_nan=False)       # logit off each character the poem already has
    max_chars: int = Field(_DEFAULT_REQUEST.max_chars, **{**bounds(PoemRequest, "max_chars"),
                                                          "le": SERVER_MAX_CHARS})   # free verse length cap
    reverse_weight: float = Field(_DEFAULT_REQUEST.reverse_weight, **bounds(PoemRequest, "reverse_weight"),
                                  allow_inf_nan=False)       # weight of the reverse model in best-of scores
    style: Literal[STYLES] | None = _DEFAULT_REQUEST.style   # a conditioned model's style (default tang; a tune's is ci)
    traditional: bool = False                                # answer in traditional characters

    @field_validator("form", mode="before")
    @classmethod
    def _form_as_the_cli_reads_it(cls, form):
        """QIJUE, Qi Jue: a form name spelled as the CLI and the SavedModel take it (tunes.lookup_key)."""
        key = lookup_key(form) if isinstance(form, str) else None
        return key if key in FORM_NAMES else form

    def poem_request(self) -> PoemRequest:
        """The request these fields ask for: every field that PoemRequest or SampleOptions declares passes
        through by name (tests/test_serve.py checks that the two sides declare the same fields and defaults)."""
        given = self.model_dump()
        options = SampleOptions(**{f.name: given[f.name] for f in dataclasses.fields(SampleOptions)})
        return PoemRequest(**{f.name: given[f.name] for f in dataclasses.fields(PoemRequest) if f.name in given},
                           sample=options)


class CheckBody(BaseModel):
    """POST /api/check: a poem to scan, as `poetgen check` takes it (poetgen.scansion)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: str = Field(max_length=MAX_SCANNED)                # the poem, marks optional (one line per line)
    form: str | None = Field(None, max_length=MAX_TUNE)      # wujue … qilv or 五绝 …; None: by its line lengths
    tune: str = Field("", max_length=MAX_TUNE)               # scan it as a ci of this tune ("" for shi)
    variant: int | None = Field(None, ge=1, le=MAX_VARIANT)  # the tune's variant; None: the one it fits best


def refusal(status: int, problems: list[tuple[str, str]], headers: dict | None = None) -> JSONResponse:
    """The one error shape: {"detail": [{"field": ..., "message": ...}]}."""
    detail = [{"field": field, "message": message} for field, message in problems]
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _number(value) -> str:
    """A limit as the CLI and the Python API write it: 0, not pydantic's 0.0."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _validation_problem(error: dict) -> tuple[str, str]:
    loc = [part for part in error.get("loc", ()) if isinstance(part, str)]
    field = loc[0] if loc else "body"
    kind, ctx = error.get("type", ""), error.get("ctx") or {}
    messages = {
        "json_invalid": "the request body is not valid JSON",
        "model_type": "the request body must be a JSON object",
        "extra_forbidden": f"unknown field {field!r}",
        "missing": f"{field} is required",   # pydantic's own read "text: Field required"
        "string_too_long": f"{field} is longer than {ctx.get('max_length')} characters",
        "greater_than_equal": f"{field} must be at least {_number(ctx.get('ge'))}",
        "greater_than": f"{field} must be greater than {_number(ctx.get('gt'))}",
        "less_than_equal": f"{field} must be at most {_number(ctx.get('le'))}",
        "less_than": f"{field} must be less than {_number(ctx.get('lt'))}",
        "finite_number": f"{field} must be a finite number",
        "literal_error": f"{field} must be one of {', '.join(STYLES if field == 'style' else FORM_NAMES)}",
    }
    if kind.endswith("_type") and kind not in messages:
        wanted = {"int_type": "a whole number", "float_type": "a number", "bool_type": "true or false",
                  "string_type": "a string"}.get(kind, "of another type")
        messages[kind] = f"{field} must be {wanted}" + (" or null" if field in ("rhyme", "seed", "form", "variant")
                                                        else "")
    return field, messages.get(kind, f"{field}: {error.get('msg', 'invalid value')}")


def body_field(error: BadInput) -> str:
    """The body field a refusal of the generator is about: the request field it names, else "request"."""
    return error.field if error.field in GenerateBody.model_fields or error.field in CheckBody.model_fields \
        else "request"


async def _read_body(request: Request) -> bytes | None:
    """The body, or None when it is larger than MAX_BODY (ClientDisconnect when the client leaves first)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return body


async def read(request: Request, model: type[BaseModel], timeout_s: float) -> BaseModel | JSONResponse:
    """The request's body as `model`, or the refusal that answers it."""
    try:   # a client that stalls while sending holds a connection (and a stop) no longer than this
        raw = await asyncio.wait_for(_read_body(request), timeout_s)
    except ClientDisconnect:   # it left while sending: a 499 in the log, not an internal error
        return refusal(499, [("request", "the client disconnected")])
    except asyncio.TimeoutError:
        return refusal(408, [("body", f"the request body did not arrive within {timeout_s:g} s")], headers=CLOSE)
    if raw is None:
        return refusal(413, [("body", f"the request body is larger than {MAX_BODY} bytes")], headers=CLOSE)
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as error:
        problems = [_validation_problem(e) for e in error.errors(include_url=False)]
        if [e["type"] for e in error.errors(include_url=False)] == ["json_invalid"]:
            problems = _lone_surrogates(raw) or problems
        return refusal(422, problems)


def _holds_surrogate(value) -> bool:
    if isinstance(value, str):
        return holds_surrogate(value)
    if isinstance(value, dict):
        return any(_holds_surrogate(key) or _holds_surrogate(item) for key, item in value.items())
    return isinstance(value, list) and any(_holds_surrogate(item) for item in value)


def _lone_surrogates(raw: bytes) -> list[tuple[str, str]]:
    """The fields of a body that pydantic's parser refused as JSON but that is JSON, with a lone surrogate
    escape in a string ("\\ud800": half of a UTF-16 pair, which names no character); [] for any other
    body. A field name that holds one is not repeated (it could not be written back as UTF-8)."""
    why = "is not valid text: it holds a lone surrogate escape (\\ud800-\\udfff), half of a UTF-16 pair, not a character"
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            return [("body", f"the request body {why}")] if _holds_surrogate(data) else []
        return [("body", f"a field name {why}") if _holds_surrogate(key) else (key, f"{key} {why}")
                for key, value in data.items() if _holds_surrogate(key) or _holds_surrogate(value)]
    except (ValueError, RecursionError):   # not JSON after all (bytes that are not UTF-8), or nested too deep
        return []
