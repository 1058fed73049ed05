"""Events endpoints: pin the seconds around an incident (edge/events.py, broker pins).

``POST /api/events`` creates one (defaults from ``[events]``; the API token, like every write),
``GET /api/events`` lists them with the bytes each pins and the total, ``GET /api/events/{id}``
shows one, ``DELETE /api/events/{id}`` releases its pin.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from broker.base.units import parse_duration_ns
from broker.client import Admin

from .errors import STANDARD_RESPONSES, BadRequest, ErrorBody, NotFound
from .models import TopicStr
from .security import checked_topic, require_token
from .state import State

router = APIRouter(prefix="/api/events", tags=["events"], dependencies=[Depends(require_token)],
                   responses={**STANDARD_RESPONSES, 404: {"model": ErrorBody, "description": "unknown event or topic"}})

EventId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")]


class EventRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field("", max_length=200, description="what happened")
    before: str | None = Field(None, max_length=32, description="window before now (30s); default [events] before")
    after: str | None = Field(None, max_length=32, description="window after now (10s); default [events] after")
    topics: list[TopicStr] | None = Field(None, min_length=1, max_length=64,
                                          description="topics to pin; default [events] topics, else all recorded")


class EventRange(BaseModel):
    topic: str
    partition: int
    first_offset: int
    end_offset: int | None = Field(description="exclusive; null while the after-window records")


class Event(BaseModel):
    id: str
    label: str
    state: Literal["recording", "complete", "shipped"]
    start: str
    end: str
    start_ns: int
    end_ns: int
    created: str
    topics: list[str]
    pinned_bytes: int = Field(description="bytes of the segments holding the event's records")
    records: int
    shipped_records: int
    lost_bytes: int = Field(description="pinned bytes the disk guard's critical level deleted (0 unless disk full)")
    lost: list[list[Any]]
    ranges: list[EventRange]


class EventList(BaseModel):
    events: list[Event]
    pinned_bytes: int = Field(description="all events together, shared segments counted once")
    pinned_deleted_bytes: int


def _duration(text: str | None, default: int, name: str) -> int:
    if text is None:
        return default
    try:
        return parse_duration_ns(text)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"invalid {name} {text!r}: {exc}") from None


@router.post("", response_model=Event, status_code=201, summary="create an event: pin a window of topics")
def create(body: EventRequest, state: State) -> dict[str, Any]:
    from edge.events import EventsConfig, create_event

    defaults = getattr(state.config, "events", None) or EventsConfig.model_validate({})
    topics = [checked_topic(t) for t in body.topics] if body.topics else defaults.topics
    before = _duration(body.before, defaults.before_ns, "before")
    after = _duration(body.after, defaults.after_ns, "after")
    with state.gateway.admin() as admin:
        return create_event(admin, label=body.label, before_ns=before, after_ns=after, topics=topics)


@router.get("", response_model=EventList, summary="events with their state and the bytes they pin")
def list_all(state: State) -> dict[str, Any]:
    from edge.events import list_events

    with state.gateway.admin() as admin:
        return list_events(admin)


def _existing(admin: Admin, event_id: str) -> dict[str, Any]:
    from edge.events import find_event

    event = find_event(admin, event_id)
    if event is None:
        raise NotFound(f"no event with id {event_id!r}")
    return event


@router.get("/{event_id}", response_model=Event, summary="one event")
def show(event_id: EventId, state: State) -> dict[str, Any]:
    with state.gateway.admin() as admin:
        return _existing(admin, event_id)


@router.delete("/{event_id}", response_model=Event, summary="delete an event: its records are no longer pinned")
def delete(event_id: EventId, state: State) -> dict[str, Any]:
    from edge.events import delete_event

    with state.gateway.admin() as admin:
        event = _existing(admin, event_id)
        delete_event(admin, event_id)
        return event
