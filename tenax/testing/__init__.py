"""Provider simulator: a real HTTP server speaking the Anthropic Messages API and the OpenAI
Responses / Chat Completions APIs, with the providers' validation and prompt-caching rules.

Used by tests, benches and ``tenax demo``; run one by hand with
``python -m tenax.testing --script FILE --port N``.
"""

from tenax.testing.compat import Compat
from tenax.testing.script import Policy, Reply, Script, SimError, SimRequest, ToolCall
from tenax.testing.server import RecordedRequest, Simulator
from tenax.testing.tokens import SimClock, count_tokens

__all__ = [
    "Simulator",
    "Compat",
    "Script",
    "Reply",
    "ToolCall",
    "SimError",
    "SimRequest",
    "SimClock",
    "RecordedRequest",
    "Policy",
    "count_tokens",
]
