"""A thin synchronous client of the AITrace HTTP API, as the benchmark uses it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

API = "/api/v1"
PASSWORD = "bench-password-123"
TEMP_PASSWORD = "temporary-password-1"
TIMEOUT = httpx.Timeout(30.0, read=600.0)


class ApiError(RuntimeError):
    """The service answered with an unexpected status."""

    def __init__(self, response: httpx.Response, expected: int) -> None:
        request = response.request
        body = response.text[:300] if not response.is_stream_consumed else ""
        super().__init__(
            f"{request.method} {request.url.path} returned {response.status_code} "
            f"(expected {expected}): {body}"
        )
        self.status_code = response.status_code


def expect(response: httpx.Response, status: int = 200) -> Any:
    """The JSON body of `response`, or `ApiError` when its status is not `status`."""
    if response.status_code != status:
        raise ApiError(response, status)
    return response.json() if response.content else None


@dataclass(frozen=True)
class Admin:
    """The first admin of the instance."""

    user_id: str
    email: str
    token: str


BENCH_FIELDS: list[dict[str, Any]] = [
    {"name": "approved", "type": "boolean", "position": 0, "required": True},
    {"name": "caption", "type": "text", "position": 1, "config": {"max_length": 200}},
    {"name": "score", "type": "numeric", "position": 2, "config": {"min": 0, "max": 1}},
    {
        "name": "label",
        "type": "enum",
        "position": 3,
        "required": True,
        "config": {"options": ["cat", "dog", "bird"]},
    },
]


class Api:
    """Calls the service over one keep-alive connection.

    Args:
        base_url: Root URL of the service.
    """

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=TIMEOUT)

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def setup_admin(self) -> Admin:
        """Run first-run setup, then log in for a bearer token used by every later call."""
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        body = {"email": email, "password": PASSWORD, "team_name": "Bench"}
        created = expect(self.client.post(f"{API}/setup/init", json=body), 201)
        self.client.cookies.clear()
        form = {"username": email, "password": PASSWORD}
        token = expect(self.client.post(f"{API}/auth/token", data=form))["access_token"]
        self.client.headers["Authorization"] = f"Bearer {token}"
        return Admin(user_id=created["user_id"], email=email, token=token)

    def create_schema(self, name: str) -> dict[str, Any]:
        """Create a schema with the benchmark's boolean, text, numeric and enum fields."""
        body = {"name": name, "fields": BENCH_FIELDS}
        schema: dict[str, Any] = expect(self.client.post(f"{API}/schemas", json=body), 201)
        return schema

    def create_dataset(self, name: str, schema_id: str) -> dict[str, Any]:
        """Create a dataset using `schema_id`."""
        body = {"name": name, "schema_id": schema_id}
        dataset: dict[str, Any] = expect(self.client.post(f"{API}/datasets", json=body), 201)
        return dataset

    def create_member(self, email: str) -> None:
        """Create a `user` with a temporary password and do its first-login reset to `PASSWORD`."""
        body = {"email": email, "role": "user", "password": TEMP_PASSWORD}
        expect(self.post_json("/users", body), 201)
        with httpx.Client(base_url=self.client.base_url, timeout=TIMEOUT) as client:
            form = {"username": email, "password": TEMP_PASSWORD}
            token = expect(client.post(f"{API}/auth/token", data=form))["access_token"]
            reset = {"new_password": PASSWORD}
            headers = {"Authorization": f"Bearer {token}"}
            expect(client.post(f"{API}/auth/reset-password", json=reset, headers=headers))

    def get(self, path: str) -> httpx.Response:
        """GET `path` (relative to `/api/v1`)."""
        return self.client.get(f"{API}{path}")

    def post_json(self, path: str, body: Any) -> httpx.Response:
        """POST `body` as JSON to `path` (relative to `/api/v1`)."""
        return self.client.post(f"{API}{path}", json=body)


def field_ids(schema: dict[str, Any]) -> dict[str, str]:
    """Field name → field id of `schema`."""
    return {field["name"]: field["id"] for field in schema["fields"]}
