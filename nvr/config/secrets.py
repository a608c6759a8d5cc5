"""Secrets in the camera map: `${NAME}` from the environment, `password_file:` and systemd
credentials ($CREDENTIALS_DIRECTORY, set by `LoadCredential=`).

Nothing here ever puts a secret's value into a message: errors name the variable or the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

# ${NAME} with a shell-style name; "$${" escapes a literal "${".
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SecretError(ValueError):
    """Raised when a secret cannot be resolved. The message never contains the secret."""


def substitute_env(value: str, env: Mapping[str, str]) -> str:
    """Replace every ${NAME} in `value` with env[NAME]; an unset NAME is a SecretError."""
    missing: list[str] = []

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name is None:
            return "$"
        if name not in env:
            missing.append(name)
            return ""
        return env[name]

    out = _VAR.sub(repl, value)
    if missing:
        names = ", ".join(f"${{{n}}}" for n in dict.fromkeys(missing))
        raise SecretError(
            f"environment variable {names} is not set; export it before starting nvr "
            "(or, under systemd, set Environment= / EnvironmentFile= in the unit)"
        )
    return out


def password_file_path(value: str, *, base_dir: Path, env: Mapping[str, str]) -> Path:
    """Where a `password_file:` lives. A bare name (no slash) is looked up in
    $CREDENTIALS_DIRECTORY first, so `LoadCredential=cam.pass:/etc/nvr/cam.pass` works; any other
    relative path is relative to the camera map's folder."""
    path = Path(value).expanduser()
    if "/" not in value:
        creds = env.get("CREDENTIALS_DIRECTORY")
        if creds and (Path(creds) / value).exists():
            return Path(creds) / value
    return path if path.is_absolute() else base_dir / path


def read_password_file(value: str, *, base_dir: Path, env: Mapping[str, str]) -> tuple[Path, str]:
    """(resolved path, password). Strips one trailing newline, as `echo secret > file` adds one."""
    path = password_file_path(value, base_dir=base_dir, env=env)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        where = str(path)
        if "/" not in value and env.get("CREDENTIALS_DIRECTORY"):
            where = f"$CREDENTIALS_DIRECTORY ({env['CREDENTIALS_DIRECTORY']}) or {path}"
        raise SecretError(f"password file {value!r} not found (looked in {where})") from None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise SecretError(f"password file {str(path)!r} cannot be read: {reason}") from None
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    if not text:
        raise SecretError(f"password file {str(path)!r} is empty")
    return path, text
