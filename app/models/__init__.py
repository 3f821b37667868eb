"""SQLModel classes; importing this package registers every table in the metadata."""

from app.models.api_key import ApiKey
from app.models.dataset import Dataset
from app.models.image_backfill import ImageBackfill
from app.models.import_job import ImportJob, ImportJobError, ImportJobPart
from app.models.row import DatasetRow
from app.models.row_history import RowHistory
from app.models.schema import Schema, SchemaField
from app.models.team import Team
from app.models.thumbnail import RowThumbnail
from app.models.user import LoginFailure, User
from app.models.webhook import WebhookDelivery, WebhookEndpoint

__all__ = [
    "ApiKey",
    "Dataset",
    "DatasetRow",
    "ImageBackfill",
    "ImportJob",
    "ImportJobError",
    "ImportJobPart",
    "LoginFailure",
    "RowHistory",
    "RowThumbnail",
    "Schema",
    "SchemaField",
    "Team",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
]
