"""Data event handlers: where events come from and how each one becomes data."""

from handlers.protocol import DataEventHandlerProtocol, Event, EventKind

__all__ = ["DataEventHandlerProtocol", "Event", "EventKind"]
