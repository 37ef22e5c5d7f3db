"""What the user chose in Settings, remembered between runs as a small JSON file.

The file lives in the user config dir (platformdirs), or under $VERALTHEIM_APP_CONFIG_DIR when set
(tests and `make run` point it at a temporary dir so they never touch the user's own settings).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs
from veraltheim.client.compute.routes import Route
from veraltheim.client.state.cache import CACHE_FILE
from veraltheim.protocol.constants import APP_DATA_DIR_ENV, APP_NAME, DEFAULT_PORT, SOCKET_PATH

CONFIG_DIR_ENV = "VERALTHEIM_APP_CONFIG_DIR"
DATA_DIR_ENV = APP_DATA_DIR_ENV
SETTINGS_FILE = "settings.json"
SERVICE_SCHEMES = ("ws://", "wss://")
SERVICE_URL_HINT = "Use ws://HOST:PORT/socket/websocket (or wss:// for TLS)."


def service_url_problem(url: str) -> str | None:
    """Why `url` cannot be a service address, or None when it can."""
    if url.startswith(SERVICE_SCHEMES):
        return None
    return f"{url or 'An empty address'} is not a service address."


def config_dir() -> Path:
    return Path(os.environ.get(CONFIG_DIR_ENV) or platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    """Where the app keeps its document cache (SQLite) and the kernel code cache."""
    return Path(os.environ.get(DATA_DIR_ENV) or platformdirs.user_data_dir(APP_NAME))


def default_service_url() -> str:
    return f"ws://127.0.0.1:{DEFAULT_PORT}{SOCKET_PATH}"


@dataclass
class AppSettings:
    service_url: str = field(default_factory=default_service_url)
    token: str = ""
    route: str = Route.AUTO.value  # the Where choice the Workbench starts with (a Route)
    max_input_mib: int = 256  # a bigger file is refused before it is read
    deadline_s: float = 60.0  # a local job running longer is stopped
    cache_dir: str = ""  # empty: the default under data_dir()
    user_name: str = ""  # shown to others when the service runs without auth
    ca_file: str = ""  # a PEM certificate to trust for wss:// (e.g. a development certificate)

    def kernel_cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else data_dir() / "kernels"

    def document_cache_path(self) -> Path:
        return data_dir() / CACHE_FILE


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


def load_settings(path: Path | None = None) -> tuple[AppSettings, str | None]:
    """The saved settings, or the defaults and a message saying why the file was not used."""
    path = path or settings_path()
    defaults = AppSettings()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return defaults, None
    except (OSError, ValueError) as exc:
        return defaults, f"Settings file {path} could not be read ({exc}); using defaults."
    if not isinstance(raw, dict):
        return defaults, f"Settings file {path} is not a JSON object; using defaults."
    known = {f.name: f for f in dataclasses.fields(AppSettings)}
    values = {}
    for key, value in raw.items():
        if key in known and isinstance(value, type(getattr(defaults, key))):
            values[key] = value
        elif key in known and isinstance(value, int) and isinstance(getattr(defaults, key), float):
            values[key] = float(value)
    settings = dataclasses.replace(defaults, **values)
    settings.route = Route(settings.route) if settings.route in set(Route) else Route.AUTO
    return settings, None


def save_settings(settings: AppSettings, path: Path | None = None) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves half a file."""
    path = path or settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(settings), indent=2), encoding="utf-8")
    os.chmod(tmp, 0o600)  # it holds the token
    tmp.replace(path)
    return path
