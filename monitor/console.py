"""What the collector shows on the terminal: a live status line and the final summary table."""

from __future__ import annotations

import sys
from typing import Any, TextIO

__all__ = ["StatusLine", "format_summary", "format_accounting", "format_parameter_sets"]


def _figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


_SHOWN_FIRST = ("elapsed_s", "events", "events_per_s", "failed", "frames_expected")

PROGRESS_WIDTH = 20


def _progress(figures: dict[str, Any]) -> str:
    """A bar for a finite run, when the frame sender says how many frames it will send."""
    expected = figures.get("frames_expected")
    if not expected:
        return ""
    done = min(1.0, figures["events"] / expected)
    filled = round(done * PROGRESS_WIDTH)
    return f"[{'#' * filled}{'.' * (PROGRESS_WIDTH - filled)}] {100 * done:3.0f}% "


class StatusLine:
    """One line per interval; rewritten in place on a terminal, appended in a log file or CI."""

    def __init__(self, stream: TextIO = sys.stderr, *, enabled: bool = True) -> None:
        self._stream = stream
        self._enabled = enabled
        self._in_place = stream.isatty()

    def __call__(self, figures: dict[str, Any]) -> None:
        if not self._enabled:
            return
        core = (f"{figures['elapsed_s']:6.1f} s | {figures['events']:,} events | "
                f"{figures['events_per_s']:,.0f} ev/s | failed {figures['failed']:,}")
        extra = " | ".join(f"{key} {_figure(value)}" for key, value in figures.items()
                           if key not in _SHOWN_FIRST and value is not None and not isinstance(value, dict))
        line = f"monitor: {_progress(figures)}{core}" + (f" | {extra}" if extra else "")
        self._stream.write(f"\r{line}\033[K" if self._in_place else f"{line}\n")
        self._stream.flush()

    def finish(self) -> None:
        if self._enabled and self._in_place:
            self._stream.write("\n")


def _short_and_flat(value: dict[str, Any] | list[Any]) -> bool:
    items = value.values() if isinstance(value, dict) else value
    return 0 < len(value) <= 8 and not any(isinstance(item, (dict, list)) for item in items)


def format_accounting(accounting: dict[str, Any]) -> str:
    """One line that adds up: sent = processed + failed + dropped (by reason) + unaccounted."""
    dropped = accounting["dropped"]
    reasons = ", ".join(f"{reason} {_figure(n)}" for reason, n in dropped.items())
    line = (f"sent {_figure(accounting['sent']) if accounting['sent'] is not None else 'unknown'} = "
            f"processed {_figure(accounting['processed'])} + failed {_figure(accounting['failed'])} + "
            f"dropped {_figure(sum(dropped.values()))}{f' ({reasons})' if reasons else ''}")
    if accounting.get("unaccounted") is not None:
        line += f" + unaccounted {_figure(accounting['unaccounted'])}"
    for name, value in accounting.get("estimates", {}).items():
        line += f"; estimate: {name.replace('_', ' ')} {_figure(value)}"
    return line


def format_parameter_sets(sets: list[dict[str, Any]]) -> str:
    """One entry per live parameter set: what changed, who asked, its events and hit rate."""
    entries = []
    for entry in sets:
        changes = ", ".join(f"{key}={value}" for key, value in entry["changes"].items()) or "as configured"
        rate = "n/a" if entry["hit_rate"] is None else f"{entry['hit_rate']:.3f}"
        entries.append(f"{entry['number']} ({changes}, by {entry['requested_by']}): {entry['events']:,} events "
                       f"(ids {entry['first_event_id']}-{entry['last_event_id']}), hit rate {rate}")
    return "; ".join(entries)


def format_summary(summary: dict[str, Any]) -> str:
    """The final table: run figures first, then the pipeline's, then one row per rank."""
    lines = ["", "Run summary", "-----------"]
    width = max(len(key) for key in summary)
    for key, value in summary.items():
        if key == "accounting":
            lines.append(f"{key:<{width}}  {format_accounting(value)}")
            continue
        if key == "parameter_sets":
            lines.append(f"{key:<{width}}  {format_parameter_sets(value)}")
            continue
        if key == "per_rank" or isinstance(value, (dict, list)) and not _short_and_flat(value):
            continue  # series (profiles) and nested records go to --summary-json only
        if isinstance(value, (dict, list)):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict) else "; ".join(map(str, value))
        lines.append(f"{key:<{width}}  {_figure(value)}")
    rows = summary.get("per_rank", [])
    host_width = max([4, *(len(str(row.get("host") or "")) for row in rows)])
    lines += ["", f"{'rank':>4}  {'host':<{host_width}}  {'role':<9}  {'events':>8}  {'failed':>6}  {'MB in':>9}  "
                  f"{'busy s':>7}  {'cpu s':>7}  {'wall s':>7}"]
    for row in rows:
        lines.append(f"{row['rank']:>4}  {row.get('host') or '?':<{host_width}}  {row['role']:<9}  {row['events']:>8,}  "
                     f"{row['failed']:>6,}  {row['bytes'] / 1e6:>9,.1f}  {row['busy_s']:>7.2f}  {row['cpu_s']:>7.2f}  "
                     f"{row['wall_s']:>7.2f}")
    return "\n".join(lines)
