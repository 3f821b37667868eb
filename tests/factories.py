"""Test data built through the public API, as a client would build it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from httpx import AsyncClient

DEFAULT_PASSWORD = "correct-horse-battery"

ImageUrl = Callable[..., str]
"""The `image_url` fixture: serves an image on the loopback server and returns its URL."""


def unique_email(prefix: str = "user") -> str:
    """An email no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


@dataclass
class Account:
    """A logged-in user: its id, team, credentials and bearer headers."""

    id: str
    team_id: str
    email: str
    password: str
    role: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def bearer_token(client: AsyncClient, email: str, password: str) -> str:
    """Log in through the OAuth2 token endpoint and return the bearer token."""
    response = await client.post(
        "/api/v1/auth/token", data={"username": email, "password": password}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def log_in(client: AsyncClient, user: dict[str, Any], password: str) -> Account:
    """The account of `user` (a user body from the API), logged in with a fresh bearer token.

    Cookies left by the call that created the user are dropped, so tests choose explicitly
    between cookie and bearer authentication.
    """
    client.cookies.clear()
    return Account(
        id=user["id"],
        team_id=user["team_id"],
        email=user["email"],
        password=password,
        role=user["role"],
        token=await bearer_token(client, user["email"], password),
    )


async def setup_instance(client: AsyncClient, **overrides: Any) -> Account:
    """Run first-run setup and return the first admin, logged in."""
    body = {"email": unique_email("admin"), "password": DEFAULT_PASSWORD, **overrides}
    response = await client.post("/api/v1/setup/init", json=body)
    assert response.status_code == 201, response.text
    result = response.json()
    user = {"id": result["user_id"], "team_id": result["team_id"], "email": body["email"]}
    return await log_in(client, {**user, "role": "admin"}, body["password"])


async def signup_team(client: AsyncClient, team_name: str = "Other Team") -> Account:
    """Create another team through signup (the app must have SIGNUP_ENABLED)."""
    body = {"email": unique_email("owner"), "password": DEFAULT_PASSWORD, "team_name": team_name}
    response = await client.post("/api/v1/auth/signup", json=body)
    assert response.status_code == 201, response.text
    return await log_in(client, response.json()["user"], body["password"])


async def add_member(
    client: AsyncClient, admin: Account, role: str = "user", *, activate: bool = True
) -> Account:
    """Have `admin` create a user; with `activate`, the user also completes the first-login reset."""
    response = await client.post(
        "/api/v1/users", json={"email": unique_email(role), "role": role}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    created = response.json()
    member = await log_in(client, created["user"], created["temp_password"])
    if not activate:
        return member
    reset = await client.post(
        "/api/v1/auth/reset-password",
        json={"new_password": DEFAULT_PASSWORD},
        headers=member.headers,
    )
    assert reset.status_code == 200, reset.text
    return await log_in(client, created["user"], DEFAULT_PASSWORD)


def field(name: str, type_: str, position: int, **extra: Any) -> dict[str, Any]:
    """A field definition as a client sends it."""
    return {"name": name, "type": type_, "position": position, **extra}


SAMPLE_FIELDS = [
    field("label", "enum", 0, required=True, config={"options": ["cat", "dog"]}),
    field("confidence", "numeric", 1, config={"min": 0, "max": 1}),
    field("note", "text", 2, config={"max_length": 50}),
    field("verified", "boolean", 3, default_value="false"),
]


async def create_schema(
    client: AsyncClient,
    admin: Account,
    *,
    name: str | None = None,
    fields: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Create a schema through the API and return its body."""
    body = {
        "name": name or f"Schema {uuid.uuid4().hex[:8]}",
        "fields": SAMPLE_FIELDS if fields is None else fields,
    }
    response = await client.post("/api/v1/schemas", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def create_dataset(
    client: AsyncClient, admin: Account, schema_id: str, *, name: str | None = None
) -> dict[str, Any]:
    """Create a dataset through the API and return its body."""
    body = {"name": name or f"Dataset {uuid.uuid4().hex[:8]}", "schema_id": schema_id}
    response = await client.post("/api/v1/datasets", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


class Catalog:
    """An admin, a member, a schema with one field of each type, and a dataset on it."""

    def __init__(
        self, admin: Account, member: Account, schema: dict[str, Any], dataset: dict[str, Any]
    ):
        self.admin, self.member, self.schema, self.dataset = admin, member, schema, dataset
        self.ids = {f["name"]: f["id"] for f in schema["fields"]}

    @property
    def rows_path(self) -> str:
        return f"/api/v1/datasets/{self.dataset['id']}/rows"

    def data(self, **values: Any) -> dict[str, Any]:
        return {self.ids[name]: value for name, value in values.items()}


async def create_row(
    client: AsyncClient, catalog: Catalog, url: str, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Create a row as the catalog's member and return its body."""
    response = await client.post(
        catalog.rows_path,
        json={"image_url": url, "data": data or {}},
        headers=catalog.member.headers,
    )
    assert response.status_code == 201, response.text
    row: dict[str, Any] = response.json()
    return row


async def remove_field(client: AsyncClient, catalog: Catalog, name: str) -> None:
    """Update the catalog's schema (as its admin) with every field but `name`."""
    keep = ("id", "name", "type", "required", "default_value", "position", "config")
    fields = [
        {key: field[key] for key in keep}
        for field in catalog.schema["fields"]
        if field["name"] != name
    ]
    response = await client.put(
        f"/api/v1/schemas/{catalog.schema['id']}",
        json={"fields": fields},
        headers=catalog.admin.headers,
    )
    assert response.status_code == 200, response.text


async def dataset_counts(client: AsyncClient, catalog: Catalog) -> tuple[int, int]:
    """The dataset's `(rows_count, pending_count)` as the API reports them."""
    response = await client.get(
        f"/api/v1/datasets/{catalog.dataset['id']}", headers=catalog.admin.headers
    )
    body = response.json()
    return body["rows_count"], body["pending_count"]
