"""Write the settings out: the example TOML file, the effective config, the README table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from veraltheim.service.config import SECTIONS, ServiceConfig, Setting, settings

REDACTED = "<set>"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        return json.dumps(str(value))
    if isinstance(value, tuple | list):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _sections() -> list[tuple[str | None, list[Setting]]]:
    every = settings()
    return [(name, [s for s in every if s.section == name]) for name in [None, *SECTIONS]]


def render_example() -> str:
    """The example config: every key commented out at its default, with its description."""
    lines = [
        "# veraltheim-service configuration (TOML). Every key is optional; shown at its default.",
        "# Precedence: this file < environment (VERALTHEIM_<KEY>, VERALTHEIM_<SECTION>_<KEY>)",
        "# < command-line flags. Use: veraltheim-service run --config FILE",
        "# (written by `veraltheim-service config --example`)",
    ]
    lines.append("")
    for section, items in _sections():
        if section:
            lines.append(f"[{section}]")
        for s in items:
            lines.append(f"# {s.doc} (env {s.env})")
            if s.shown is not None:
                lines.append(f"# {s.name} = <{s.shown}>")
            elif s.default is None:
                lines.append(f"# {s.name} = (unset)")
            else:
                lines.append(f"# {s.name} = {toml_value(s.default)}")
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def render_effective(config: ServiceConfig) -> str:
    """The settings in force, as TOML that load_config reads back (the secret redacted)."""
    lines = ["# effective configuration"]
    for section, items in _sections():
        target = getattr(config, section) if section else config
        if section:
            lines += ["", f"[{section}]"]
        for s in items:
            value = getattr(target, s.name)
            if value is None:
                lines.append(f"# {s.name} is unset")
            elif s.name == "secret_key" and section is None:
                lines.append(f"# {s.name} = {REDACTED}")
            else:
                lines.append(f"{s.name} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def render_markdown() -> str:
    """The README table: key, environment variable, default, meaning."""
    rows = ["| key | environment | default | meaning |", "|---|---|---|---|"]
    for s in settings():
        default = s.shown or ("unset" if s.default is None else toml_value(s.default))
        rows.append(f"| `{s.key}` | `{s.env}` | {default} | {s.doc} |")
    return "\n".join(rows) + "\n"
