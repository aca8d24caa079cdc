"""The store's Lua scripts, each prefixed with the shared library `lib.lua`."""

from __future__ import annotations

from importlib.resources import files

_LUA = files("agent_core.store") / "lua"
_LIB = (_LUA / "lib.lua").read_text(encoding="utf-8")

SCRIPT_NAMES = (
    "ingest",
    "commit",
    "open_session",
    "list_sessions",
    "finish_turn",
    "turn_lock",
    "turn_unlock",
    "redispatch",
    "msg_cas",
    "agent_save",
    "throttle",
    "remove_session",
    "turn_view",
    "document_create",
    "document_finish",
    "document_archive",
    "call_request",
    "call_write",
)

SCRIPTS: dict[str, str] = {
    name: _LIB + "\n" + (_LUA / f"{name}.lua").read_text(encoding="utf-8") for name in SCRIPT_NAMES
}
