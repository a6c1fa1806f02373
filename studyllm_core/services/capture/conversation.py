"""ConversationService: multi-turn chats in which every turn is one InferenceService request.

A conversation is a `conversation` group named by its id: the system prompt lives in the group's
metadata, and every attempt of every turn is a member, recorded with the conversation id and
the turn number in metadata_json. Retries, preprocessing, rate limits and de-duplication apply
as for any request. The database is the source of truth: a conversation this service does not
hold in memory (a new process, a new service) is reloaded from its last successful turn, whose
request holds the whole history before it. A failed turn leaves the history as it was.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from studyllm_core.db.calls import CallFilter, RawCallRepository
from studyllm_core.db.groups import GroupRepository
from studyllm_core.errors import InputError, NotFoundError
from studyllm_core.providers.base import ChatMessage
from studyllm_core.services.capture.inference import InferenceResult, InferenceService

GROUP_TYPE = "conversation"


@dataclass
class _Conversation:
    """What this service holds of one conversation."""

    group_id: int
    system_prompt: str | None
    turns: list[ChatMessage] = field(default_factory=list)  # user and assistant messages, in order
    busy: bool = False


class ConversationService:
    """Conversations (system prompt plus message history) keyed by conversation id, persisted as raw calls."""

    def __init__(self, inference: InferenceService, *, system_prompt: str | None = None) -> None:
        self.inference = inference
        self.system_prompt = system_prompt
        self.groups = GroupRepository(inference.engine)
        self.calls = RawCallRepository(inference.engine)
        self._conversations: dict[str, _Conversation] = {}
        self._lock = threading.Lock()

    def start(self, conversation_id: str | None = None, *, system_prompt: str | None = None) -> str:
        """Create a conversation (id given or generated) and return its id; an existing id is an InputError."""
        cid = conversation_id or uuid.uuid4().hex
        if self.groups.lookup(GROUP_TYPE, cid) is not None:
            raise InputError(f"conversation {cid!r} already exists: continue it with send() or start one with a new id")
        system = self.system_prompt if system_prompt is None else system_prompt
        meta = {"system_prompt": system, "provider": self.inference.provider_name, "model": self.inference.model}
        group_id = self.groups.ensure_group(GROUP_TYPE, cid, metadata=meta)
        with self._lock:
            self._conversations[cid] = _Conversation(group_id, system)
        return cid

    async def asend(
        self,
        conversation_id: str,
        message: str,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        **params: Any,
    ) -> InferenceResult:
        """Send the next user message with the history before it; the reply joins the history on success."""
        conv = await asyncio.to_thread(self._get, conversation_id)
        with self._lock:
            if conv.busy:
                raise InputError(
                    f"conversation {conversation_id!r} has a turn in flight: wait for its reply before sending the next"
                )
            conv.busy = True
        try:
            turn = sum(m.role == "user" for m in conv.turns)
            messages = [*_system(conv.system_prompt), *conv.turns, ChatMessage("user", message)]
            result = await self.inference.arun(
                messages, temperature=temperature, max_tokens=max_tokens, group_id=conv.group_id,
                metadata={"conversation_id": conversation_id, "turn": turn}, **params,
            )
            if result.ok:
                conv.turns += [ChatMessage("user", result.prompt), ChatMessage("assistant", result.text or "")]
            return result
        finally:
            conv.busy = False

    def send(
        self,
        conversation_id: str,
        message: str,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        **params: Any,
    ) -> InferenceResult:
        """Synchronous `asend`."""
        return self.inference.call_sync(
            self.asend(conversation_id, message, temperature=temperature, max_tokens=max_tokens, **params)
        )

    def history(self, conversation_id: str) -> list[ChatMessage]:
        """System prompt (if any) and every successful turn, from memory or else from the database."""
        conv = self._get(conversation_id)
        return [*_system(conv.system_prompt), *conv.turns]

    def reload(self, conversation_id: str) -> list[ChatMessage]:
        """Forget what memory holds of the conversation and read it back from the database."""
        with self._lock:
            self._conversations.pop(conversation_id, None)
        return self.history(conversation_id)

    def group_id(self, conversation_id: str) -> int:
        """Id of the conversation's `conversation` group (its calls are the members)."""
        return self._get(conversation_id).group_id

    def _get(self, conversation_id: str) -> _Conversation:
        with self._lock:
            conv = self._conversations.get(conversation_id)
        if conv is None:
            conv = self._load(conversation_id)
            with self._lock:
                conv = self._conversations.setdefault(conversation_id, conv)
        return conv

    def _load(self, conversation_id: str) -> _Conversation:
        """The conversation as recorded: its group's system prompt and its last successful turn (two queries)."""
        group = self.groups.lookup(GROUP_TYPE, conversation_id)
        if group is None:
            raise NotFoundError(f"no conversation {conversation_id!r}: start it with ConversationService.start()")
        system = (group.metadata_json or {}).get("system_prompt")
        last = self.calls.list(CallFilter(group_id=group.id, status="success", modality="chat"), newest_first=True, limit=1)
        turns: list[ChatMessage] = []
        if last:
            call = last[0]
            sent = call.request_json.get("messages", [])
            turns = [ChatMessage(m["role"], m["content"]) for m in sent if m.get("role") != "system"]
            turns.append(ChatMessage("assistant", (call.response_json or {}).get("text") or ""))
        return _Conversation(group.id, system, turns)


def _system(prompt: str | None) -> list[ChatMessage]:
    return [ChatMessage("system", prompt)] if prompt else []
