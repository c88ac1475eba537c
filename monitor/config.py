"""Reading the YAML configuration into validated, typed parameter objects.

Validation happens before any work starts, on every rank alike, so that a bad
file ends the whole job at once with the same one-line error everywhere:
``monitor.yaml:12: data_retrieval_layer.sourse: unknown key (did you mean 'source'?)``.

Classes named in the file (the data event handler, the processing pipeline)
bring their own pydantic ``Parameters`` model; their YAML section is checked
against it, so a handler or pipeline owns the meaning of its keys.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from monitor.endpoints import Endpoint
from monitor.keys import CurveKeys
from monitor.errors import ConfigurationError
from monitor.outputs import OutputParameters

__all__ = [
    "HANDLERS",
    "PIPELINES",
    "MonitorConfig",
    "RunParameters",
    "load_config",
    "resolve_class",
]

HANDLERS: dict[str, str] = {
    "Jungfrau1MZmqDataEventHandler": "handlers.jungfrau1m_zmq:Jungfrau1MZmqDataEventHandler",
    "DectrisStream2ZmqDataEventHandler": "handlers.dectris_stream2:DectrisStream2ZmqDataEventHandler",
    "NxmxFileDataEventHandler": "handlers.nxmx_files:NxmxFileDataEventHandler",
    "CxiHitFileDataEventHandler": "handlers.cxi_files:CxiHitFileDataEventHandler",
    "SlsReceiverFileDataEventHandler": "handlers.slsreceiver_files:SlsReceiverFileDataEventHandler",
}
"""Data event handlers a YAML file may name, and where they live."""

PIPELINES: dict[str, str] = {
    "FrameStatisticsPipeline": "monitor.processing.statistics:FrameStatisticsPipeline",
    "CrystallographyPipeline": "monitor.processing.crystallography:CrystallographyPipeline",
}
"""Processing pipelines a YAML file may name, and where they live."""


class RunParameters(BaseModel):
    """When a run ends and how it reports (the ``monitor`` section)."""

    model_config = ConfigDict(extra="forbid")

    max_events: int | None = Field(default=None, ge=1)
    """Stop after this many events have been collected (None: no limit)."""
    idle_timeout_s: float | None = Field(default=None, gt=0)
    """Stop when no event has arrived for this long (None: wait for ever)."""
    no_data_warning_s: float = Field(default=15.0, gt=0)
    """Warn once when nothing has arrived this long after the start (the simulator alone takes a
    few seconds to start on a busy machine: a warning every run teaches users to ignore it)."""
    status_interval_s: float = Field(default=1.0, gt=0)
    """Seconds between live status lines on the collector."""
    checkpoint_interval_s: float = Field(default=2.0, gt=0)
    """Seconds between checkpoints of the summary (written aside, then renamed), so that a run
    killed by its launcher still leaves its figures."""
    drain_timeout_s: float = Field(default=5.0, gt=0)
    """After the end of an acquisition, how long the frames it announced may take to arrive once
    nothing else comes in (then the run ends, the missing ones counted)."""
    stop_timeout_s: float = Field(default=5.0, gt=0)
    """How long a stop waits: for the source's end message, for a worker that has gone silent
    (frozen or dead: its frames are counted as lost with it), for every worker's last word."""
    control_url: Endpoint | None = None
    """Where the collector answers ``python -m monitor.control`` (live parameter changes); none if
    unset.  Bind 127.0.0.1 unless the network is trusted: whoever reaches it can change thresholds."""
    control_keys: CurveKeys | None = None
    """CURVE for ``control_url``: this server's secret key file and the folder of the client keys
    it accepts (``python -m monitor.keys``); a client without one gets nothing."""
    silent_worker_warning_s: float = Field(default=3.0, gt=0)
    """Warn (naming the rank) when a worker has said nothing this long while the others work."""
    prepare_timeout_s: float = Field(default=20.0, gt=0)
    """How long a stop waits for a worker that has not said it is ready (a first run after
    installing compiles its kernels for seconds, saying nothing meanwhile) before it is given up as
    lost.  Below SLURM's default KillWait (30 s), so that a cancelled job still writes its summary."""


class _TopLevel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_retrieval_layer: dict[str, Any]
    processing_layer: dict[str, Any]
    monitor: RunParameters = RunParameters()
    outputs: OutputParameters = OutputParameters()


@dataclass(frozen=True)
class MonitorConfig:
    """The whole validated configuration."""

    path: Path
    handler_class: type
    handler_parameters: Any
    pipeline_class: type
    pipeline_parameters: Any
    run: RunParameters
    outputs: OutputParameters
    document: dict[str, Any]
    """The whole file as plain data, for those who ask a running monitor for its parameters."""


def resolve_class(name: str, registry: dict[str, str]) -> type:
    """Import the class a registry name or a ``package.module:Class`` path names.

    The path form lets a site plug in its own handler or pipeline without
    editing this package.  Imports are deferred until a class is named.
    """
    module_name, _, class_name = registry.get(name, name).partition(":")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as error:
        raise LookupError(f"cannot import {name!r} ({error})") from None
    if not hasattr(found, "Parameters"):
        raise LookupError(f"{name!r} has no Parameters model, so its YAML section cannot be checked")
    return found


def load_config(path: Path | str) -> MonitorConfig:
    """Read and validate ``path``; raise ConfigurationError with file:line and key."""
    path = Path(path)
    document = _read_yaml(path)
    located = _Locator(path, document)
    top = located.validate(_TopLevel, document, ())
    handler_class = located.named_class(
        top.data_retrieval_layer, ("data_retrieval_layer",), "data_event_handler", HANDLERS
    )
    pipeline_class = located.named_class(
        top.processing_layer, ("processing_layer",), "pipeline", PIPELINES
    )
    return MonitorConfig(
        path=path,
        handler_class=handler_class,
        handler_parameters=located.validate(
            handler_class.Parameters, top.data_retrieval_layer, ("data_retrieval_layer",)
        ),
        pipeline_class=pipeline_class,
        pipeline_parameters=located.validate(
            pipeline_class.Parameters, top.processing_layer, ("processing_layer",)
        ),
        run=top.monitor,
        outputs=top.outputs,
        document=_plain(document),
    )


def _read_yaml(path: Path) -> CommentedMap:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigurationError(f"{path}: cannot read configuration ({error.strerror})") from None
    try:
        document = YAML(typ="rt").load(text)
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigurationError(f"{path}{line}: not valid YAML ({problem})") from None
    if not isinstance(document, CommentedMap):
        raise ConfigurationError(f"{path}:1: the configuration must be a mapping of sections")
    return document


class _Locator:
    """Validates parts of the document and names the YAML line of any error."""

    def __init__(self, path: Path, document: CommentedMap) -> None:
        self._path = path
        self._document = document

    def validate(self, model: type[BaseModel], data: Any, prefix: tuple[Any, ...]) -> Any:
        try:
            return model.model_validate(_plain(data))
        except pydantic.ValidationError as error:
            first = error.errors()[0]
            raise self._error(prefix, tuple(first["loc"]), first, model) from None

    def named_class(
        self, section: dict[str, Any], prefix: tuple[str, ...], key: str, registry: dict[str, str]
    ) -> type:
        name = section.get(key)
        where = prefix + (key,)
        if name is None:
            raise ConfigurationError(f"{self._where(where)}: {'.'.join(where)}: missing key")
        if name not in registry and ":" not in str(name):
            hint = _did_you_mean(str(name), registry)
            known = ", ".join(sorted(registry))
            raise ConfigurationError(
                f"{self._where(where)}: {'.'.join(where)}: unknown class {name!r}{hint} "
                f"(known: {known}; or give package.module:Class)"
            )
        try:
            return resolve_class(name, registry)
        except LookupError as error:
            raise ConfigurationError(f"{self._where(where)}: {'.'.join(where)}: {error}") from None

    def _error(
        self, prefix: tuple[Any, ...], loc: tuple[Any, ...], error: dict[str, Any], model: type[BaseModel]
    ) -> ConfigurationError:
        """One line for pydantic's first complaint; ``loc`` is relative to ``model``."""
        full = prefix + loc
        dotted = ".".join(str(part) for part in full)
        if error["type"] == "extra_forbidden":
            message = f"unknown key{_did_you_mean(str(loc[-1]), _fields_at(model, loc))}"
        elif error["type"] == "missing":
            message = "missing key"
        else:
            message = f"{error['msg'].removeprefix('Value error, ')} (got {error.get('input')!r})"
        return ConfigurationError(f"{self._where(full)}: {dotted}: {message}")

    def _where(self, loc: tuple[Any, ...]) -> str:
        """``file:line`` of the deepest node of ``loc`` present in the document."""
        node: Any = self._document
        line = 0
        for part in loc:
            if isinstance(node, CommentedMap) and part in node:
                line = node.lc.key(part)[0]
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
                line = node.lc.item(part)[0]
                node = node[part]
            else:
                break
        return f"{self._path}:{line + 1}"


def _plain(data: Any) -> Any:
    """ruamel's round-trip containers as plain dicts and lists (pydantic validates those strictly)."""
    if isinstance(data, dict):
        return {key: _plain(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_plain(value) for value in data]
    return data


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model that holds the last key of ``loc``."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nested is None:
            return []
        model = nested
    return list(model.model_fields)


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
