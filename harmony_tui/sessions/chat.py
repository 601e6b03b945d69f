"""One conversation: its message tree, the edits a chat UI makes, and saving as it happens.

``ChatSession.messages`` is the conversation the model sees (the active branch). With a ``path``
every completed message is written to disk at once (atomically, see ``store.py``).
Regenerating or editing moves the active leaf back and starts a new branch; the old messages
stay in the file.

``claim`` takes the chat's lock (``lock.py``) so that no other process writes the same file;
``release`` gives it back. A save that fails (read-only folder, disk full) raises
``ChatSaveError``, or, with ``on_save_error`` set, reports it there and keeps everything in
memory (``unsaved``): the next save writes it all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from harmony_tui.engine.messages import Message
from harmony_tui.errors import ChatFileError, HarmonyTuiError
from harmony_tui.sessions.chat_log import ChatLog, ChatRecord
from harmony_tui.sessions.lock import ChatLock, ChatSaveError, save_error
from harmony_tui.sessions.store import chat_path, title_for_name, write_chat


class ChatSession:
    """Messages in order; assistant turns are the messages after each user message."""

    def __init__(self, log: ChatLog | None = None, path: Path | None = None,
                 lock: ChatLock | None = None) -> None:
        self.log = log or ChatLog()
        self.path = path
        self.lock = lock
        self.locking = lock is not None  # saves take the lock first (see ``claim``)
        self.saves = 0
        self.unsaved = False  # the last save failed: the newest messages are only in memory
        self.on_save_error: Callable[[HarmonyTuiError], None] | None = None

    # -- reading --------------------------------------------------------------------------------

    @property
    def messages(self) -> list[Message]:
        return [record.to_message() for record in self.log.path()]

    def records(self) -> list[ChatRecord]:
        return self.log.path()

    def last_params(self) -> dict[str, Any] | None:
        """The generation settings recorded last on the active branch (None if none)."""
        for record in reversed(self.log.path()):
            if record.params is not None:
                return record.params
        return self.log.params or None

    def last_user_index(self) -> int | None:
        messages = self.log.path()
        for index in range(len(messages) - 1, -1, -1):
            if messages[index].role == "user":
                return index
        return None

    def last_user_text(self) -> str | None:
        index = self.last_user_index()
        return None if index is None else self.log.path()[index].content

    def final_answers(self) -> list[str]:
        return [r.content for r in self.log.path() if r.role == "assistant"
                and r.channel == "final"]

    # -- writing --------------------------------------------------------------------------------

    def claim(self) -> None:
        """Hold the chat's lock (a no-op without a path or when held already).

        Raises ``ChatLockedError`` if another process has the chat open, ``ChatSaveError`` if
        the lock cannot be created (read-only folder ...). Either way later saves try again
        to take the lock first, and never write without it.
        """
        self.locking = True
        if self.path is not None and self.lock is None:
            self.lock = ChatLock.acquire(self.path)

    def release(self) -> None:
        """Give the chat's lock back (the session can still be read)."""
        if self.lock is not None:
            lock, self.lock = self.lock, None
            lock.release()

    def save(self) -> None:
        """Write the chat file now.

        A no-op without a path, and while the chat holds nothing but the config's greeting:
        starting the app (or a new chat) and leaving leaves no empty chat behind. A failure
        raises ``ChatSaveError`` or goes to ``on_save_error``; either way ``unsaved`` is set and
        the file on disk is the previous complete version.
        """
        if self.path is None or not any(not r.greeting for r in self.log.messages):
            return
        try:
            if self.locking and self.lock is None:
                self.lock = ChatLock.acquire(self.path)
            write_chat(self.path, self.log)
        except HarmonyTuiError as err:  # ChatSaveError, ChatLockedError
            self.unsaved = True
            if self.on_save_error is None:
                raise
            self.on_save_error(err)
            return
        self.unsaved = False
        self.saves += 1

    def rescue(self) -> str:
        """Last chance before leaving with unsaved messages: save once more, else write the
        chat to the temp folder. Returns one line saying where the chat is."""
        error: HarmonyTuiError | None = None
        try:
            handler, self.on_save_error = self.on_save_error, None
            self.save()
            return f"chat saved to {self.path}"
        except HarmonyTuiError as err:
            error = err
        finally:
            self.on_save_error = handler
        import tempfile

        from harmony_tui.sessions.store import dump_chat

        name = self.path.stem if self.path is not None else "chat"
        try:
            fd, spare = tempfile.mkstemp(prefix=f"harmony-tui-unsaved-{name[:40]}-",
                                         suffix=".json")
            with open(fd, "w", encoding="utf-8") as fh:
                fh.write(dump_chat(self.log))
        except OSError as err:
            return f"{error}; the newest messages are lost (the temp folder failed too: {err})"
        return f"{error}; the whole chat was written to {spare} instead"

    def rename(self, new_name: str) -> Path:
        """Rename this (open) chat's file and set its title; the lock moves with it."""
        assert self.path is not None
        target = chat_path(new_name, self.path.parent, "new name")
        title = title_for_name(new_name)
        if target == self.path:
            self.log.title = title
            write_chat(self.path, self.log)
            return target
        new_lock = ChatLock.acquire(target) if self.lock is not None else None
        try:
            if target.exists():
                raise ChatFileError(f"{target}: a chat with that name already exists")
            old_title, self.log.title = self.log.title, title
            try:
                write_chat(target, self.log)
            except ChatSaveError:
                self.log.title = old_title
                raise
            try:
                self.path.unlink(missing_ok=True)
            except OSError as err:  # no second copy left behind
                with contextlib.suppress(OSError):
                    target.unlink()
                self.log.title = old_title
                raise save_error(self.path, err) from err
        except BaseException:
            if new_lock is not None:
                new_lock.release()
            raise
        self.release()
        self.path, self.lock = target, new_lock
        self.unsaved = False
        return target

    def add_user(self, text: str) -> ChatRecord:
        record = self.log.append(ChatRecord(role="user", content=text))
        self.save()
        return record

    def add_greeting(self, text: str) -> ChatRecord:
        record = self.log.append(ChatRecord(role="assistant", content=text, channel="final",
                                            greeting=True))
        self.save()
        return record

    def begin_turn(self, model: str | None, params: dict[str, Any]) -> TurnRecorder:
        """Start recording an assistant turn generated by ``model`` with ``params``."""
        changed = params != self.last_params()
        self.log.model = model
        self.log.params = params
        return TurnRecorder(self, model, params if changed else None)

    def add_assistant(self, messages: Iterable[Message], **meta: Any) -> None:
        """Record a whole turn at once (also a partial turn that was stopped).

        ``model`` and ``params`` (optional) are kept as ``begin_turn`` keeps them, so a
        resumed chat knows its model and settings.
        """
        model, params = meta.pop("model", None), meta.pop("params", None)
        if params is not None:
            recorder = self.begin_turn(model, params)
        else:
            recorder = TurnRecorder(self, model, None)
            if model is not None:
                self.log.model = model
        recorder.finish(list(messages), **meta)

    def add_tool_result(self, result: Message, tool_call_id: str | None = None,
                        is_error: bool = False) -> ChatRecord:
        if tool_call_id:
            self._link_call(result.name, tool_call_id)
        record = self.log.append(ChatRecord.from_message(
            result, None, tool_call_id=tool_call_id, is_error=is_error or None))
        self.save()
        return record

    def _link_call(self, recipient: str | None, call_id: str) -> None:
        """Give the call this result answers its id (the recorder saw only the message)."""
        for record in reversed(self.log.path()):
            if record.role == "user":
                return
            if record.role == "assistant" and record.recipient and record.tool_call_id is None \
                    and (recipient is None or record.recipient == recipient):
                record.tool_call_id = call_id
                return

    def drop_last_reply(self) -> bool:
        """Go back to the last user message (to regenerate); False if there is none."""
        index = self.last_user_index()
        if index is None:
            return False
        self.log.active_leaf = self.log.path()[index].id
        self.save()
        return True

    def drop_last_exchange(self) -> str | None:
        """Go back before the last user message; returns its text (to edit it)."""
        index = self.last_user_index()
        if index is None:
            return None
        record = self.log.path()[index]
        self.log.active_leaf = record.parent_id
        self.save()
        return record.content

    def mark_stopped(self) -> None:
        """Mark the turn that ends the active branch as stopped (``finish_reason: cancelled``).

        For a turn stopped after its messages were saved: while its tool ran or was awaiting
        approval.
        """
        path = self.log.path()
        if path and path[-1].role != "user" and path[-1].finish_reason != "cancelled":
            path[-1].finish_reason = "cancelled"
            self.save()

    def clear(self) -> None:
        """Forget everything in memory (the app starts a new chat file for what follows)."""
        self.log = ChatLog()


class TurnRecorder:
    """Saves an assistant turn message by message as each one completes."""

    def __init__(self, session: ChatSession, model: str | None,
                 params: dict[str, Any] | None) -> None:
        self.session = session
        self.model = model
        self.params = params
        self.added: list[ChatRecord] = []
        self.added_messages: list[Message] = []

    def add(self, message: Message, **extra: Any) -> ChatRecord:
        """Record one completed message of the turn and save the file."""
        if not self.added:
            extra.setdefault("model", self.model)
            if self.params is not None:
                extra.setdefault("params", self.params)
        record = self.session.log.append(ChatRecord.from_message(message, None, **extra))
        self.added.append(record)
        self.added_messages.append(message)
        self.session.save()
        return record

    def finish(self, messages: list[Message], stats: dict[str, Any] | None = None,
               finish_reason: str | None = None) -> None:
        """Record what the turn produced beyond the messages already added, with its figures."""
        done = len(self.added_messages)
        rest = messages[done:] if messages[:done] == self.added_messages else [
            m for m in messages if m not in self.added_messages]
        for message in rest:
            if message.content or message.recipient:
                self.add(message)
        if self.added:
            last = self.added[-1]
            last.stats = stats
            last.finish_reason = finish_reason
            self.session.save()
