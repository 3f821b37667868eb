"""Webhooks: a team's endpoints, and the log of every delivery to them."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field as PydanticField
from pydantic import computed_field
from sqlalchemy import CheckConstraint, Column, DateTime, Index, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.common.pagination import Page
from app.common.validation import Description, ImageUrl
from app.models.base import RequestModel, id_field, timestamp_field, user_ref_field

WebhookEvent = Literal["import.finished", "row.reviewed", "row.deleted", "dataset.deleted"]
WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = (
    "import.finished",
    "row.reviewed",
    "row.deleted",
    "dataset.deleted",
)
DeliveryState = Literal["pending", "delivered", "failed"]
MAX_URL_LENGTH = 2048

EventList = Annotated[
    list[WebhookEvent],
    PydanticField(
        min_length=1, max_length=len(WEBHOOK_EVENTS), json_schema_extra={"uniqueItems": True}
    ),
]


class WebhookBase(SQLModel):
    """The leading columns of an endpoint's public shape, in the order the API shows them."""

    id: uuid.UUID
    url: str = Field(sa_type=String(MAX_URL_LENGTH))
    events: list[WebhookEvent] = Field(sa_column=Column(JSONB, nullable=False))
    description: str | None = Field(sa_type=String(500))
    enabled: bool
    created_at: datetime = Field(sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(sa_type=DateTime(timezone=True))


class WebhookEndpoint(WebhookBase, table=True):
    """Where a team's events are sent; `secret` signs them (kept, since signing needs it)."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("webhook_endpoints_team_idx", "team_id", "created_at"),)

    id: uuid.UUID = id_field()
    team_id: uuid.UUID = Field(foreign_key="teams.id", ondelete="CASCADE", nullable=False)
    events: list[WebhookEvent] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False)
    )
    description: str | None = Field(default=None, sa_type=String(500))
    enabled: bool = True
    secret: str = Field(sa_type=String(100))
    created_by: uuid.UUID | None = user_ref_field()
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()


class WebhookDeliveryBase(SQLModel):
    """The leading columns of a delivery's public shape."""

    id: uuid.UUID
    event: str = Field(sa_type=String(40))
    state: DeliveryState = Field(sa_type=String(16))
    attempts: int
    last_status: int | None = Field(description="HTTP status of the last answer, if any")
    last_error: str | None = Field(
        sa_type=String(500), description="Why the last attempt failed, if it did"
    )
    created_at: datetime = Field(sa_type=DateTime(timezone=True))
    last_attempt_at: datetime | None = Field(sa_type=DateTime(timezone=True))
    delivered_at: datetime | None = Field(sa_type=DateTime(timezone=True))


class WebhookDelivery(WebhookDeliveryBase, table=True):
    """One event sent to one endpoint; `body` is signed and sent as is on every attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(
            "state IN ('pending', 'delivered', 'failed')", name="webhook_deliveries_state_check"
        ),
        Index("webhook_deliveries_endpoint_idx", "endpoint_id", "created_at", "id"),
    )

    id: uuid.UUID = id_field()
    endpoint_id: uuid.UUID = Field(
        foreign_key="webhook_endpoints.id", ondelete="CASCADE", nullable=False
    )
    body: str = Field(sa_column=Column(Text, nullable=False))
    state: DeliveryState = Field(default="pending", sa_type=String(16))
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = Field(default=None, sa_type=String(500))
    created_at: datetime = timestamp_field()
    last_attempt_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    delivered_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class WebhookCreate(RequestModel):
    """A new endpoint: where to send which events."""

    url: ImageUrl
    events: EventList
    description: Description | None = None
    enabled: bool = True


class WebhookUpdate(RequestModel):
    """Changes to an endpoint; fields left out keep their value."""

    url: ImageUrl | None = None
    events: EventList | None = None
    description: Description | None = None
    enabled: bool | None = None


class WebhookPublic(WebhookBase):
    """An endpoint as the API shows it (never with its secret)."""


class WebhookSecret(SQLModel):
    """The signing secret, shown when an endpoint is created or its secret replaced, never
    again."""

    secret: str = Field(description="`whsec_` and the key in base64 (Standard Webhooks)")


class WebhookCreated(WebhookPublic, WebhookSecret):
    """A new endpoint, with its signing secret (shown this once)."""


class WebhookPage(Page[WebhookPublic]):
    """A page of the team's endpoints, newest first."""


def webhook_message_id(delivery_id: uuid.UUID) -> str:
    """The `webhook-id` of a delivery: the same on every attempt, so receivers can drop
    repeats."""
    return f"msg_{delivery_id.hex}"


class WebhookDeliveryPublic(WebhookDeliveryBase):
    """A delivery as the API shows it."""

    @computed_field(description="The `webhook-id` header sent with every attempt")  # type: ignore[prop-decorator]
    @property
    def message_id(self) -> str:
        """The `webhook-id` of this delivery."""
        return webhook_message_id(self.id)


class WebhookDeliveryPage(Page[WebhookDeliveryPublic]):
    """A page of an endpoint's deliveries, newest first."""
