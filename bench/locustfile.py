"""Locust users of the AITrace load run (`uv run python -m bench.load` starts everything).

`bench.load` writes the team it set up to a JSON file named by `BENCH_LOAD_TEAM` (accounts,
datasets, the schema's field ids, the image server, import size and interval). Then:

- `ApiUser`s log in with a bearer token, then pick without pause from the weighted mix of the
  former hand-written driver: reads (~55 %: datasets, a dataset, first pages of rows with a random
  sort and status filter, the review queue, schemas, `/auth/me`), row writes (~40 %: create with a
  new image that the server downloads from the loopback image server, PUT data, PUT status,
  DELETE, bulk status; only on rows the user created) and logins with the right password (~3 %).
- One `Importer` posts a CSV of new images every `import_interval` seconds and checks that every
  row was imported.

No request of the mix can legitimately fail, so locust's failure count is the error count.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import random
import uuid
from pathlib import Path
from typing import Any

import gevent  # type: ignore[import-untyped]
from locust import FastHttpUser, constant, constant_pacing, events, task
from locust.exception import StopUser

from bench.scenarios import LABELS, import_body

API = "/api/v1"
ROW_SORTS = ("created_at", "-created_at", "updated_at", "-updated_at")
ROW = "/datasets/[id]/rows/[row_id]"
BULK_MAX = 20
_account_numbers = itertools.count()


@functools.cache
def team() -> dict[str, Any]:
    """The team `bench.load` set up (the JSON file named by `BENCH_LOAD_TEAM`)."""
    path = os.environ.get("BENCH_LOAD_TEAM")
    if not path:
        raise RuntimeError("BENCH_LOAD_TEAM is not set: run `uv run python -m bench.load`")
    loaded: dict[str, Any] = json.loads(Path(path).read_text())
    return loaded


def refresh_loop_clock(**_: Any) -> None:
    """Bring gevent's cached loop time up to date before locust arms its `--run-time` timer.

    On a busy host locust's start-up (this file imports httpx and psutil) can leave the loop's
    cached clock seconds behind, and a timer armed on it fires that much early: without this, a
    15 s run stopped after 1 s.
    """
    gevent.get_hub().loop.update_now()


events.init.add_listener(refresh_loop_clock)  # type: ignore[no-untyped-call]


def new_image_urls(count: int) -> list[str]:
    """URLs of `count` images never asked for before (the image server generates them)."""
    return [f"{team()['images']}/img/{uuid.uuid4().hex}.png" for _ in range(count)]


class TeamUser(FastHttpUser):
    """A user of the team with a bearer token."""

    abstract = True

    def on_start(self) -> None:
        """Log in as the next account of the team (round robin) through `/auth/token`."""
        accounts = team()["accounts"]
        self.email = accounts[next(_account_numbers) % len(accounts)]
        form = {"username": self.email, "password": team()["password"]}
        self.headers: dict[str, str] = {}
        answer = self.call("POST", "/auth/token", "/auth/token", data=form)
        if answer is None:
            raise StopUser()
        self.headers = {"Authorization": f"Bearer {answer['access_token']}"}

    def call(self, method: str, path: str, name: str, **kwargs: Any) -> Any:
        """Send an authenticated request, named by its route; the JSON answer, or None if failed."""
        with self.client.request(
            method, API + path, name=API + name, headers=self.headers, catch_response=True, **kwargs
        ) as response:
            ok = response.status_code is not None and 200 <= response.status_code < 300
            if not ok:
                response.failure(f"{response.status_code}: {(response.text or '')[:200]}")
                return None
            return response.json() if response.text else {}


class ApiUser(TeamUser):
    """Reads, row writes and logins at the weights of the former driver (doubled to integers)."""

    wait_time = constant(0)

    def on_start(self) -> None:
        """Log in; start with no rows of its own."""
        super().on_start()
        self.rng = random.Random()
        self.own_rows: list[tuple[str, str]] = []

    def dataset(self) -> str:
        """A random dataset id of the team."""
        return str(self.rng.choice(team()["datasets"]))

    def row_data(self) -> dict[str, Any]:
        """A complete `data` map (so the row is `reviewed`)."""
        fields = team()["fields"]
        return {
            fields["approved"]: self.rng.random() < 0.5,
            fields["caption"]: f"caption {self.rng.randrange(1_000_000)}",
            fields["score"]: round(self.rng.random(), 3),
            fields["label"]: self.rng.choice(LABELS),
        }

    @task(16)
    def read_datasets(self) -> None:
        self.call("GET", f"/datasets?page={self.rng.choice((1, 1, 2))}", "/datasets")

    @task(16)
    def read_dataset(self) -> None:
        self.call("GET", f"/datasets/{self.dataset()}", "/datasets/[id]")

    @task(40)
    def read_rows(self) -> None:
        query = f"sort={self.rng.choice(ROW_SORTS)}&page_size={self.rng.choice((20, 50))}"
        status = self.rng.choice((None, "pending", "reviewed"))
        query += f"&status={status}" if status else ""
        self.call("GET", f"/datasets/{self.dataset()}/rows?{query}", "/datasets/[id]/rows")

    @task(16)
    def read_queue(self) -> None:
        self.call("GET", f"/datasets/{self.dataset()}/rows/queue", "/datasets/[id]/rows/queue")

    @task(8)
    def read_schemas(self) -> None:
        self.call("GET", "/schemas", "/schemas")

    @task(8)
    def read_me(self) -> None:
        self.call("GET", "/auth/me", "/auth/me")

    @task(32)
    def create_row(self) -> None:
        """POST a row with a new image; remember it for later edits."""
        dataset_id = self.dataset()
        body = {"image_url": new_image_urls(1)[0], "data": self.row_data()}
        row = self.call("POST", f"/datasets/{dataset_id}/rows", "/datasets/[id]/rows", json=body)
        if row is not None:
            self.own_rows.append((dataset_id, row["id"]))

    def own_row(self) -> tuple[str, str] | None:
        """One of the user's rows; with none yet, it creates one instead and returns None."""
        if not self.own_rows:
            self.create_row()
            return None
        return self.rng.choice(self.own_rows)

    @task(16)
    def update_row_data(self) -> None:
        if own := self.own_row():
            self.call(
                "PUT", "/datasets/{}/rows/{}".format(*own), ROW, json={"data": self.row_data()}
            )

    @task(12)
    def update_row_status(self) -> None:
        if own := self.own_row():
            status = {"status": self.rng.choice(("pending", "reviewed"))}
            self.call("PUT", "/datasets/{}/rows/{}".format(*own), ROW, json=status)

    @task(8)
    def delete_row(self) -> None:
        if own := self.own_row():
            path = "/datasets/{}/rows/{}".format(*own)
            if self.call("DELETE", path, ROW) is not None:
                self.own_rows.remove(own)

    @task(6)
    def bulk_update_status(self) -> None:
        """POST bulk/update-status for up to 20 own rows of one dataset."""
        if own := self.own_row():
            ids = [row for dataset, row in self.own_rows if dataset == own[0]][-BULK_MAX:]
            body = {"row_ids": ids, "status": self.rng.choice(("pending", "reviewed"))}
            path = "/datasets/{}/rows/bulk/update-status"
            self.call("POST", path.format(own[0]), path.format("[id]"), json=body)

    @task(3)
    def login_cookie(self) -> None:
        """POST /auth/login with the right password; the cookie is dropped (bearer stays)."""
        body = {"email": self.email, "password": team()["password"]}
        self.call("POST", "/auth/login", "/auth/login", json=body)
        self.client.cookiejar.clear()

    @task(3)
    def login_token(self) -> None:
        form = {"username": self.email, "password": team()["password"]}
        self.call("POST", "/auth/token", "/auth/token", data=form)


class Importer(TeamUser):
    """One user importing a CSV of new images into the datasets in turn, at a fixed pace."""

    fixed_count = 1

    def on_start(self) -> None:
        """Log in; the first import goes to the first dataset."""
        super().on_start()
        self.imports = 0

    def wait_time(self) -> float:
        """Keep `import_interval` seconds from one import's start to the next."""
        return constant_pacing(team()["import_interval"])(self)

    @task
    def import_csv(self) -> None:
        """Import `import_rows` new images; a row not imported is a failure."""
        rows, datasets = team()["import_rows"], team()["datasets"]
        dataset_id = datasets[self.imports % len(datasets)]
        self.imports += 1
        body = import_body(new_image_urls(rows), team()["fields"])
        answer = self.call(
            "POST", f"/datasets/{dataset_id}/rows/import", "/datasets/[id]/rows/import", json=body
        )
        if answer is not None and answer["imported"] != rows:
            self.environment.events.request.fire(
                request_type="CHECK",
                name="import: every row imported",
                response_time=0,
                response_length=0,
                exception=AssertionError(f"imported {answer['imported']} of {rows}"),
            )
