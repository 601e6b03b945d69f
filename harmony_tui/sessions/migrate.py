"""Convert chat logs to the current schema: mlx-harmony's v1 and v2 layouts, our older ones.

- mlx-harmony v1: ``{metadata, messages}``, one chat.
- mlx-harmony v2: ``{schema_version: 2, chat_order, active_chat_id, chats: {id: {chat_id,
  metadata, messages}}}``. Each of its chats becomes a root branch of one harmony-tui chat (the
  active one stays active), so nothing is lost.
- Assistant messages with ``analysis`` become an analysis record followed by the answer; tool
  messages keep ``name``/``recipient``/``channel``; ``hyperparameters`` become ``params`` (the
  settings harmony-tui knows, where valid); timestamps become UTC ISO 8601.
A file already in the current schema is returned unchanged, so migrating twice changes nothing.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from harmony_tui.engine.params import GenerationParams
from harmony_tui.errors import ChatFileError
from harmony_tui.sessions.chat_log import ChatLog, ChatRecord, make_title, new_id, utc_now
from harmony_tui.sessions.store import detect_layout

NO_FINAL = ("[Analysis only - no final response]", "[No final response - see thinking above]")
# Upgrades of our own schema: version -> function returning the next version's document.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def to_utc_iso(value: Any, fallback: str) -> str:
    """mlx-harmony timestamps (``{unix, iso}``, ISO text or a number) as UTC ISO 8601.

    Of ``{unix, iso}`` the ``iso`` text wins: mlx-harmony computed ``unix`` from a naive
    ``utcnow()``, which is off by the machine's UTC offset; its ``iso`` is the true UTC time.
    """
    if isinstance(value, dict):
        stamp = _parse_stamp(value.get("iso")) or _parse_stamp(value.get("unix"))
    else:
        stamp = _parse_stamp(value)
    if stamp is None:
        return fallback
    return stamp.astimezone(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_stamp(value: Any) -> _dt.datetime | None:
    """An aware datetime from ISO text (naive means UTC) or a Unix time; None if neither."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return _dt.datetime.fromtimestamp(float(value), _dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    try:
        stamp = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    # mlx-harmony wrote utcnow() without a zone: naive times are UTC.
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=_dt.UTC)


def known_params(hyper: Any) -> dict[str, Any]:
    """The hyperparameters harmony-tui understands, each kept only if valid."""
    if not isinstance(hyper, dict):
        return {}
    kept: dict[str, Any] = {}
    for key, value in hyper.items():
        if key not in GenerationParams.model_fields or value is None:
            continue
        if key == "reasoning_effort" and isinstance(value, str):
            value = value.lower()
        try:
            GenerationParams().updated(**{key: value})
        except ValidationError:
            continue
        kept[key] = value
    return kept


def _convert_messages(messages: list[Any], start_parent: str | None, fallback_time: str,
                      used_ids: set[str], where: str) -> list[ChatRecord]:
    out: list[ChatRecord] = []
    parent = start_parent
    last_params: dict[str, Any] | None = None
    for index, raw in enumerate(messages):
        if not isinstance(raw, dict):
            raise ChatFileError(f"{where}: messages[{index}]: expected an object")
        role = raw.get("role")
        if role not in ("user", "assistant", "tool", "system", "developer"):
            raise ChatFileError(f"{where}: messages[{index}].role={role!r}: expected user, "
                                "assistant, tool, system or developer")
        created = to_utc_iso(raw.get("timestamp", raw.get("created_at")), fallback_time)
        content = raw.get("content")
        content = "" if content is None else content if isinstance(content, str) else str(
            content)
        wanted = raw.get("id")
        record_id = wanted if isinstance(wanted, str) and wanted and wanted not in used_ids \
            else new_id()
        used_ids.add(record_id)
        common: dict[str, Any] = {"created_at": created}
        if role == "assistant":
            params = known_params(raw.get("hyperparameters"))
            if params and params != last_params:
                common["params"] = params
                last_params = params
            analysis = raw.get("analysis")
            if isinstance(analysis, str) and analysis.strip():
                thinking = ChatRecord(id=new_id(), parent_id=parent, role="assistant",
                                      content=analysis, channel="analysis", **common)
                used_ids.add(thinking.id)
                out.append(thinking)
                parent = thinking.id
                common.pop("params", None)
            if content in NO_FINAL or (not content and not raw.get("recipient")):
                if out and out[-1].parent_id == parent:
                    pass
                continue
            record = ChatRecord(id=record_id, parent_id=parent, role="assistant",
                                content=content, recipient=raw.get("recipient"),
                                channel=raw.get("channel") or (
                                    "commentary" if raw.get("recipient") else "final"),
                                content_type=raw.get("content_type"), **common)
        elif role == "tool":
            record = ChatRecord(id=record_id, parent_id=parent, role="tool", content=content,
                                name=raw.get("name") or raw.get("recipient"),
                                channel=raw.get("channel") or "commentary", **common)
        else:
            record = ChatRecord(id=record_id, parent_id=parent, role=role, content=content,
                                **common)
        out.append(record)
        parent = record.id
    return out


def _chat_meta(metadata: Any) -> dict[str, Any]:
    return metadata if isinstance(metadata, dict) else {}


def from_mlx_harmony(data: dict[str, Any], where: str) -> ChatLog:
    """A ChatLog from an mlx-harmony v1 or v2 document."""
    now = utc_now()
    if detect_layout(data) == "mlx-harmony-v1":
        chats = {"": {"metadata": data.get("metadata"), "messages": data.get("messages")}}
        order, active = [""], ""
    else:
        chats = data["chats"]
        order = [c for c in data.get("chat_order") or [] if c in chats] or list(chats)
        order += [c for c in chats if c not in order]
        active = data.get("active_chat_id") if data.get("active_chat_id") in chats else (
            order[0] if order else None)
    log = ChatLog()
    used: set[str] = set()
    active_leaf = None
    first_meta: dict[str, Any] = {}
    for chat_id in order:
        entry = chats[chat_id]
        if not isinstance(entry, dict):
            raise ChatFileError(f"{where}: chats.{chat_id}: expected an object")
        meta = _chat_meta(entry.get("metadata"))
        messages = entry.get("messages") or []
        if not isinstance(messages, list):
            raise ChatFileError(f"{where}: chats.{chat_id}.messages: expected a list")
        fallback = to_utc_iso(meta.get("created_at"), now)
        records = _convert_messages(messages, None, fallback, used, where)
        log.messages.extend(records)
        if chat_id == active:
            first_meta = meta
            active_leaf = records[-1].id if records else None
            log.chat_id = str(meta.get("chat_id") or entry.get("chat_id") or log.chat_id)
    log.active_leaf = active_leaf
    meta = first_meta
    log.model = meta.get("model_path") or meta.get("model") or meta.get("last_model_path")
    prompt_path = meta.get("prompt_config_path") or meta.get("last_prompt_config_path")
    log.prompt_config = prompt_path if isinstance(prompt_path, str) else None
    log.params = known_params(meta.get("last_hyperparameters") or meta.get("hyperparameters"))
    log.created_at = to_utc_iso(meta.get("created_at"),
                                log.messages[0].created_at if log.messages else now)
    log.updated_at = max([r.created_at for r in log.messages] or [log.created_at])
    first_user = next((r.content for r in log.path() if r.role == "user"), "")
    log.title = str(meta.get("title") or make_title(first_user) or "")
    log.migrated_from = "mlx-harmony v1" if "" in chats else "mlx-harmony v2"  # type: ignore[attr-defined]
    return log


def migrate(data: Any, where: str) -> tuple[ChatLog, bool]:
    """(the chat in the current schema, whether anything changed)."""
    layout = detect_layout(data)
    if layout == "current":
        try:
            return ChatLog.model_validate(data), False
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise ChatFileError(f"{where}: {loc}: {first['msg'].lower()}") from err
    if layout == "older":
        version = data["schema_version"]
        while version in UPGRADES:
            data = UPGRADES[version](data)
            version = data["schema_version"]
        return migrate(data, where)[0], True
    if layout in ("mlx-harmony-v1", "mlx-harmony-v2"):
        return from_mlx_harmony(data, where), True
    if layout == "newer":
        raise ChatFileError(f"{where}: schema_version {data.get('schema_version')} is newer "
                            "than this harmony-tui understands")
    raise ChatFileError(f"{where}: not a chat log harmony-tui knows (expected mlx-harmony's "
                        "{metadata, messages} or {schema_version: 2, chats}, or ours)")
