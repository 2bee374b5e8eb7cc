"""The "OpenAI-compatible server" mode of the simulator: quirks of real local servers (llama.cpp,
vLLM, Ollama, LM Studio...) on ``/v1/chat/completions``, each one a flag, so tests cover them offline.

    Simulator(script, compat=Compat(reject_null_content=True))   # or compat="llama.cpp"

Every flag reproduces a behaviour seen on a real server or documented in its tracker; the presets
in ``PRESETS`` bundle the ones a given server shows.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

LLAMA_CPP_CONTENT_ERROR = "Invalid 'content' type (ref: https://github.com/ggerganov/llama.cpp/issues/8367)"
STREAMED_TOOL_CHOICE_ERROR = "Automatic streaming tool choice is not supported"


class Compat(BaseModel):
    # Every streamed tool-call delta repeats the function name (OpenAI sends it in the first only).
    repeat_tool_name: bool = False
    # An assistant message whose content is null is refused with a 500 (older llama.cpp servers).
    reject_null_content: bool = False
    # How a prompt over the context window is answered: OpenAI's 400, llama.cpp's
    # exceed_context_size_error, vLLM's 400 wording, or an empty 200 (LM Studio's GGUF path).
    context_overflow: Literal["openai", "llama.cpp", "vllm", "empty"] = "openai"
    # False: the server never reports usage (no usage object, no usage chunk).
    report_usage: bool = True
    # The tools are left out of the prompt unless the request sends tool_choice.
    tools_need_tool_choice: bool = False
    # A streamed call that sends tool_choice gets an empty 200 stream (the server only logs why).
    refuse_streamed_tool_choice: bool = False


PRESETS: dict[str, Compat] = {
    "openai": Compat(),
    "llama.cpp": Compat(reject_null_content=True, context_overflow="llama.cpp"),
    "vllm": Compat(context_overflow="vllm"),
    "lm-studio": Compat(context_overflow="empty"),
}


def resolve(compat: Compat | str | None) -> Compat | None:
    if compat is None or isinstance(compat, Compat):
        return compat
    if compat not in PRESETS:
        raise ValueError(f"unknown compat preset {compat!r}; use one of: {', '.join(PRESETS)}")
    return PRESETS[compat]


def null_content_index(messages: list[Any]) -> int | None:
    """Index of the first message whose content is present and null."""
    for i, m in enumerate(messages):
        if isinstance(m, dict) and "content" in m and m["content"] is None:
            return i
    return None


def llama_error(status: int, message: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "type": kind, **extra}}


def context_overflow_body(style: str, tokens: int, window: int, max_output: int | None) -> dict[str, Any]:
    """The 400 body of ``style`` for a prompt of ``tokens`` over ``window``."""
    if style == "llama.cpp":
        return llama_error(400, "the request exceeds the available context size, try increasing it",
                           "exceed_context_size_error", n_prompt_tokens=tokens, n_ctx=window)
    completion = max_output or 0
    return {"object": "error", "type": "BadRequestError", "param": None, "code": 400,
            "message": f"This model's maximum context length is {window} tokens. However, you requested "
                       f"{tokens + completion} tokens ({tokens} in the messages, {completion} in the completion). "
                       "Please reduce the length of the messages or completion."}
