"""Data sources: one piece of data in an event, with its calibration."""

from sources.protocol import DataSourceProtocol

__all__ = ["DataSourceProtocol"]
