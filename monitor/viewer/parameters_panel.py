"""The viewer's panel of live parameters: the values in force, a field per key, and Apply.

It speaks to the collector's control endpoint like ``python -m monitor.control``
(JSON, CURVE when given keys); what the monitor refuses is shown with its reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6 import QtWidgets
from ruamel.yaml import YAML

from monitor.control import request

__all__ = ["ParametersPanel"]

REQUEST_TIMEOUT_S = 2.0
"""The panel waits this long for an answer (the GUI thread waits with it)."""


def _flatten(parameters: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"peakfinder8": {"adc_threshold": 0.3}}`` -> ``{"peakfinder8.adc_threshold": 0.3}``."""
    flat: dict[str, Any] = {}
    for key, value in parameters.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class ParametersPanel(QtWidgets.QWidget):
    """Shows the live parameter set and sends the fields a user changed."""

    def __init__(self, url: str, *, client_key: Path | None = None, server_key: Path | None = None) -> None:
        super().__init__()
        self._url = url
        self._keys = {"client_key": client_key, "server_key": server_key}
        self._yaml = YAML(typ="safe", pure=True)
        self._shown: dict[str, str] = {}
        self.fields: dict[str, QtWidgets.QLineEdit] = {}
        self._form = QtWidgets.QFormLayout()
        self.state = QtWidgets.QLabel("not connected")
        self.state.setWordWrap(True)
        apply = QtWidgets.QPushButton("Apply")
        apply.clicked.connect(self.apply)
        refresh = QtWidgets.QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(refresh)
        buttons.addWidget(apply)
        column = QtWidgets.QVBoxLayout(self)
        column.addWidget(QtWidgets.QLabel(f"<b>Live parameters</b> ({url})"))
        column.addLayout(self._form)
        column.addLayout(buttons)
        column.addWidget(self.state)
        column.addStretch(1)

    def refresh(self) -> None:
        """Ask for the set in force and show it, a field per key."""
        answer = self._ask({"get": True})
        if answer is None:
            return
        self._shown = {key: self._text(value) for key, value in _flatten(answer["parameters"]).items()}
        for key, text in self._shown.items():
            if key not in self.fields:
                self.fields[key] = QtWidgets.QLineEdit()
                self._form.addRow(key, self.fields[key])
            self.fields[key].setText(text)
        self.state.setText(f"parameter set {answer['parameter_set']} in force")

    def apply(self) -> None:
        """Send the fields whose text differs from the set in force; show the outcome."""
        changes = {key: self._yaml.load(field.text()) for key, field in self.fields.items()
                   if field.text() != self._shown.get(key)}
        if not changes:
            self.state.setText("nothing changed")
            return
        answer = self._ask({"set": changes})
        if answer is not None:
            self.state.setText(f"parameter set {answer['parameter_set']} sent: "
                               + ", ".join(f"{key}={value}" for key, value in changes.items()))
            self._shown.update({key: self.fields[key].text() for key in changes})

    def _ask(self, body: dict[str, Any]) -> dict[str, Any] | None:
        answer = request(self._url, body, timeout_s=REQUEST_TIMEOUT_S, **self._keys)
        if answer is None:
            self.state.setText(f"no answer from {self._url} within {REQUEST_TIMEOUT_S:g} s")
        elif "error" in answer:
            self.state.setText(f"refused: {answer['error']}")
            return None
        return answer

    @staticmethod
    def _text(value: Any) -> str:
        return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
