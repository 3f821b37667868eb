"""Fuzzing every operation of the app's own OpenAPI schema with schemathesis.

Each operation gets a bounded, reproducible set of generated requests (schemathesis's examples,
coverage and fuzzing phases; valid and invalid data) sent as an authenticated admin, with
`Authorization: Bearer`, to an application whose lifespan runs on schemathesis's ASGI transport.
Every response must pass `not_a_server_error`, `status_code_conformance` and
`response_schema_conformance`. `FUZZ_MAX_EXAMPLES` (default 60 per operation) and `FUZZ_SEED`
(random generation with that seed instead of the fixed derandomized one) allow deeper runs.

Path parameters, and the ids inside request bodies, are mostly replaced by ids of real objects of
the admin's team (a schema, a dataset on it, rows in that dataset, a member, a spare schema),
created afresh for each operation, so that generated requests get past the 404s and reach the
handlers' logic. Emails in bodies are then valid ones, an import's CSV gets the header its
column mapping names, and its JSON Lines a valid first line.

The fuzzed application cannot reach any other host (see `OfflineFetcher`): image URLs on
non-public addresses are refused, every host name resolves to 127.0.0.1, a public address
written literally in a URL is refused as unreachable, and the fetcher has no usable HTTP client.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from app.common.database import asyncpg_dsn, create_engine
from app.common.exceptions import ValidationException
from app.common.settings import Settings
from app.main import create_app
from app.services.image_fetch import (
    FetchedImage,
    ImageFetcher,
    IPAddress,
    check_url,
    is_public_address,
)
from tests.database import empty_tables
from tests.factories import DEFAULT_PASSWORD, SAMPLE_FIELDS, unique_email

SECRET = "fuzzing-secret-key-that-is-long-enough-0123456789"
SEED = int(os.environ.get("FUZZ_SEED", "20260115"))
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "60"))
"""Generated requests per operation in the fuzzing phase (examples and coverage come on top)."""

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
ID_PARAMETERS = ("dataset_id", "schema_id", "row_id", "user_id")


def fuzz_settings(database_url: str) -> Settings:
    """Settings of the fuzzed app: non-public image addresses are refused; signup is open."""
    return Settings.model_validate(
        {
            "database_url": database_url,
            "secret_key": SECRET,
            "allow_private_image_urls": False,
            "signup_enabled": True,
        }
    )


def _openapi_document() -> dict[str, Any]:
    """The app's own OpenAPI document (building the app opens no connection)."""
    placeholder = "postgresql+asyncpg://fuzz@localhost:5432/fuzz"
    document: dict[str, Any] = create_app(fuzz_settings(placeholder)).openapi()
    return document


schema = schemathesis.openapi.from_dict(
    _openapi_document(),
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": "FUZZ_SEED" not in os.environ,
                "database": "none",
                "with-security-parameters": False,
            },
        }
    ),
)


@dataclass
class Targets:
    """Real objects of the fuzzing admin's team, whose ids generated requests may use."""

    schema_id: str
    fields: dict[str, str]
    dataset_id: str
    row_ids: list[str]
    user_id: str
    spare_schema_id: str

    @property
    def field_ids(self) -> list[str]:
        """The ids of the schema's fields, in position order."""
        return list(self.fields.values())

    def ids(self, parameter: str) -> list[str]:
        """The real values of a path parameter (a schema in use and a spare one, both rows)."""
        return {
            "dataset_id": [self.dataset_id],
            "schema_id": [self.schema_id, self.spare_schema_id],
            "row_id": self.row_ids,
            "user_id": [self.user_id],
        }[parameter]


@dataclass
class Fuzzing:
    """The running app, the admin's bearer headers and the current operation's targets."""

    app: FastAPI
    client: asgi.ASGIClient
    headers: dict[str, str]
    targets: Targets | None = None


_state: Fuzzing | None = None
"""Read by the generation hooks, which run while the current test draws its examples."""


def _current_targets() -> Targets:
    assert _state is not None and _state.targets is not None, "fuzzing state not set up"
    return _state.targets


async def _refusing_resolver(host: str, port: int) -> list[IPAddress]:
    """Resolve every host name to loopback, which the fetcher refuses before connecting."""
    return [ipaddress.ip_address("127.0.0.1")]


class _NoNetwork:
    """Stands in for the fetcher's HTTP client: any use fails the request instead of sending."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the fuzzed app tried to use its HTTP client ({name})")


class OfflineFetcher(ImageFetcher):
    """The real fetcher (URL checks, address checks) with no way to reach any host.

    Host names resolve to loopback, which the fetcher itself refuses as not public. A URL naming
    a public address literally is not resolved at all, so it is answered here as unreachable.
    Nothing is left for the HTTP client, which cannot send anything anyway.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            cast(Any, _NoNetwork()),
            max_bytes=settings.image_max_bytes,
            timeout=settings.image_fetch_timeout,
            allow_private=False,
            resolver=_refusing_resolver,
        )

    async def fetch(self, url: str, *, keep: bytearray | None = None) -> FetchedImage:
        """Refuse a public address literal; leave everything else to the real fetcher."""
        try:
            address = ipaddress.ip_address(check_url(url).host)
        except Exception:  # not a valid URL, or a host name: the real fetcher decides
            address = None
        if address is not None and is_public_address(address):
            raise ValidationException.for_field("image_url", "could not connect to the server")
        return await super().fetch(url, keep=keep)


async def _insert_rows(database_url: str, dataset_id: str, data: dict[str, Any]) -> list[str]:
    """Store two rows straight in the database (no image can be downloaded while fuzzing)."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        row_ids = [uuid.uuid4(), uuid.uuid4()]
        for row_id, status in zip(row_ids, ("reviewed", "pending"), strict=True):
            await connection.execute(
                """INSERT INTO dataset_rows (id, dataset_id, image_url, image_hash, data, status,
                                             created_at, updated_at)
                   VALUES ($1, $2, $3, md5($4), $5::jsonb, $6, now(), now())""",
                row_id,
                uuid.UUID(dataset_id),
                f"https://images.example/{row_id}.png",
                str(row_id),
                json.dumps(data),
                status,
            )
    finally:
        await connection.close()
    return [str(row_id) for row_id in row_ids]


async def _empty_tables(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await empty_tables(engine)
    finally:
        await engine.dispose()


def _expect(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def fuzzing(database_url: str) -> Iterator[Fuzzing]:
    """The fuzzed app with its lifespan running, set up, and an admin's bearer token.

    The tables are emptied afterwards, as the `app` fixture does for the other tests.
    """
    global _state
    app_settings = fuzz_settings(database_url)
    application = create_app(app_settings)
    # Entering the client runs the lifespan on schemathesis's event loop, which then serves
    # every request of the module, so the engine's connections stay on one loop.
    with asgi.get_client(cast(Any, application)) as client:  # its ASGI types are narrower
        client.trust_env = False
        try:
            application.state.image_fetcher = OfflineFetcher(app_settings)
            served = _expect(client.get("/api/openapi.json"), 200)
            assert served == schema.raw_schema, "the fuzzed document is not the served one"
            email = unique_email("fuzz-admin")
            _expect(
                client.post(
                    "/api/v1/setup/init", json={"email": email, "password": DEFAULT_PASSWORD}
                ),
                201,
            )
            client.cookies.clear()
            token = _expect(
                client.post(
                    "/api/v1/auth/token", data={"username": email, "password": DEFAULT_PASSWORD}
                ),
                200,
            )["access_token"]
            _state = Fuzzing(application, client, {"Authorization": f"Bearer {token}"})
            yield _state
        finally:
            _state = None
            asgi.shutdown_lifespans()
            asyncio.run(_empty_tables(database_url))


@pytest.fixture
def targets(fuzzing: Fuzzing, database_url: str) -> Iterator[Targets]:
    """Fresh objects for one operation's requests: a schema, a dataset on it with two rows
    (reviewed and pending), a member, and a spare schema no dataset uses."""
    client, headers = fuzzing.client, fuzzing.headers

    def create(path: str, body: dict[str, Any]) -> dict[str, Any]:
        return _expect(client.post(f"/api/v1/{path}", json=body, headers=headers), 201)

    suffix = uuid.uuid4().hex[:8]
    created = create("schemas", {"name": f"Fuzz schema {suffix}", "fields": SAMPLE_FIELDS})
    spare = create("schemas", {"name": f"Spare schema {suffix}", "fields": SAMPLE_FIELDS})
    dataset = create("datasets", {"name": f"Fuzz dataset {suffix}", "schema_id": created["id"]})
    fields = {item["name"]: item["id"] for item in created["fields"]}
    data = {fields["label"]: "cat", fields["confidence"]: 0.5, fields["verified"]: True}
    row_ids = asyncio.run(_insert_rows(database_url, dataset["id"], data))
    member = create("users", {"email": unique_email("fuzz"), "role": "user"})
    fuzzing.targets = Targets(
        schema_id=created["id"],
        fields=fields,
        dataset_id=dataset["id"],
        row_ids=row_ids,
        user_id=member["user"]["id"],
        spare_schema_id=spare["id"],
    )
    yield fuzzing.targets
    fuzzing.targets = None


@schema.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    """Replace each id in the path, independently, by a real one most of the time."""
    names = [name for name in ID_PARAMETERS if name in (path_parameters or {})]
    if path_parameters is None or not names:
        return st.just(path_parameters)
    found = _current_targets()
    # The generated value a quarter of the time, else one of the real ones.
    choices = [st.sampled_from([path_parameters[name], *found.ids(name) * 3]) for name in names]
    return st.tuples(*choices).map(lambda values: {**path_parameters, **dict(zip(names, values))})


EMAILS = st.from_regex(r"[a-z0-9]{1,12}@[a-z]{1,10}\.(com|org|io)", fullmatch=True)
EMAIL_BODIES = ("setup-init", "auth-login", "auth-signup", "users-create")
CSV_NAMES = ("image", "label", "confidence", "note", "verified")
ROW_BODIES = ("rows-create", "rows-update", "rows-patch")
"""Operations whose body carries a row's `data`: keyed by field ids, or names in any case."""


def _valid_row_data(fields: dict[str, str]) -> st.SearchStrategy[dict[str, Any]]:
    """Values that the sample fields accept, some of them left out."""
    return st.fixed_dictionaries(
        {},
        optional={
            fields["label"]: st.sampled_from(["cat", "dog", ""]),
            fields["confidence"]: st.one_of(st.floats(0, 1), st.integers(0, 1), st.none()),
            fields["note"]: st.text(max_size=50),
            fields["verified"]: st.booleans(),
        },
    )


def _csv_with_header(content: Any) -> Any:
    """Generated CSV content behind a header naming the columns the real mapping uses."""
    header = ",".join(CSV_NAMES) + "\r\n"
    sample = "https://images.example/fuzz.png,cat,0.5,note,yes\r\n"
    if isinstance(content, bytes):
        return (header + sample).encode() + content
    if isinstance(content, str):
        return header + sample + content
    return content


def _jsonl_with_sample(content: Any, fields: dict[str, str]) -> Any:
    """Generated JSON Lines content after a valid line keyed by field names and ids."""
    line = {
        "image_url": "https://images.example/fuzz.png",
        "data": {"label": "cat", fields["confidence"]: 0.5, "VERIFIED": True},
        "status": "reviewed",
    }
    sample = json.dumps(line) + "\n"
    if isinstance(content, bytes):
        return sample.encode() + content
    if isinstance(content, str):
        return sample + content
    return content


def _import_body(body: dict[str, Any], found: Targets) -> None:
    """Give a generated import body content that fits its format (and the mapping CSV needs)."""
    part = "file_content" if "file_content" in body else "file" if "file" in body else None
    if part is None:
        return
    if body.get("format") == "jsonl":
        body[part] = _jsonl_with_sample(body[part], found.fields)
        body.pop("column_mapping", None)
        return
    mapping = dict(zip(["image_url", *found.field_ids], CSV_NAMES))
    body[part] = _csv_with_header(body[part])
    body["column_mapping"] = mapping if part == "file_content" else json.dumps(mapping)


def _real_body(operation_id: str, body: Any) -> st.SearchStrategy[Any]:
    """Variants of a generated body whose ids (and emails) are real, where it carries any."""
    found = _current_targets()
    body = copy.deepcopy(body)
    if operation_id == "rows-bulk-delete" and isinstance(body, list):
        return st.just(found.row_ids[: len(body)] or body)
    if not isinstance(body, dict):
        return st.just(body)
    if operation_id in EMAIL_BODIES and "email" in body:
        return EMAILS.map(lambda email: {**body, "email": email})
    if operation_id == "datasets-create" and "schema_id" in body:
        body["schema_id"] = found.schema_id
    elif operation_id == "schemas-create" and "copy_from_schema_id" in body:
        body["copy_from_schema_id"] = found.schema_id
    elif operation_id in ("rows-bulk-delete", "rows-bulk-update-status"):
        if isinstance(body.get("row_ids"), list):
            body["row_ids"] = found.row_ids[: len(body["row_ids"])]
    elif operation_id in ROW_BODIES and isinstance(body.get("data"), dict):
        rekeyed = {**body, "data": dict(zip(found.field_ids, body["data"].values()))}
        valid = _valid_row_data(found.fields).map(lambda data: {**body, "data": data})
        names = {field_id: name.upper() for name, field_id in found.fields.items()}
        by_name = valid.map(
            lambda valid_body: {
                **valid_body,
                "data": {names[key]: value for key, value in valid_body["data"].items()},
            }
        )
        return st.one_of(st.just(rekeyed), valid, by_name)
    elif operation_id == "schemas-update" and isinstance(body.get("fields"), list):
        for item, field_id in zip(body["fields"], found.field_ids):
            if isinstance(item, dict):
                item["id"] = field_id
    elif operation_id in ("rows-import", "rows-import-file"):
        _import_body(body, found)
    return st.just(body)


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    """Most of the time, use real ids (and valid emails) in the body where it has any."""
    operation = context.operation
    operation_id = operation.definition.raw.get("operationId", "") if operation else ""
    use_real = st.sampled_from([False, True, True, True])
    return use_real.flatmap(lambda real: _real_body(operation_id, body) if real else st.just(body))


def call_and_validate(case: schemathesis.Case[Any], fuzzing: Fuzzing) -> Any:
    """Send `case` as the admin, through the module's client, and run `CHECKS` on the answer.

    One client serves every request (schemathesis would build one per request), without the
    cookies earlier answers set, so each request is authenticated by its bearer token alone. The
    client does not trust the environment (`trust_env`), which spared `requests` a scan of the
    environment for proxy settings per request (~0.5 ms).
    """
    fuzzing.client.cookies.clear()
    return case.call_and_validate(session=fuzzing.client, headers=fuzzing.headers, checks=CHECKS)


@schema.parametrize()
@settings(
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ]
)
def test_api_conforms_to_its_schema(
    case: schemathesis.Case[Any], fuzzing: Fuzzing, targets: Targets
) -> None:
    call_and_validate(case, fuzzing)


@dataclass(frozen=True)
class Finding:
    """A request that fuzzing or review once showed failing, and what it must get now."""

    operation_id: str
    body: Callable[[Targets], Any]
    status: int
    says: str = ""
    media_type: str = "application/json"


def _numeric_field(**extra: Any) -> dict[str, Any]:
    return {"name": "Huge", "fields": [{"name": "n", "type": "numeric", "position": 0, **extra}]}


FINDINGS = {
    # An integer over Python's 4300-digit conversion limit raised ValueError: 500.
    "numeric default_value over the int() digit limit": Finding(
        "schemas-create", lambda _: _numeric_field(default_value="9" * 5000), 400
    ),
    "numeric config bound over the int() digit limit": Finding(
        "schemas-create", lambda _: _numeric_field(config={"min": "-" + "9" * 5000}), 400
    ),
    # The same ValueError leaked into the import's row messages.
    "CSV numeric cell over the int() digit limit": Finding(
        "rows-import",
        lambda found: {
            "file_content": "image,confidence\r\nhttps://images.example/a.png," + "9" * 5000,
            "column_mapping": {"image_url": "image", found.fields["confidence"]: "confidence"},
        },
        200,
        says="Row 2: Field 'confidence': must be a finite number",
    ),
    # JSON may escape half a surrogate pair; echoed in an error, such text could not be
    # encoded: 500. Typed strings refused it already, free-form objects did not.
    "unpaired surrogate in a row's data key": Finding(
        "rows-update", lambda _: {"data": {"\ud800": 1}}, 400, says="valid Unicode"
    ),
    "unpaired surrogate in a field's config key": Finding(
        "schemas-create",
        lambda _: {
            "name": "S",
            "fields": [{"name": "n", "type": "text", "position": 0, "config": {"\udfff": 1}}],
        },
        400,
        says="valid Unicode",
    ),
    "unpaired surrogate in a multipart column mapping": Finding(
        "rows-import-file",
        # Escaped in the JSON text of the form field, as a client would send it.
        lambda _: {"file": b"image\r\n", "column_mapping": '{"image_url": "im\\ud800"}'},
        400,
        media_type="multipart/form-data",
    ),
    # `BodyLimitMiddleware` answers 413 on every route; only the row routes documented it.
    "body over the size limit": Finding(
        "rows-bulk-update-status",
        lambda found: {"row_ids": found.row_ids, "status": "x" * (17 * 1024 * 1024)},
        413,
    ),
}


@pytest.mark.parametrize("name", sorted(FINDINGS))
def test_finding_stays_fixed(name: str, fuzzing: Fuzzing, targets: Targets) -> None:
    finding = FINDINGS[name]
    operation = schema.find_operation_by_id(finding.operation_id)
    path_parameters = {
        parameter: targets.ids(parameter)[0]
        for parameter in ID_PARAMETERS
        if f"{{{parameter}}}" in operation.path
    }
    case = operation.Case(
        path_parameters=path_parameters,
        body=finding.body(targets),
        media_type=finding.media_type,
    )
    response = call_and_validate(case, fuzzing)
    assert response.status_code == finding.status, response.text
    assert finding.says in response.text
