"""Hooks of a goal's main session that are not compaction: steering.

``tenax steer ID MSG`` queues a message in the store; before each model call the steering hook
hands every queued message to the engine to append, verbatim, as the user's. It is marked
consumed only once the engine has journaled it, and a message already in the journal (a crash
between the two) is never appended twice.
"""

from __future__ import annotations

from typing import Sequence

from tenax.core.engine import Action, Append, Hook, TurnContext
from tenax.core.protocols import Store

STEERING_PREFIX = "[user steering message] "


class SteeringHook(Hook):
    def __init__(self, store: Store, goal_id: str):
        self.store, self.goal_id = store, goal_id
        self._delivered: set[int] | None = None  # steering ids in the journal, learnt on first need

    def before_call(self, ctx: TurnContext) -> Sequence[Action]:
        pending = self.store.pending_steering(self.goal_id)
        if not pending:
            return ()
        if self._delivered is None:
            self._delivered = {s.payload.get("steering_id") for s in ctx.journal()
                               if s.kind == "user" and s.payload.get("why") == "steering"}
        actions: list[Action] = []
        for item in pending:
            consume = _consumer(self.store, item.id)
            if item.id in self._delivered:
                consume()
                continue
            self._delivered.add(item.id)
            actions.append(Append("user", {"text": STEERING_PREFIX + item.text, "why": "steering",
                                           "steering_id": item.id, "verbatim": item.text}, then=consume))
        return actions


def _consumer(store: Store, steering_id: int):
    return lambda: store.mark_steering_consumed(steering_id)
