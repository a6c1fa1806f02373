"""The schema's closed vocabularies and shared SQL expressions, without the ORM.

Repositories check values against these and build queries from them; `models.py` declares the
tables with them. Kept apart so a command that only reads and writes rows never imports
SQLAlchemy's ORM (about a tenth of a second of every start).
"""

from __future__ import annotations

CALL_STATUSES = ("success", "failed", "timeout", "cancelled")
MODALITIES = ("text", "chat", "embedding", "summarization", "image", "audio")
# Group types used by studyllm itself (the column is open: users may add their own).
GROUP_TYPES = (
    "dataset", "embedding_batch", "run", "step", "metrics", "summarization_batch",
    "batch", "conversation", "prompt_run",
)
LINK_TYPES = ("step", "contains", "depends_on", "generates")
# Roles of a group's member calls (the plan's): calls the group made, and calls of other runs it reused.
ROLE_OUTPUT = "output"
ROLE_INPUT = "input"

# The expression behind prompt search; queries must use the same text to hit the GIN index.
PROMPT_TSVECTOR_SQL = "to_tsvector('simple', coalesce(request_json->>'prompt', ''))"

# Token counts generated from tokens_json (migration 0003): NULL unless a number in [0, 1e15].
TOKEN_COLUMNS = ("prompt_tokens", "completion_tokens", "total_tokens")
