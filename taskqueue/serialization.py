"""How arguments are stored: JSON checked at enqueue time, dataclasses as JSON, pickle only by opt-in."""

from __future__ import annotations

import base64
import dataclasses
import json
import pickle
from typing import Any

from taskqueue.exceptions import DeserializationExc, SerializationError

# Values that always survive a JSON round trip (floats do not: NaN and infinities are refused).
ROUND_TRIP_SCALARS = (type(None), str, int, bool)


def check_json(value: Any, what: str = "The argument") -> Any:
    """Return `value` if it survives a JSON round trip unchanged; raise SerializationError if not."""
    if type(value) in ROUND_TRIP_SCALARS:
        return value
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise SerializationError(f"{what} cannot be stored as JSON: {error}") from None
    if json.loads(text) != value:
        raise SerializationError(
            f"{what} does not round-trip through JSON (tuples, sets and non-string keys change): {value!r}"
        )
    return value


@dataclasses.dataclass(frozen=True)
class JsonCodec:
    def encode(self, arg: Any) -> dict[str, Any]:
        return {"arg": check_json(arg)}

    def decode(self, payload: dict[str, Any]) -> Any:
        if "arg" not in payload:
            raise DeserializationExc(f"Payload has no 'arg': {payload!r}")
        return payload["arg"]


@dataclasses.dataclass(frozen=True)
class DataclassCodec:
    arg_type: type

    def encode(self, arg: Any) -> dict[str, Any]:
        if not isinstance(arg, self.arg_type):
            raise SerializationError(f"Expected a {self.arg_type.__qualname__}, got {type(arg).__qualname__}.")
        data = check_json(dataclasses.asdict(arg), f"The {self.arg_type.__qualname__} argument")
        if self.arg_type(**data) != arg:
            raise SerializationError(f"{self.arg_type.__qualname__} does not round-trip through JSON: {arg!r}")
        return {"arg": data}

    def decode(self, payload: dict[str, Any]) -> Any:
        try:
            return self.arg_type(**payload["arg"])
        except (KeyError, TypeError) as error:
            raise DeserializationExc(
                f"Cannot rebuild {self.arg_type.__qualname__} from {payload!r}: {error}"
            ) from error


@dataclasses.dataclass(frozen=True)
class PickleCodec:
    """Any picklable value. Unpickling runs code: only for queues whose database nobody else can write."""

    def encode(self, arg: Any) -> dict[str, Any]:
        try:
            data = pickle.dumps(arg, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            raise SerializationError(f"The argument cannot be pickled: {error}") from None
        return {"pickle": base64.b64encode(data).decode("ascii")}

    def decode(self, payload: dict[str, Any]) -> Any:
        try:
            return pickle.loads(base64.b64decode(payload["pickle"]))
        except Exception as error:
            raise DeserializationExc(f"Cannot unpickle the argument: {error!r}") from error
