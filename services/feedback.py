"""FeedbackService: thumbs up/down and an optional comment on assistant replies, for review on History.

The chat page calls it; row-level security in the database decides whose feedback may be written (only the
owner's, on their own replies) and read (the owner's; everyone's for a reviewer). This layer only bounds
the comment by CHAT_FEEDBACK_COMMENT_CHARS and says what to ask for.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from services.auth import Principal
from services.store import Feedback, FeedbackStore, InvalidInput, Message, Rating, check_rating, clean_feedback_comment

# Replies that can carry feedback: finished ones (a reply still streaming may yet change).
RATEABLE_STATUSES = frozenset({"complete", "interrupted", "error"})


def rateable(message: Message) -> bool:
    return message.role == "assistant" and message.status in RATEABLE_STATUSES


class FeedbackService:
    def __init__(self, store: FeedbackStore, *, comment_chars: int, enabled: bool = True) -> None:
        self.store = store
        self.comment_chars = comment_chars
        self.enabled = enabled

    def for_messages(self, principal: Principal, messages: Sequence[Message]) -> Mapping[uuid.UUID, Feedback]:
        """The stored feedback on those of `messages` that can carry it, by message id."""
        ids = [m.id for m in messages if rateable(m)]
        return self.store.feedback_for(principal, ids) if ids else {}

    def give(
        self, principal: Principal, message_id: uuid.UUID | str, rating: str, comment: str | None = None
    ) -> Feedback:
        """Give or change the thumb on one of the principal's replies. `comment`: None keeps the stored
        one, "" removes it, other text replaces it. NotFound for a reply that is not theirs or not finished."""
        if not self.enabled:
            raise InvalidInput("Feedback is switched off on this server.")
        thumb: Rating = check_rating(rating)
        note = None if comment is None else (clean_feedback_comment(comment, self.comment_chars) or "")
        return self.store.set_feedback(principal, message_id, thumb, note)

    def clear(self, principal: Principal, message_id: uuid.UUID | str) -> bool:
        """Take the thumb back: the feedback and its comment are removed. Whether there was any."""
        return self.store.clear_feedback(principal, message_id)
