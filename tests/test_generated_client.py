"""A client generated from /api/openapi.json with openapi-python-client drives the real API.

This proves the schema is good for SDK generation: every generated module imports, clean
operation ids become module names, errors come back as a typed `ErrorResponse`, the OAuth2
password flow yields a bearer token the generated `AuthenticatedClient` uses, and a CSV file is
uploaded through the generated multipart operation.
"""

from __future__ import annotations

import importlib
import io
import json
import pkgutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport

from app.main import create_app
from tests.apps import BASE_URL
from tests.factories import DEFAULT_PASSWORD, unique_email

GENERATOR = str(Path(sys.executable).with_name("openapi-python-client"))
PACKAGE = "aitrace_sdk"


CLIENT_CONFIG = """post_hooks: []
content_type_overrides:
  image/webp: application/octet-stream
"""
"""The generator's options: thumbnails (WebP) are binary bodies, which it knows by the
`application/octet-stream` name only."""


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """Generate the SDK from the app's schema (warnings fail) and import it."""
    workdir = tmp_path_factory.mktemp("sdk")
    schema_path = workdir / "openapi.json"
    from app.common.settings import Settings

    settings = Settings.model_validate(
        {"database_url": "postgresql+asyncpg://u@localhost/db", "secret_key": "k" * 40}
    )
    schema_path.write_text(json.dumps(create_app(settings).openapi()))
    config = workdir / "config.yaml"
    config.write_text(CLIENT_CONFIG)
    subprocess.run(
        [
            GENERATOR,
            "generate",
            "--path",
            str(schema_path),
            "--output-path",
            str(workdir / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
            "--fail-on-warning",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    sys.path.insert(0, str(workdir))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(workdir))
        for name in [module for module in sys.modules if module.startswith(PACKAGE)]:
            del sys.modules[name]


def _api(name: str) -> Any:
    """An operation module of the generated SDK, e.g. `_api("rows.rows_create")`."""
    return importlib.import_module(f"{PACKAGE}.api.{name}")


def _model(name: str) -> Any:
    return getattr(importlib.import_module(f"{PACKAGE}.models"), name)


def _generated_module_names(package: ModuleType) -> list[str]:
    """Every module and subpackage of the generated SDK (subpackages are imported to walk them)."""
    failures: list[str] = []
    names = [
        info.name
        for info in pkgutil.walk_packages(
            package.__path__, prefix=f"{package.__name__}.", onerror=failures.append
        )
    ]
    assert not failures, f"generated packages that fail to import: {failures}"
    return names


def test_every_generated_module_imports(sdk: ModuleType) -> None:
    names = _generated_module_names(sdk)
    assert {f"{PACKAGE}.api.rows.rows_import", f"{PACKAGE}.api.rows.rows_import_file"} <= set(names)
    for name in names:
        importlib.import_module(name)


def _in_process(app: FastAPI) -> dict[str, Any]:
    """`httpx_args` that make a generated client talk to the app in-process."""
    return {"transport": ASGITransport(app=app, raise_app_exceptions=False)}


async def test_generated_client_logs_in_and_manages_rows(
    sdk: ModuleType, app: FastAPI, image_url: Any
) -> None:
    anonymous = sdk.Client(base_url=BASE_URL, httpx_args=_in_process(app))
    email = unique_email("sdk")
    setup = await _api("setup.setup_init").asyncio(
        client=anonymous, body=_model("SetupInit")(email=email, password=DEFAULT_PASSWORD)
    )
    assert isinstance(setup, _model("SetupResult"))
    token = await _api("auth.auth_token").asyncio(
        client=anonymous,
        body=_model("BodyAuthToken")(username=email, password=DEFAULT_PASSWORD),
    )
    assert isinstance(token, _model("AccessToken")) and token.token_type == "bearer"
    client = sdk.AuthenticatedClient(
        base_url=BASE_URL, token=token.access_token, httpx_args=_in_process(app)
    )

    me = await _api("auth.auth_me").asyncio(client=client)
    assert me.email == email

    field = _model("FieldCreate")(name="label", type_=_model("FieldCreateType")("text"), position=0)
    schema = await _api("schemas.schemas_create").asyncio(
        client=client, body=_model("SchemaCreate")(name="SDK schema", fields=[field])
    )
    assert isinstance(schema, _model("SchemaPublic")) and schema.fields[0].name == "label"

    dataset = await _api("datasets.datasets_create").asyncio(
        client=client, body=_model("DatasetCreate")(name="SDK dataset", schema_id=schema.id)
    )
    assert isinstance(dataset, _model("DatasetPublic"))

    data = _model("RowCreateDataType0").from_dict({str(schema.fields[0].id): "from the SDK"})
    row = await _api("rows.rows_create").asyncio(
        dataset_id=dataset.id,
        client=client,
        body=_model("RowCreate")(image_url=image_url(), data=data),
    )
    assert isinstance(row, _model("RowPublic")), row
    assert row.data.additional_properties == {str(schema.fields[0].id): "from the SDK"}

    page = await _api("rows.rows_list").asyncio(dataset_id=dataset.id, client=client)
    assert isinstance(page, _model("RowPage"))
    assert page.total == 1 and page.items[0].id == row.id

    await _import_through_sdk(sdk, client, dataset.id, str(schema.fields[0].id), image_url)

    duplicate = await _api("datasets.datasets_create").asyncio(
        client=client, body=_model("DatasetCreate")(name="sdk DATASET", schema_id=schema.id)
    )
    assert isinstance(duplicate, _model("ErrorResponse")) and duplicate.code == "DUPLICATE"

    stranger = sdk.Client(base_url=BASE_URL, httpx_args=_in_process(app))
    unauthorized = await _api("datasets.datasets_list").asyncio_detailed(client=stranger)
    assert unauthorized.status_code == 401
    assert isinstance(unauthorized.parsed, _model("ErrorResponse"))


async def _import_through_sdk(
    sdk: ModuleType, client: Any, dataset_id: Any, field_id: str, image_url: Callable[[], str]
) -> None:
    """Upload a CSV file with the multipart operation, then inline CSV with the JSON one."""
    urls = [image_url(), image_url()]
    csv_file = f"url,label\r\n{urls[0]},first\r\n{urls[1]},second\r\n".encode()
    mapping = {"image_url": "url", field_id: "label"}
    uploaded = await _api("rows.rows_import_file").asyncio(
        dataset_id=dataset_id,
        client=client,
        body=_model("RowsImportFileBody")(
            file=sdk.types.File(
                payload=io.BytesIO(csv_file), file_name="rows.csv", mime_type="text/csv"
            ),
            column_mapping=json.dumps(mapping),
            mark_all_pending=True,
        ),
    )
    assert isinstance(uploaded, _model("ImportResult")), uploaded
    assert (uploaded.imported, uploaded.skipped_invalid, uploaded.errors) == (2, 0, [])

    pending = await _api("rows.rows_list").asyncio(
        dataset_id=dataset_id, client=client, status=_model("RowsListStatusType0")("pending")
    )
    stored = {item.image_url: item.data.additional_properties for item in pending.items}
    assert stored == {urls[0]: {field_id: "first"}, urls[1]: {field_id: "second"}}

    inline = await _api("rows.rows_import").asyncio(
        dataset_id=dataset_id,
        client=client,
        body=_model("RowsImportImportRequest").from_dict(
            {
                "file_content": f"url\n{image_url()}\n{urls[0]}\n",
                "column_mapping": {"image_url": "url"},
            }
        ),
    )
    assert isinstance(inline, _model("ImportResult")), inline
    assert (inline.imported, inline.skipped_duplicates) == (1, 1)
