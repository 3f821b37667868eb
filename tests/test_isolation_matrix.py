"""Isolation matrix derived from the application's own route table.

Every `/api/v1` operation of the app is a test case, so a route added later is covered without
editing this file. The categories come from each route's dependency tree, not from a list:

1. a route depending on `get_authenticated_user` is *protected*: without credentials → 401;
2. a route depending on `get_current_admin` is *admin-only*: a `user` of the team → 403;
3. a route with path parameters is *team-scoped*: another team's admin using this team's real
   ids → 404.

Every refused request must leave every table exactly as it was. Each request is a plausible
one: real ids in the path and a valid body from `VALID_BODIES`. A control category checks that
the victim team's own admin gets a 2xx for the very same request, so a refusal is due to the
caller and not to a malformed request. A route that takes a body without an entry in
`VALID_BODIES` fails, forcing the table to grow with the API.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from _pytest.mark import ParameterSet
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from httpx import AsyncClient, Response

from app.common.settings import Settings
from app.main import API_PREFIX, create_app
from app.routes.deps import get_authenticated_user, get_current_admin
from tests.apps import make_client, remembered_world, running_app
from tests.database import TABLES
from tests.factories import (
    DEFAULT_PASSWORD,
    Account,
    add_member,
    create_dataset,
    create_schema,
    setup_instance,
    signup_team,
    unique_email,
)
from tests.helpers import execute, fetch_all

ImageUrl = Callable[..., str]

PATH_PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")

# What the contract (API.md) says; the route table is checked against it.
PUBLIC_ROUTES = {
    "GET /api/v1/health",
    "GET /api/v1/health/ready",
    "GET /api/v1/setup/check",
    "POST /api/v1/setup/init",
    "POST /api/v1/auth/login",
    "POST /api/v1/auth/token",
    "POST /api/v1/auth/signup",
}
ADMIN_ONLY_OPERATIONS = {
    "users-list",
    "users-create",
    "users-update",
    "users-delete",
    "users-reset-password",
    "team-update",
    "schemas-create",
    "schemas-update",
    "schemas-delete",
    "datasets-create",
    "datasets-update",
    "datasets-delete",
    "webhooks-list",
    "webhooks-create",
    "webhooks-get",
    "webhooks-update",
    "webhooks-replace-secret",
    "webhooks-delete",
    "webhooks-deliveries",
    "image-backfills-create",
}


# --- The route table -------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One (method, path) of the API and what its dependency tree says about access."""

    method: str
    path: str
    operation_id: str
    protected: bool
    admin_only: bool
    takes_body: bool

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def path_parameters(self) -> list[str]:
        return PATH_PARAMETER.findall(self.path)


def dependency_calls(dependant: Dependant) -> Iterator[Any]:
    """Every callable in a dependant's tree of sub-dependencies, depth first."""
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from dependency_calls(dependency)


def takes_body(route: APIRoute) -> bool:
    """Whether the operation reads a body: a declared one, or one documented in `openapi_extra`."""
    return route.body_field is not None or "requestBody" in (route.openapi_extra or {})


def collect_endpoints(application: FastAPI) -> list[Endpoint]:
    """The app's `APIRoute`s under `/api/v1`, one entry per HTTP method.

    Recent FastAPI versions keep included routers nested in `app.routes`;
    `iter_route_contexts` flattens them into each route as mounted: full path, and a dependant
    that includes the dependencies added by the routers it was included through.
    """
    endpoints: list[Endpoint] = []
    for context in iter_route_contexts(application.routes):
        route = context.original_route
        path = context.path or ""
        if not isinstance(route, APIRoute) or not path.startswith(f"{API_PREFIX}/"):
            continue
        calls = set(dependency_calls(context.dependant))
        for method in sorted(context.methods or ()):
            endpoints.append(
                Endpoint(
                    method=method,
                    path=path,
                    operation_id=str(context.operation_id or context.unique_id),
                    protected=get_authenticated_user in calls,
                    admin_only=get_current_admin in calls,
                    takes_body=takes_body(route),
                )
            )
    return endpoints


# Creating the app does not connect to the database: these settings are never used to serve.
ENDPOINTS = collect_endpoints(
    create_app(
        Settings.model_validate(
            {
                "database_url": "postgresql+asyncpg://matrix@localhost:1/route_table_only",
                "secret_key": "route-table-only-secret-key-0123456789abcdef",
            }
        )
    )
)


def cases(predicate: Callable[[Endpoint], bool]) -> list[ParameterSet]:
    """The endpoints matching `predicate`, as test parameters named `METHOD /path`."""
    return [
        pytest.param(endpoint, id=endpoint.label) for endpoint in ENDPOINTS if predicate(endpoint)
    ]


PROTECTED = cases(lambda endpoint: endpoint.protected)
ADMIN_ONLY = cases(lambda endpoint: endpoint.admin_only)
TEAM_SCOPED = cases(lambda endpoint: bool(endpoint.path_parameters))
REFUSABLE = cases(lambda endpoint: endpoint.admin_only or bool(endpoint.path_parameters))


# --- The team under attack and valid requests against it -------------------------------------


@dataclass(frozen=True)
class Victim:
    """The team under attack: its admin and the real ids of its objects.

    `path_ids` maps path parameter names to ids: a user other than the admin, a schema no
    dataset uses, a dataset and one of its rows, so that each request would succeed for the
    team's admin. `spare_image_url` serves an image not yet in any dataset. `member` is an
    activated `user` of the team, `outsider` the admin of another team.
    """

    admin: Account
    path_ids: dict[str, str]
    spare_image_url: str
    member: Account | None = None
    outsider: Account | None = None


@dataclass(frozen=True)
class Multipart:
    """A `multipart/form-data` body: file parts and plain fields."""

    files: dict[str, tuple[str, bytes]]
    data: dict[str, str]


BodyBuilder = Callable[[Victim], Any]

# A valid request body per operation; a new operation with a body needs an entry here.
VALID_BODIES: dict[str, BodyBuilder] = {
    "auth-change-password": lambda victim: {
        "old_password": DEFAULT_PASSWORD,
        "new_password": "another-horse-battery",
    },
    "auth-reset-password": lambda victim: {"new_password": "another-horse-battery"},
    "team-update": lambda victim: {"name": "Taken Over"},
    "users-create": lambda victim: {"email": unique_email("intruder"), "role": "admin"},
    "users-update": lambda victim: {"role": "admin"},
    "schemas-create": lambda victim: {"name": "Intruder schema", "fields": []},
    "schemas-update": lambda victim: {"name": "Renamed schema"},
    "datasets-create": lambda victim: {
        "name": "Intruder dataset",
        "schema_id": victim.path_ids["schema_id"],
    },
    "datasets-update": lambda victim: {"name": "Renamed dataset"},
    "rows-create": lambda victim: {"image_url": victim.spare_image_url},
    "rows-update": lambda victim: {"status": "reviewed"},
    "rows-patch": lambda victim: {"status": "reviewed"},
    "rows-bulk-update-status": lambda victim: {
        "row_ids": [victim.path_ids["row_id"]],
        "status": "reviewed",
    },
    "rows-bulk-delete": lambda victim: [victim.path_ids["row_id"]],
    "rows-queue-claim": lambda victim: {"count": 5},
    "rows-queue-release": lambda victim: {},
    "rows-import": lambda victim: {
        "file_content": f"image_url\n{victim.spare_image_url}\n",
        "column_mapping": {"image_url": "image_url"},
    },
    "rows-import-file": lambda victim: Multipart(
        files={"file": ("rows.csv", f"image_url\n{victim.spare_image_url}\n".encode())},
        data={"column_mapping": '{"image_url": "image_url"}'},
    ),
    "api-keys-create": lambda victim: {"name": "intruder", "scopes": ["read"]},
    "webhooks-create": lambda victim: {
        "url": victim.spare_image_url,
        "events": ["row.deleted"],
    },
    "webhooks-update": lambda victim: {"events": ["row.reviewed"]},
    "imports-create": lambda victim: Multipart(
        files={"file": ("rows.csv", f"image_url\n{victim.spare_image_url}\n".encode())},
        data={"column_mapping": '{"image_url": "image_url"}'},
    ),
}


def request_path(endpoint: Endpoint, path_ids: dict[str, str]) -> str:
    """The endpoint's path with the victim's real ids in place of its parameters."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in path_ids:
            pytest.fail(f"{endpoint.label}: add an id for path parameter {name!r} to the victim")
        return path_ids[name]

    return PATH_PARAMETER.sub(substitute, endpoint.path)


def request_body(endpoint: Endpoint, victim: Victim) -> Any:
    """A valid body for the endpoint, or None when it takes none."""
    if not endpoint.takes_body:
        return None
    if endpoint.operation_id not in VALID_BODIES:
        pytest.fail(
            f"{endpoint.label} takes a request body: add a valid body for operation "
            f"{endpoint.operation_id!r} to VALID_BODIES in {__name__}"
        )
    return VALID_BODIES[endpoint.operation_id](victim)


async def send(
    http: AsyncClient, endpoint: Endpoint, victim: Victim, caller: Account | None
) -> Response:
    """Call the endpoint on the victim's objects as `caller` (None: without any credentials)."""
    http.cookies.clear()
    headers = caller.headers if caller is not None else {}
    path = request_path(endpoint, victim.path_ids)
    body = request_body(endpoint, victim)
    if isinstance(body, Multipart):
        return await http.request(
            endpoint.method, path, files=body.files, data=body.data, headers=headers
        )
    return await http.request(endpoint.method, path, json=body, headers=headers)


def describe(response: Response) -> str:
    """The request and its response, for a failure message that pinpoints the route."""
    request = response.request
    body = request.read().decode(errors="replace") or "(no body)"
    return (
        f"{request.method} {request.url.path} body={body}\n"
        f"→ {response.status_code} {response.text}"
    )


def error_code(response: Response) -> str | None:
    """The `code` of an error body, or None when the body is not one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


async def snapshot(application: FastAPI) -> dict[str, Any]:
    """Every row of every table (as JSON, in one query), to prove a refused request changed
    nothing."""
    tables = ", ".join(
        f"(SELECT json_agg(t ORDER BY t::text) FROM {table} AS t) AS {table}" for table in TABLES
    )
    [everything] = await fetch_all(application, f"SELECT {tables}")
    return everything


async def assert_refused(
    application: FastAPI,
    http: AsyncClient,
    endpoint: Endpoint,
    victim: Victim,
    caller: Account | None,
    status: int,
    code: str,
) -> None:
    """The caller's request is refused with `status`/`code` and leaves the database unchanged."""
    before = await snapshot(application)
    response = await send(http, endpoint, victim, caller)
    assert (response.status_code, error_code(response)) == (status, code), describe(response)
    assert await snapshot(application) == before, f"database changed by\n{describe(response)}"


# --- Fixtures ---------------------------------------------------------------------------------


@pytest.fixture
async def signup_app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    """The app with signup enabled, so that a second team can exist."""
    async with running_app(make_settings(signup_enabled=True)) as application:
        yield application


@pytest.fixture
async def http(signup_app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with make_client(signup_app) as client:
        yield client


async def create_row(http: AsyncClient, admin: Account, dataset_id: str, url: str) -> str:
    """Add a row through the rows API and return its id."""
    response = await http.post(
        f"/api/v1/datasets/{dataset_id}/rows", json={"image_url": url}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    row_id: str = response.json()["id"]
    return row_id


async def submit_import(http: AsyncClient, admin: Account, dataset_id: str, url: str) -> str:
    """Queue a background import (no worker runs it here) and return the job's id."""
    response = await http.post(
        f"/api/v1/datasets/{dataset_id}/imports",
        files={"file": ("rows.csv", f"image_url\n{url}\n".encode())},
        data={"column_mapping": '{"image_url": "image_url"}'},
        headers=admin.headers,
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


@pytest.fixture
async def victim(http: AsyncClient, signup_app: FastAPI, image_url: ImageUrl) -> Victim:
    """A team with an admin, another user, two schemas, a dataset on one of them, a row, a
    queued background import, a finished image backfill, a webhook endpoint and an API key of
    the admin; an activated member; and the admin of another team."""

    async def build() -> Victim:
        admin = await setup_instance(http, team_name="Victim Team")
        target = await add_member(http, admin, "user", activate=False)
        schema = await create_schema(http, admin)
        dataset = await create_dataset(http, admin, (await create_schema(http, admin))["id"])
        row_id = await create_row(http, admin, dataset["id"], image_url())
        job_id = await submit_import(http, admin, dataset["id"], image_url())
        webhook = await http.post(
            "/api/v1/webhooks",
            json={"url": image_url(), "events": ["row.deleted"]},
            headers=admin.headers,
        )
        assert webhook.status_code == 201, webhook.text
        key = await http.post(
            "/api/v1/api-keys", json={"name": "script", "scopes": ["read"]}, headers=admin.headers
        )
        assert key.status_code == 201, key.text
        backfill = await http.post(
            f"/api/v1/datasets/{dataset['id']}/image-backfills", headers=admin.headers
        )
        assert backfill.status_code == 202, backfill.text
        await execute(signup_app, "UPDATE image_backfills SET state = 'done'")
        return Victim(
            admin=admin,
            path_ids={
                "user_id": target.id,
                "schema_id": schema["id"],
                "dataset_id": dataset["id"],
                "row_id": row_id,
                "job_id": job_id,
                "webhook_id": webhook.json()["id"],
                "key_id": key.json()["id"],
                "backfill_id": backfill.json()["id"],
            },
            spare_image_url=image_url(),
            member=await add_member(http, admin, "user"),
            outsider=await signup_team(http, team_name="Outsider Team"),
        )

    return await remembered_world(signup_app, "victim", build)


# --- Sanity checks of the route table against the contract ------------------------------------


def test_public_routes_are_exactly_those_of_the_contract() -> None:
    public = {endpoint.label for endpoint in ENDPOINTS if not endpoint.protected}
    assert public == PUBLIC_ROUTES


def test_admin_only_routes_are_exactly_those_of_the_contract() -> None:
    admin_only = {endpoint.operation_id for endpoint in ENDPOINTS if endpoint.admin_only}
    assert admin_only == ADMIN_ONLY_OPERATIONS


def test_valid_bodies_only_name_protected_operations_with_a_body() -> None:
    with_body = {endpoint.operation_id for endpoint in ENDPOINTS if endpoint.protected}
    with_body &= {endpoint.operation_id for endpoint in ENDPOINTS if endpoint.takes_body}
    assert set(VALID_BODIES) <= with_body, "stale entries in VALID_BODIES"


# --- The matrix -------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", PROTECTED)
async def test_without_credentials_is_401(
    signup_app: FastAPI, http: AsyncClient, victim: Victim, endpoint: Endpoint
) -> None:
    """A protected route called without cookie or bearer token is 401 and changes nothing."""
    await assert_refused(signup_app, http, endpoint, victim, None, 401, "UNAUTHORIZED")


@pytest.mark.parametrize("endpoint", ADMIN_ONLY)
async def test_user_role_on_admin_route_is_403(
    signup_app: FastAPI, http: AsyncClient, victim: Victim, endpoint: Endpoint
) -> None:
    """An activated member with the `user` role of the same team is 403 and changes nothing."""
    await assert_refused(signup_app, http, endpoint, victim, victim.member, 403, "FORBIDDEN")


@pytest.mark.parametrize("endpoint", TEAM_SCOPED)
async def test_other_teams_admin_gets_404(
    signup_app: FastAPI, http: AsyncClient, victim: Victim, endpoint: Endpoint
) -> None:
    """Another team's admin using this team's real ids is 404 and changes nothing."""
    await assert_refused(signup_app, http, endpoint, victim, victim.outsider, 404, "NOT_FOUND")


@pytest.mark.parametrize("endpoint", REFUSABLE)
async def test_control_victims_admin_is_allowed_the_same_request(
    http: AsyncClient, victim: Victim, endpoint: Endpoint
) -> None:
    """The refused requests above are valid ones: the team's own admin gets a 2xx for them."""
    response = await send(http, endpoint, victim, victim.admin)
    assert response.is_success, describe(response)


@pytest.fixture
async def key_victim(http: AsyncClient, signup_app: FastAPI) -> Victim:
    """A team with only its admin: the API-key cases are refused by the authentication itself,
    before any id in the path is looked up, so the ids are random ones."""

    async def build() -> Victim:
        admin = await setup_instance(http, team_name="Key Team")
        names = {name for endpoint in ENDPOINTS for name in endpoint.path_parameters}
        return Victim(
            admin=admin,
            path_ids={name: str(uuid.uuid4()) for name in names},
            spare_image_url="http://127.0.0.1:9/unused.png",
        )

    return await remembered_world(signup_app, "key victim", build)


async def admin_key(
    http: AsyncClient, victim: Victim, scope: str, *, revoked: bool = False
) -> Account:
    """An API key of the victim's admin, as a caller; used once, so that its `last_used_at` is
    not due for an update during the test."""
    response = await http.post(
        "/api/v1/api-keys", json={"name": scope, "scopes": [scope]}, headers=victim.admin.headers
    )
    assert response.status_code == 201, response.text
    key = response.json()
    caller = replace(victim.admin, token=key["key"])
    assert (await http.get("/api/v1/auth/me", headers=caller.headers)).status_code == 200
    if revoked:
        await http.delete(f"/api/v1/api-keys/{key['id']}", headers=victim.admin.headers)
    return caller


@pytest.mark.parametrize("endpoint", PROTECTED)
async def test_revoked_api_key_is_401(
    signup_app: FastAPI, http: AsyncClient, key_victim: Victim, endpoint: Endpoint
) -> None:
    """A revoked key of the team's own admin is refused everywhere and changes nothing."""
    caller = await admin_key(http, key_victim, "admin", revoked=True)
    await assert_refused(signup_app, http, endpoint, key_victim, caller, 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    "endpoint",
    cases(lambda endpoint: endpoint.protected and endpoint.method not in ("GET", "HEAD")),
)
async def test_read_only_api_key_cannot_write(
    signup_app: FastAPI, http: AsyncClient, key_victim: Victim, endpoint: Endpoint
) -> None:
    """A `read` key of the team's own admin is 403 on every write and changes nothing."""
    caller = await admin_key(http, key_victim, "read")
    await assert_refused(signup_app, http, endpoint, key_victim, caller, 403, "FORBIDDEN")


@pytest.mark.parametrize("endpoint", ADMIN_ONLY)
async def test_api_key_without_admin_scope_on_admin_route_is_403(
    signup_app: FastAPI, http: AsyncClient, key_victim: Victim, endpoint: Endpoint
) -> None:
    """A `write` key of the team's own admin is 403 on admin routes and changes nothing."""
    caller = await admin_key(http, key_victim, "write")
    await assert_refused(signup_app, http, endpoint, key_victim, caller, 403, "FORBIDDEN")
