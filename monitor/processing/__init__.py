"""Processing pipelines: per-event work on workers, aggregation on the collector."""

from monitor.processing.protocol import ProcessedEvent, ProcessingPipelineProtocol

__all__ = ["ProcessedEvent", "ProcessingPipelineProtocol"]
