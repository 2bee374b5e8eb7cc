"""`tenax goal --json`: the goal's journal as jsonl lines (the export's schema) while it runs.

An ``on_event`` consumer: after each step the engine commits, it writes every step committed since
the last call, in every session of the goal (sub-agents journal without calling on_event; their
steps come out on the main session's next step, or in ``finish``). Sessions and agents get a line
when first seen (an agent again when its status changes); the goal gets one at the start and one
at the end with its final status.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from tenax.export.transcript import (agent_record, goal_record, jsonl_encoder, session_record, session_tree,
                                     step_record)


class JsonStream:
    def __init__(self, store: Any, goal_id: str, write: Callable[[str], None]):
        self.store, self.goal_id, self.write = store, goal_id, write
        self.line = jsonl_encoder(store.get_goal(goal_id))
        self.seqs: dict[str, int] = {}  # session id -> the last seq written
        self.agents: dict[str, str] = {}  # agent id -> the status last written
        self.done: set[str] = set()  # sessions of ended sub-agents, read to their end
        self.lock = threading.Lock()

    def _put(self, record: dict[str, Any]) -> None:
        self.write(self.line(record) + "\n")

    def start(self) -> None:
        """The goal line; on resume, the journal so far follows."""
        self._put(goal_record(self.store.get_goal(self.goal_id)))
        self.flush()

    def __call__(self, kind: str, payload: dict[str, Any]) -> None:
        self.flush()

    def flush(self) -> None:
        with self.lock:  # a sub-agent's provider retry reports from its own thread
            self._flush()

    def _flush(self) -> None:
        ended = set()
        for a in self.store.agents_for_goal(self.goal_id):
            if a.finished:
                ended.add(a.session_id)
            if self.agents.get(a.id) != a.status:
                self.agents[a.id] = a.status
                self._put(agent_record(a))
        for depth, s in session_tree(self.store, self.goal_id):
            if s.id in self.done:
                continue
            if s.id not in self.seqs:
                self.seqs[s.id] = 0
                self._put(session_record(depth, s))
            for st in self.store.steps(s.id, after_seq=self.seqs[s.id]):
                self._put(step_record(s.id, st))
                self.seqs[s.id] = st.seq
            if s.id in ended:  # its agent had ended before this read: nothing more comes
                self.done.add(s.id)

    def finish(self) -> None:
        """Whatever the run journaled after its last on_event, then the goal with its end status."""
        self.flush()
        self._put(goal_record(self.store.get_goal(self.goal_id)))
