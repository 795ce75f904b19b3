"""schemathesis fuzzes the served sandbox from the spec: every reply must be one it allows.

Bounded and deterministic: a few examples per operation (`EXAMPLES`), derandomized, no
example database, only the fuzzing phase, against a sandbox on a loopback port. The
test seeds the ids the spec cannot know (a finished generation, a bought asset, an
upload, file registrations) into the generated requests, and fills in the fields the
documentation requires when an example leaves them out, so the examples reach the
success paths as well as the refusals. Checks: no 5xx, documented (or prose-implied,
see `_spec`) statuses, declared content types, and success bodies that match their
schemas. Schema-valid requests may still be refused: the spec marks almost nothing
required (see `_spec`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.config import SchemathesisConfig

from getty_ai_async.sandbox import Sandbox, run_in_thread

from ._spec import SPEC_PATH, allowed_statuses

EXAMPLES = 6
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(32) + b"\xff\xd9"

_CONFIG = SchemathesisConfig.from_dict(
    {
        "phases": {
            "examples": {"enabled": False},
            "coverage": {"enabled": False},
            "stateful": {"enabled": False},
        }
    }
)
schema = schemathesis.openapi.from_path(SPEC_PATH, config=_CONFIG)

# Fields the documentation requires (the spec does not mark them), by operation path.
_REQUIRED_BY_PROSE: dict[str, dict[str, Any]] = {
    "/v3/ai/image-generations": {"prompt": "a red fox"},
    "/v3/ai/image-generations/refine": {"mask_url": "<mask>", "reference_asset_id": "12345"},
    "/v3/ai/image-generations/extend": {"reference_asset_id": "12345", "left_percentage": 0.2},
    "/v3/ai/image-generations/background-removal": {"reference_asset_id": "12345"},
    "/v3/ai/image-generations/object-removal": {
        "mask_url": "<mask>",
        "reference_asset_id": "12345",
    },
    "/v3/ai/image-generations/influence-color-by-image": {
        "reference_file_registration_id": "<reference>",
        "prompt": "autumn",
        "noise_level": 0.5,
    },
    "/v3/ai/image-generations/influence-composition-by-image": {
        "reference_file_registration_id": "<reference>",
        "prompt": "a city",
        "influence_level": 0.5,
    },
    "/beta/ai/image-generations/background-generations": {
        "reference_file_registration_id": "<product>",
        "prompt": "a beach",
    },
    "/v3/ai/image-generations/{generationRequestId}/images/{index}/download": {"size_name": "1k"},
    "/v3/ai/redownloads": {"generated_asset_id": "<asset>", "size_name": "1k"},
    "/beta/ai/file-registrations": {"url": "<mask>", "rights_claimed": True},
}
_REFERENCES = ("reference_asset_id", "reference_generation", "reference_file_registration_id")


@dataclass(frozen=True)
class Seeded:
    """A served sandbox and the ids the test made in it."""

    base_url: str
    headers: dict[str, str]
    generation: str
    asset: str
    mask: str
    reference: str
    product: str

    def value(self, placeholder: Any) -> Any:
        names = {"<mask>": self.mask, "<asset>": self.asset}
        names |= {"<reference>": self.reference, "<product>": self.product}
        return names.get(placeholder, placeholder) if isinstance(placeholder, str) else placeholder


@pytest.fixture(scope="module")
def seeded() -> Iterator[Seeded]:
    sandbox = Sandbox(pending_seconds=0, download_pending_seconds=0, pending_limit=None)
    with run_in_thread(sandbox) as served, httpx.Client(base_url=served.base_url) as client:
        token = client.post(
            served.token_url,
            data={"grant_type": "client_credentials", "client_id": "k", "client_secret": "s"},
        ).json()["access_token"]
        client.headers.update({"Api-Key": "k", "Authorization": f"Bearer {token}"})
        generation = client.post("/v3/ai/image-generations", json={"prompt": "a fox"}).json()
        generation_id = generation["generation_request_id"]
        image = f"/v3/ai/image-generations/{generation_id}/images"
        client.put(f"{image}/0/download", json={"size_name": "1k"})
        asset = client.put(f"{image}/1/download", json={"size_name": "4k"}).json()
        mask = f"{served.base_url}/v3/search/by-image/uploads/mask.jpg"
        client.put(mask, content=JPEG, headers={"Content-Type": "image/jpeg"})
        registrations = [
            client.post(
                "/beta/ai/file-registrations",
                json={"url": mask, "rights_claimed": True, "category": category},
            ).json()["id"]
            for category in ("ImageReference", "CustomerProduct")
        ]
        yield Seeded(
            base_url=served.base_url,
            headers=dict(client.headers.items()) | {"Authorization": f"Bearer {token}"},
            generation=generation_id,
            asset=asset["generated_asset_id"],
            mask=mask,
            reference=registrations[0],
            product=registrations[1],
        )


def seed(case: Any, ids: Seeded) -> None:
    """Put the test's real ids into `case`, and fill in what the docs require if absent."""
    params = case.path_parameters or {}
    if "generationRequestId" in params:
        params["generationRequestId"] = ids.generation
    if isinstance(params.get("index"), int) and not isinstance(params["index"], bool):
        params["index"] = abs(params["index"]) % 5  # images 0-3 exist, 4 does not
    if "fileRegistrationId" in params:
        params["fileRegistrationId"] = ids.reference
    body = case.body
    if not isinstance(body, dict):
        return
    reference = body.get("reference_generation")
    if isinstance(reference, dict):
        reference["generation_request_id"] = ids.generation
    for name, placeholder in (
        ("mask_url", "<mask>"),
        ("url", "<mask>"),
        ("generated_asset_id", "<asset>"),
    ):
        if isinstance(body.get(name), str):
            body[name] = ids.value(placeholder)
    if isinstance(body.get("reference_file_registration_id"), str):
        product = "background-generations" in case.path
        body["reference_file_registration_id"] = ids.product if product else ids.reference
    required = _REQUIRED_BY_PROSE.get(case.path, {})
    for name, value in required.items():
        if name in _REFERENCES and any(given in body for given in _REFERENCES):
            continue  # the example chose its own reference
        body.setdefault(name, ids.value(value))


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_served_sandbox_answers_as_the_spec_allows(case: Any, seeded: Seeded) -> None:
    seed(case, seeded)

    response = case.call(base_url=seeded.base_url, headers=seeded.headers, timeout=10)

    assert response.status_code in allowed_statuses(case.method, case.path), (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    )
    case.validate_response(
        response,
        checks=[
            checks.not_a_server_error,
            checks.content_type_conformance,
            checks.response_schema_conformance,
        ],
    )
