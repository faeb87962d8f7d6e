"""Where the client finds the service and its key.

Precedence, first found wins, separately for the URL and the key:

1. explicit arguments (``Client(url, key)``, the CLI's ``--url`` / ``--api-key``);
2. the environment: ``PRUNEKIT_URL``, ``PRUNEKIT_API_KEY``;
3. the config file: ``--config PATH`` (must exist), else ``$XDG_CONFIG_HOME/prunekit/config.toml``
   (``~/.config/prunekit/config.toml``) when it exists, with top-level ``url`` and ``api_key``;
4. the URL defaults to the local service, ``http://127.0.0.1:8000``; only for that URL, the key
   ``make run`` wrote to ``$PRUNEKIT_HOME/api-key`` (``./var/api-key``) is read as a last resort.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"
LOCAL_URLS = frozenset({DEFAULT_URL, "http://localhost:8000"})
CONFIG_KEYS = frozenset({"url", "api_key"})


class ConfigError(ValueError):
    """A config file that is missing (when named), unreadable or not valid TOML."""


@dataclass(frozen=True)
class ClientConfig:
    url: str
    api_key: str | None
    url_from: str  # "argument", "environment", "config file <path>", "default"
    api_key_from: str | None  # as url_from, or "local key <path>"; None without a key


def default_config_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "prunekit" / "config.toml"


def read_config_file(path: Path) -> dict[str, str]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the config file {path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"the config file {path} has unknown keys {unknown}; known: url, api_key")
    for name, value in data.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"the config file {path}: {name} must be a non-empty string")
    return {k: v.strip() for k, v in data.items()}


def local_key_path(env: Mapping[str, str], cwd: Path) -> Path:
    return Path(env.get("PRUNEKIT_HOME") or cwd / "var") / "api-key"


def resolve_config(
    url: str | None = None,
    api_key: str | None = None,
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ClientConfig:
    """The URL and key to use, each with where it came from (see the module's docstring)."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    if config_path is not None:
        file_path: Path | None = config_path
        if not config_path.is_file():
            raise ConfigError(f"the config file {config_path} does not exist")
    else:
        file_path = default_config_path(env)
        if not file_path.is_file():
            file_path = None
    from_file = read_config_file(file_path) if file_path is not None else {}
    file_label = f"config file {file_path}"

    def pick(explicit: str | None, env_name: str, file_key: str) -> tuple[str | None, str | None]:
        if explicit:
            return explicit, "argument"
        if env.get(env_name):
            return env[env_name], "environment"
        if from_file.get(file_key):
            return from_file[file_key], file_label
        return None, None

    chosen_url, url_from = pick(url, "PRUNEKIT_URL", "url")
    if chosen_url is None:
        chosen_url, url_from = DEFAULT_URL, "default"
    chosen_url = chosen_url.rstrip("/")
    chosen_key, key_from = pick(api_key, "PRUNEKIT_API_KEY", "api_key")
    if chosen_key is None and chosen_url in LOCAL_URLS:
        key_file = local_key_path(env, cwd)
        if key_file.is_file():
            chosen_key = key_file.read_text(encoding="utf-8").strip() or None
            key_from = f"local key {key_file}" if chosen_key else None
    return ClientConfig(chosen_url, chosen_key, url_from or "default", key_from)
