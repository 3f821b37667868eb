"""The team the load and fault runs work in: an admin, members, a schema and datasets."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from bench.api import API, PASSWORD, TIMEOUT, Admin, Api, expect, field_ids
from bench.seed import insert_rows
from bench.service import Service
from bench.traffic import Account

TEMP_PASSWORD = "temporary-password-1"


@dataclass(frozen=True)
class Team:
    """Everything set up through the API before the clients start."""

    admin: Admin
    accounts: list[Account]
    schema_id: str
    fields: dict[str, str]
    datasets: list[str]


def token_for(client: httpx.Client, email: str, password: str) -> str:
    """A bearer token from `POST /auth/token`."""
    form = {"username": email, "password": password}
    token: str = expect(client.post(f"{API}/auth/token", data=form))["access_token"]
    return token


def create_member(api: Api, email: str) -> Account:
    """Create a `user` with a temporary password, then do its first-login password reset."""
    body = {"email": email, "role": "user", "password": TEMP_PASSWORD}
    expect(api.post_json("/users", body), 201)
    with httpx.Client(base_url=str(api.client.base_url), timeout=TIMEOUT) as client:
        temporary = token_for(client, email, TEMP_PASSWORD)
        headers = {"Authorization": f"Bearer {temporary}"}
        reset = {"new_password": PASSWORD}
        expect(client.post(f"{API}/auth/reset-password", json=reset, headers=headers))
        client.cookies.clear()
        return Account(email, PASSWORD, token_for(client, email, PASSWORD))


def build_team(api: Api, service: Service, *, members: int, datasets: int, seed_rows: int) -> Team:
    """Set the instance up: admin, `members` members, a schema, `datasets` seeded datasets.

    Args:
        api: A client of the fresh service (it keeps the admin's token).
        service: The service, for the database socket used to seed rows.
        members: Number of `user` accounts besides the admin.
        datasets: Number of datasets.
        seed_rows: Rows inserted straight in SQL into each dataset, so reads have pages to read.
    """
    admin = api.setup_admin()
    accounts = [Account(admin.email, PASSWORD, admin.token)]
    accounts += [create_member(api, f"member-{index}@example.com") for index in range(members)]
    schema = api.create_schema("Load schema")
    fields = field_ids(schema)
    dataset_ids = [
        api.create_dataset(f"Load dataset {index}", schema["id"])["id"] for index in range(datasets)
    ]
    for dataset_id in dataset_ids:
        if seed_rows:
            insert_rows(service.socket_dir(), dataset_id, fields, admin.user_id, seed_rows)
    return Team(admin, accounts, schema["id"], fields, dataset_ids)
