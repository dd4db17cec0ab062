"""Wavix's official OpenAPI spec (vendored beside its MIT licence) as a validator for the sandbox.

Every request the sandbox receives and every response it gives is checked against it, so the sandbox cannot
drift from the real API without a test noticing.
"""

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import cast

from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC_FILE = Path(__file__).parent / "spec" / "wavix-api.yaml"
WAVIX_HOST = "https://api.wavix.com"


@lru_cache(maxsize=1)
def wavix_openapi() -> OpenAPI:
    from openapi_core import Config

    # The spec is Wavix's published file; checking its own validity costs 3 s per process and proves nothing new.
    return OpenAPI.from_file_path(str(SPEC_FILE), config=Config(spec_validator_cls=None))


class SpecRequest:
    """An HTTP request as openapi-core reads it, addressed to Wavix's own host and paths."""

    def __init__(self, method: str, path: str, query: dict | None = None, headers: dict | None = None, body=b""):
        self.host_url = WAVIX_HOST
        self.path = path
        self.method = method.lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(query or {}), header=Headers(headers or {}), cookie=ImmutableMultiDict(), path={}
        )
        self.content_type = "application/json"
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()

    @property
    def full_url_pattern(self) -> str:
        return self.host_url + self.path


class SpecResponse:
    def __init__(self, status_code: int, data: bytes, content_type: str = "application/json"):
        self.status_code = status_code
        self.data = data
        self.content_type = content_type
        self.headers = Headers({"Content-Type": content_type})


@dataclass(frozen=True)
class RequestProblem:
    parameter: str  # the first offending parameter, as Wavix names it in "Missing or invalid parameter <name>"
    details: str


def request_problems(request: SpecRequest) -> RequestProblem | None:
    """Why the spec refuses this request; None when it conforms."""
    try:
        wavix_openapi().validate_request(request)
    except Exception as error:  # openapi-core raises a family of errors; the causes say what is wrong
        return RequestProblem(_parameter_of(error), _describe(error))
    return None


def _parameter_of(error: Exception) -> str:
    """The name of the first parameter a validation error is about."""
    for candidate in (error, error.__cause__):
        name = getattr(candidate, "name", None)
        if name:
            return name
        for schema_error in getattr(candidate, "schema_errors", None) or []:
            if schema_error.validator == "required":
                # jsonschema says "'<name>' is a required property": the quotes are always there.
                return cast(re.Match[str], re.search(r"'([^']+)'", schema_error.message)).group(1)
            if schema_error.absolute_path:
                return str(schema_error.absolute_path[0])
    return "request"


def response_problems(request: SpecRequest, response: SpecResponse) -> str | None:
    try:
        wavix_openapi().validate_response(request, response)
    except Exception as error:
        return _describe(error)
    return None


@lru_cache(maxsize=1)
def _components() -> dict:
    import yaml

    return {"components": yaml.safe_load(SPEC_FILE.read_text())["components"]}


def schema_problems(schema: str, data) -> str | None:
    """Check a payload (a webhook body) against one of the spec's component schemas."""
    from openapi_schema_validator import OAS31Validator

    validator = OAS31Validator({"$ref": f"#/components/schemas/{schema}", **_components()})
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    return " | ".join(f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors)[:2000]


def _describe(error: Exception) -> str:
    parts = [str(error)]
    cause = error.__cause__
    while cause is not None:
        parts.append(str(cause))
        cause = cause.__cause__
    details = getattr(error, "schema_errors", None) or getattr(error.__cause__, "schema_errors", None) or []
    parts += [f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in details]
    return " | ".join(dict.fromkeys(parts))[:2000]
