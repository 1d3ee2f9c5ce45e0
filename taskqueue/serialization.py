"""How arguments, return values and errors are stored: JSON checked at enqueue time, dataclasses as
JSON, pickle only by opt-in, and each failed attempt as one entry of the task's error history.

Every front door hands the payload it is about to store (`{"arg": ...}`,
`{"args": [...], "kwargs": {...}}`) to `check_payload`, which refuses, before any SQL runs, whatever
the databases or the worker's JSON decoder would refuse later. A refusal is a SerializationError
that leaves the caller's transaction usable: on PostgreSQL a statement the server rejects would
abort the whole transaction instead.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import pickle
import re
import sys
import traceback as traceback_module
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypedDict

from django.utils.json import normalize_json

from taskqueue.conf import max_payload_bytes
from taskqueue.exceptions import DeserializationExc, SerializationError

# Values that always survive a JSON round trip (floats do not: NaN and infinities are refused).
ROUND_TRIP_SCALARS = (type(None), str, int, bool)

# The deepest nesting of lists and dicts a stored payload may have, the front door's own wrapping
# included (one level for queue classes' {"arg": ...}, two for {"args": [...], "kwargs": {...}}).
# Measured limits: PostgreSQL 15's jsonb parser stops at about 14,500 levels (max_stack_depth 2MB,
# less with a smaller stack), Python's C json decoder at about 9,500, its pure-Python one at the
# recursion limit (1,000), and SQLite's JSON functions at 1,000. A hundred levels stays far from all
# of them, wherever a worker decodes.
MAX_DEPTH = 100
# Integers are stored as 64-bit signed numbers: beyond that, other languages and JSON tools lose
# precision, and past 4,300 digits Python's own decoder refuses them.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# One encoder for every check (json.dumps() with options builds a new one on each call), writing the
# text the front doors store: non-ASCII characters escaped, so NUL characters and surrogates show as
# \u escapes.
_ENCODER = json.JSONEncoder(allow_nan=False)
# Bytes that are ASCII digits stay "0", all others become " ": a run of 19 zeros is a number of 19
# digits or more (or digits inside a string), the only place an integer beyond 64 bits can be.
_DIGITS_AS_ZEROS = bytes(ord("0") if byte in b"0123456789" else ord(" ") for byte in range(256))
_NINETEEN_DIGITS = b"0" * 19
# A JSON string in the encoder's output (escapes included), to look at what lies between strings.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
# For the nesting: "{" and "}" count as "[" and "]"; all but brackets (and quotes) go.
_SQUARE_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_NOT_BRACKETS_OR_QUOTES = bytes(byte for byte in range(256) if byte not in b'[]{}"')
# A \u0000 escape (a NUL character), not an escaped backslash followed by "u0000".
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_LONG_INTEGER = re.compile(r"-?[0-9]{19,}")


def check_json(value: Any, what: str = "The value") -> Any:
    """Return `value` if it survives a JSON round trip unchanged; raise SerializationError if not.

    For values kept after a run (return values); arguments go through the stricter `check_payload`.
    """
    if type(value) in ROUND_TRIP_SCALARS:
        return value
    try:
        text = _encode(value, what)
    except RecursionError:
        raise SerializationError(f"{what} cannot be stored as JSON: nested too deeply.") from None
    _check_round_trip(value, text, what)
    return value


def check_payload(payload: dict[str, Any], what: str = "The arguments") -> dict[str, Any]:
    """Return the payload a front door is about to store if every database and worker can take it.

    Refused with SerializationError: what does not round-trip through JSON (tuples, sets, non-string
    keys, NaN), NUL characters and lone surrogates (PostgreSQL refuses both), integers outside 64
    bits, nesting deeper than MAX_DEPTH and JSON text larger than TASKQUEUE["MAX_PAYLOAD_BYTES"].
    The hot path is the encoding and the round trip that were always needed, plus a few scans of the
    text in C; the precise (slower) look runs only when a scan finds a candidate.
    """
    text = _encode_payload(payload, what)
    limit = max_payload_bytes()
    if len(text) > limit:
        raise SerializationError(
            f"{what} cannot be stored: {len(text):,} bytes of JSON, more than "
            f"TASKQUEUE['MAX_PAYLOAD_BYTES'] ({limit:,} bytes). Store large data elsewhere "
            "(a file, a row) and pass its name or id."
        )
    if "\\u" in text:
        _check_escapes(text, payload, what)
    if _NINETEEN_DIGITS in text.encode("ascii").translate(_DIGITS_AS_ZEROS):
        _check_integers(_STRING.sub('""', text), what)
    if len(text) > 2 * MAX_DEPTH and text.count("[") + text.count("{") > MAX_DEPTH:
        _check_depth(text, what)
    _check_round_trip(payload, text, what)
    return payload


def call_payload(args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The checked payload of a function call (django.tasks and Celery-style tasks): Django's own
    normalisation of task arguments (tuples become lists, bytes text), then `check_payload`."""
    try:
        payload = {"args": normalize_json(args), "kwargs": normalize_json(kwargs)}
    except RecursionError:
        raise _too_deep("The arguments") from None
    except (TypeError, ValueError) as error:
        raise SerializationError(f"The arguments cannot be stored as JSON: {error}") from None
    return check_payload(payload)


def return_value(value: Any) -> Any:
    """A task's return value as it will be stored: Django's normalisation, then `check_json`. NUL
    characters and lone surrogates pass: the outcome writer replaces them (and says so) rather than
    fail a finished run."""
    try:
        value = normalize_json(value)
    except RecursionError:
        raise SerializationError(
            "The return value cannot be stored as JSON: nested too deeply."
        ) from None
    except (TypeError, ValueError) as error:
        raise SerializationError(f"The return value cannot be stored as JSON: {error}") from None
    return check_json(value, "The return value")


def _encode(value: Any, what: str) -> str:
    """The JSON text of `value`; RecursionError (nesting of thousands of levels) is the caller's to
    word."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as error:
        raise SerializationError(f"{what} cannot be stored as JSON: {error}") from None


def _encode_payload(payload: dict[str, Any], what: str) -> str:
    """`_encode` with the payload's limits named: nesting, and integers past Python's own digit
    limit."""
    try:
        return _encode(payload, what)
    except RecursionError:
        raise _too_deep(what) from None
    except SerializationError as error:
        if "integer string conversion" in str(
            error
        ):  # Python refuses to write ints this long (or read them)
            raise _out_of_range(
                what, f"an integer of more than {sys.get_int_max_str_digits()} digits"
            ) from None
        raise


def _check_escapes(text: str, payload: dict[str, Any], what: str) -> None:
    """NUL characters and lone surrogates, which the text shows as \\u escapes (as it does any
    non-ASCII)."""
    if "\\u0000" in text and _NUL.search(text):
        raise SerializationError(
            f"{what} cannot be stored: NUL characters ('\\x00') are refused by PostgreSQL."
        )
    if "\\ud" in text:
        # A character beyond U+FFFF is one character in Python (only its JSON escape is a pair of
        # surrogates), so UTF-8 fails only on lone surrogates.
        try:
            json.dumps(payload, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise SerializationError(
                f"{what} cannot be stored: lone surrogates (such as '\\ud800') are not valid "
                "Unicode and PostgreSQL refuses them. Decode bytes with errors='replace', or "
                "pass them as base64."
            ) from None


def _check_integers(outside_strings: str, what: str) -> None:
    for match in _LONG_INTEGER.finditer(outside_strings):
        if not INT64_MIN <= int(match.group()) <= INT64_MAX:
            number = match.group()
            shown = number if len(number) <= 30 else f"{number[:30]}... ({len(number)} digits)"
            raise _out_of_range(what, f"the integer {shown}")


def _out_of_range(what: str, integer: str) -> SerializationError:
    return SerializationError(
        f"{what} cannot be stored: {integer} is outside the signed 64-bit range ({INT64_MIN} to "
        f"{INT64_MAX}), the limit of stored integers. Pass it as a string."
    )


def _check_depth(text: str, what: str) -> None:
    """Count the levels of nesting: each pass removes the innermost containers ("[]" pairs, in
    C)."""
    structure = _structure(text)
    depth = 0
    while structure:
        depth += 1
        if depth > MAX_DEPTH:
            raise _too_deep(what)
        structure = structure.replace(b"[]", b"")


def _structure(text: str) -> bytes:
    """The brackets of the JSON text outside its strings, "{}" written as "[]".

    Fast path: keep brackets and quotes, drop each pair of adjacent quotes (a string without
    brackets). A string with a bracket in it leaves an odd number of quotes before that bracket, so
    some quote stays; then, as when a string holds an escaped quote, a regular expression removes
    the strings first.
    """
    if '\\"' not in text:
        brackets_and_quotes = text.encode("ascii").translate(
            _SQUARE_BRACKETS, _NOT_BRACKETS_OR_QUOTES
        )
        structure = brackets_and_quotes.replace(b'""', b"")
        if b'"' not in structure:
            return structure
    return _STRING.sub("", text).encode("ascii").translate(_SQUARE_BRACKETS, _NOT_BRACKETS)


def _too_deep(what: str) -> SerializationError:
    return SerializationError(
        f"{what} cannot be stored: nested deeper than the limit of {MAX_DEPTH} levels of lists "
        "and dicts (taskqueue.serialization.MAX_DEPTH, the front door's own wrapping included)."
    )


def _check_round_trip(value: Any, text: str, what: str) -> None:
    if json.loads(text) != value:
        raise SerializationError(
            f"{what} cannot be stored: not the same after a JSON round trip (tuples, sets and "
            f"non-string keys change): {value!r:.300}"
        )


def _plain_scalar(arg: Any) -> bool:
    """Whether `arg` is a value that can be stored as it is (no encoding needed to know): the fast
    path of queue classes whose argument is an id, a flag or a short ASCII text."""
    kind = type(arg)
    if kind is int:
        return INT64_MIN <= arg <= INT64_MAX
    if kind is str:
        return arg.isascii() and "\x00" not in arg and 6 * len(arg) + 16 <= max_payload_bytes()
    return arg is None or kind is bool


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An attempt's error as the history keeps it: the exception's class path, message and
    traceback."""

    exc_class: str
    message: str
    traceback: str

    @classmethod
    def from_exception(cls, error: BaseException) -> ErrorInfo:
        kind = type(error)
        return cls(
            exc_class=f"{kind.__module__}.{kind.__qualname__}",
            message=str(error),
            traceback="".join(traceback_module.format_exception(error)),
        )

    def entry(
        self, attempt: int, worker: str, at: datetime | None, *, abandoned: bool = False
    ) -> ErrorEntry:
        """The entry of the error history this error makes (the one place entries are built)."""
        return ErrorEntry(
            attempt=attempt,
            at=at.isoformat() if at is not None else "",
            worker=worker,
            exc_class=self.exc_class,
            message=self.message,
            traceback=self.traceback,
            abandoned=abandoned,
        )


class ErrorEntry(TypedDict):
    """One entry of a task's error history (the `errors` column), as the admin, the dashboard and
    the result objects read it. `attempt` 0: an error before any attempt (a refusal at enqueue, a
    corrupt row)."""

    attempt: int
    at: str  # ISO 8601, "" when unknown
    worker: str  # the worker process ("name@host:pid") or its id; "" when none ran it
    exc_class: str
    message: str
    traceback: str
    abandoned: bool  # the worker died during this attempt


def error_entries(stored: Any) -> tuple[list[dict[str, Any]], bool]:
    """A task's stored error history as a list of entries, and whether it had to be replaced.

    The column is written by the queue only, but a row edited by hand or by another tool can hold
    anything; whatever it holds, readers get entries of the usual shape, the old text kept in one
    `taskqueue.CorruptRow` entry, so no page, result object or worker trips over it."""
    entries = stored
    if isinstance(stored, str | bytes):
        try:
            entries = json.loads(stored)
        except (ValueError, RecursionError):
            entries = None
    if isinstance(entries, list) and all(isinstance(entry, dict) for entry in entries):
        return entries, False
    message = f"The stored error history was not a list of entries: {str(stored)[:1000]}"
    return [dict(ErrorInfo("taskqueue.CorruptRow", message, "").entry(0, "", None))], True


@dataclasses.dataclass(frozen=True)
class JsonCodec:
    def encode(self, arg: Any) -> dict[str, Any]:
        if _plain_scalar(arg):
            return {"arg": arg}
        return check_payload({"arg": arg}, "The argument")

    def decode(self, payload: dict[str, Any]) -> Any:
        if "arg" not in payload:
            raise DeserializationExc(f"Payload has no 'arg': {payload!r}")
        return payload["arg"]


@dataclasses.dataclass(frozen=True)
class DataclassCodec:
    arg_type: type

    def encode(self, arg: Any) -> dict[str, Any]:
        if not isinstance(arg, self.arg_type):
            raise SerializationError(
                f"Expected a {self.arg_type.__qualname__}, got {type(arg).__qualname__}."
            )
        fields = dataclasses.asdict(arg)  # type: ignore[call-overload]  # an instance of the dataclass arg_type
        payload = check_payload({"arg": fields}, f"The {self.arg_type.__qualname__} argument")
        if self.arg_type(**payload["arg"]) != arg:
            raise SerializationError(
                f"{self.arg_type.__qualname__} does not round-trip through JSON: {arg!r}"
            )
        return payload

    def decode(self, payload: dict[str, Any]) -> Any:
        try:
            return self.arg_type(**payload["arg"])
        except (KeyError, TypeError) as error:
            raise DeserializationExc(
                f"Cannot rebuild {self.arg_type.__qualname__} from {payload!r}: {error}"
            ) from error


@dataclasses.dataclass(frozen=True)
class PickleCodec:
    """Any picklable value. Unpickling runs code: only for queues whose database nobody else can
    write."""

    def encode(self, arg: Any) -> dict[str, Any]:
        try:
            data = pickle.dumps(arg, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            raise SerializationError(f"The argument cannot be pickled: {error}") from None
        return check_payload(
            {"pickle": base64.b64encode(data).decode("ascii")}, "The pickled argument"
        )

    def decode(self, payload: dict[str, Any]) -> Any:
        try:
            return pickle.loads(base64.b64decode(payload["pickle"]))
        except Exception as error:
            raise DeserializationExc(f"Cannot unpickle the argument: {error!r}") from error
