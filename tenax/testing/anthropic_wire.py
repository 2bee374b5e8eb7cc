"""Anthropic Messages API (``POST /v1/messages``): validation, cache blocks, responses, SSE."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any

from tenax.testing._common import InvalidRequest, Parsed, Turn, chunks, make_block, require, text_of, type_name
from tenax.testing.cache import AnthropicUsage, Block
from tenax.testing.script import SimRequest

API = "anthropic"

TOP_LEVEL = {
    "model", "messages", "max_tokens", "system", "tools", "tool_choice", "stream", "temperature", "top_p",
    "top_k", "stop_sequences", "metadata", "thinking", "service_tier", "container", "mcp_servers",
    "context_management", "output_config", "output_format", "inference_geo", "cache_control", "diagnostics",
    "speed", "user_profile_id", "workspace_id",
}
USER_BLOCKS = {"text", "image", "document", "tool_result", "search_result"}
ASSISTANT_BLOCKS = {"text", "tool_use", "thinking", "redacted_thinking", "server_tool_use",
                    "web_search_tool_result"}
ALL_BLOCKS = USER_BLOCKS | ASSISTANT_BLOCKS
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
MAX_BREAKPOINTS = 4
_SIG_KEY = b"tenax-simulator-thinking"

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               500: "api_error", 529: "overloaded_error"}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str, kind: str | None = None) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind or error_type(status), "message": message}}


def context_error(tokens: int, window: int) -> InvalidRequest:
    return InvalidRequest(f"prompt is too long: {tokens} tokens > {window} maximum")


def sign(thinking: str) -> str:
    return base64.b64encode(hmac.new(_SIG_KEY, thinking.encode("utf-8"), hashlib.sha256).digest()).decode()


# ---------------------------------------------------------------------------------------------- validation


def _cache_control(obj: dict[str, Any], path: str) -> str | None:
    """Validate a block's ``cache_control``; return its ttl ("5m"/"1h") or None."""
    cc = obj.get("cache_control")
    if cc is None:
        return None
    require(isinstance(cc, dict), f"{path}.cache_control: Input should be a valid dictionary")
    require(cc.get("type") == "ephemeral", f"{path}.cache_control.type: Input should be 'ephemeral'")
    for key in cc:
        require(key in ("type", "ttl"), f"{path}.cache_control.{key}: Extra inputs are not permitted")
    ttl = cc.get("ttl", "5m")
    require(ttl in ("5m", "1h"), f"{path}.cache_control.ttl: Input should be '5m' or '1h'")
    return ttl


def _strip_cc(block: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if k != "cache_control"}


def _validate_tools(tools: Any) -> list[dict[str, Any]]:
    require(isinstance(tools, list), f"tools: Input should be a valid list, got {type_name(tools)}")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        require(isinstance(tool, dict), f"tools.{i}: Input should be a valid dictionary")
        name = tool.get("name")
        require(isinstance(name, str), f"tools.{i}.name: Field required")
        kind = tool.get("type")
        if kind in (None, "custom"):
            require(bool(TOOL_NAME.match(name)),
                    f"tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
            schema = tool.get("input_schema")
            require(schema is not None, f"tools.{i}.custom.input_schema: Field required")
            require(isinstance(schema, dict) and schema.get("type") == "object",
                    f"tools.{i}.custom.input_schema.type: Input should be 'object'")
            desc = tool.get("description")
            require(desc is None or isinstance(desc, str), f"tools.{i}.custom.description: Input should be a valid string")
        require(name not in names, "tools: Tool names must be unique.")
        names.add(name)
    return tools


def _validate_block(block: Any, i: int, j: int, role: str, thinking_on: bool) -> None:
    path = f"messages.{i}.content.{j}"
    require(isinstance(block, dict), f"{path}: Input should be a valid dictionary")
    kind = block.get("type")
    require(isinstance(kind, str), f"{path}: Unable to extract tag using discriminator 'type'")
    if kind not in ALL_BLOCKS:
        raise InvalidRequest(
            f"{path}: Input tag '{kind}' found using 'type' does not match any of the expected tags: "
            + ", ".join(f"'{t}'" for t in sorted(ALL_BLOCKS))
        )
    allowed = USER_BLOCKS if role == "user" else ASSISTANT_BLOCKS
    require(kind in allowed, f"{path}: `{kind}` blocks are not allowed in `{role}` messages")
    if kind == "text":
        require(isinstance(block.get("text"), str), f"{path}.text: Field required")
        require(block["text"] != "", "messages: text content blocks must be non-empty")
    elif kind == "tool_use":
        require(isinstance(block.get("id"), str) and bool(TOOL_ID.match(block["id"])),
                f"{path}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        require(isinstance(block.get("name"), str), f"{path}.name: Field required")
        require(isinstance(block.get("input"), dict), f"{path}.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        require(isinstance(block.get("tool_use_id"), str), f"{path}.tool_use_id: Field required")
        content = block.get("content", "")
        require(isinstance(content, (str, list)), f"{path}.content: Input should be a valid string or list")
        if isinstance(content, list):
            for k, sub in enumerate(content):
                require(isinstance(sub, dict) and sub.get("type") in ("text", "image", "document", "search_result"),
                        f"{path}.content.{k}: tool_result content blocks must be text, image, document or search_result")
        require(isinstance(block.get("is_error", False), bool), f"{path}.is_error: Input should be a valid boolean")
    elif kind == "thinking":
        require(isinstance(block.get("thinking"), str), f"{path}.thinking: Field required")
        require(isinstance(block.get("signature"), str), f"{path}.signature: Field required")
        require("cache_control" not in block, f"{path}.thinking.cache_control: Extra inputs are not permitted")
        if block["signature"] != sign(block["thinking"]):
            raise InvalidRequest(f"{path}: Invalid `signature` in `thinking` block")
    elif kind == "redacted_thinking":
        require(isinstance(block.get("data"), str), f"{path}.data: Field required")
    _cache_control(block, path)


def _validate_messages(messages: Any, thinking_on: bool) -> list[list[dict[str, Any]]]:
    """Validate roles, blocks and the tool_use/tool_result pairing; return each message's blocks."""
    require(isinstance(messages, list), f"messages: Input should be a valid list, got {type_name(messages)}")
    require(len(messages) > 0, "messages: at least one message is required")
    all_blocks: list[list[dict[str, Any]]] = []
    for i, msg in enumerate(messages):
        require(isinstance(msg, dict), f"messages.{i}: Input should be a valid dictionary")
        role = msg.get("role")
        require(role is not None, f"messages.{i}.role: Field required")
        require(role in ("user", "assistant"), f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i == 0:
            require(role == "user", 'messages: first message must use the "user" role')
        elif role == messages[i - 1].get("role"):
            raise InvalidRequest(
                f'messages: roles must alternate between "user" and "assistant", but found multiple "{role}" '
                f"roles in a row (messages.{i - 1} and messages.{i})"
            )
        require("content" in msg, f"messages.{i}.content: Field required")
        for key in msg:
            require(key in ("role", "content"), f"messages.{i}.{key}: Extra inputs are not permitted")
        content = msg["content"]
        final_assistant = role == "assistant" and i == len(messages) - 1
        if isinstance(content, str):
            require(content != "" or final_assistant,
                    f"messages.{i}: all messages must have non-empty content except for the optional final "
                    "assistant message")
            blocks = [{"type": "text", "text": content}] if content else []
        elif isinstance(content, list):
            require(len(content) > 0 or final_assistant,
                    f"messages.{i}: all messages must have non-empty content except for the optional final "
                    "assistant message")
            for j, block in enumerate(content):
                _validate_block(block, i, j, role, thinking_on)
            blocks = content
        else:
            raise InvalidRequest(f"messages.{i}.content: Input should be a valid string or list")
        all_blocks.append(blocks)

    # tool_use -> tool_result pairing: next message, first, one per id, no strangers.
    seen_ids: set[str] = set()
    for i, msg in enumerate(messages):
        blocks = all_blocks[i]
        if msg["role"] == "assistant":
            ids = [b["id"] for b in blocks if b.get("type") == "tool_use"]
            for tid in ids:
                require(tid not in seen_ids, f"messages.{i}: `tool_use` ids must be unique, found duplicate {tid}")
                seen_ids.add(tid)
            if not ids:
                continue
            nxt = all_blocks[i + 1] if i + 1 < len(messages) else []
            lead: list[str] = []
            for b in nxt:
                if b.get("type") != "tool_result":
                    break
                lead.append(b["tool_use_id"])
            missing = [t for t in ids if t not in lead]
            if missing:
                late = [t for t in missing if any(b.get("type") == "tool_result" and b.get("tool_use_id") == t for b in nxt)]
                if late:
                    raise InvalidRequest(
                        f"messages.{i + 1}: `tool_result` blocks must come first in the user message content, "
                        f"before any other block; found the result for {', '.join(late)} after other content."
                    )
                raise InvalidRequest(
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                    f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block "
                    "in the next message."
                )
        else:
            prev_ids = (
                {b["id"] for b in all_blocks[i - 1] if b.get("type") == "tool_use"} if i > 0 else set()
            )
            answered: set[str] = set()
            for j, b in enumerate(blocks):
                if b.get("type") != "tool_result":
                    continue
                tid = b["tool_use_id"]
                if tid not in prev_ids:
                    raise InvalidRequest(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {tid}. "
                        "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                    )
                require(tid not in answered,
                        f"messages.{i}.content.{j}: each `tool_use` id may have only one `tool_result`, found a "
                        f"second result for {tid}")
                answered.add(tid)

    # Extended thinking: the assistant turn of an open tool loop must start with its thinking block.
    if thinking_on and len(messages) >= 2 and messages[-1]["role"] == "user":
        last_user = all_blocks[-1]
        if last_user and last_user[0].get("type") == "tool_result":
            prev = all_blocks[-2]
            if prev and prev[0].get("type") not in ("thinking", "redacted_thinking"):
                raise InvalidRequest(
                    f"messages.{len(messages) - 2}.content.0.type: Expected `thinking` or `redacted_thinking`, "
                    f"but found `{prev[0].get('type')}`. When `thinking` is enabled, a final `assistant` message "
                    "must start with a thinking block (preceding the lastmost set of `tool_use` and "
                    "`tool_result` blocks). Include the thinking blocks from previous turns, or disable `thinking`."
                )
    return all_blocks


def parse(body: dict[str, Any]) -> Parsed:
    for key in body:
        require(key in TOP_LEVEL, f"{key}: Extra inputs are not permitted")
    model = body.get("model")
    require(model is not None, "model: Field required")
    require(isinstance(model, str) and model != "", "model: Input should be a valid non-empty string")
    max_tokens = body.get("max_tokens")
    require(max_tokens is not None, "max_tokens: Field required")
    require(isinstance(max_tokens, int) and not isinstance(max_tokens, bool), "max_tokens: Input should be a valid integer")
    require(max_tokens >= 1, "max_tokens: Input should be greater than or equal to 1")
    require("messages" in body, "messages: Field required")
    stream = body.get("stream", False)
    require(isinstance(stream, bool), "stream: Input should be a valid boolean")

    thinking = body.get("thinking")
    thinking_on = False
    if thinking is not None:
        require(isinstance(thinking, dict) and thinking.get("type") in ("enabled", "disabled", "adaptive"),
                "thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'")
        if thinking["type"] == "enabled":
            budget = thinking.get("budget_tokens")
            require(isinstance(budget, int), "thinking.enabled.budget_tokens: Field required")
            require(budget >= 1024, "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
            require(budget < max_tokens, "`max_tokens` must be greater than `thinking.budget_tokens`.")
        thinking_on = thinking["type"] != "disabled"

    tools = _validate_tools(body.get("tools", []) if body.get("tools") is not None else [])
    tool_names = [t["name"] for t in tools]
    choice = body.get("tool_choice")
    if choice is not None:
        require(isinstance(choice, dict) and choice.get("type") in ("auto", "any", "tool", "none"),
                "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
        if choice["type"] == "tool":
            require(choice.get("name") in tool_names, f"tool_choice.name: tool '{choice.get('name')}' is not defined in tools")
        if choice["type"] in ("any", "tool"):
            require(bool(tools), "tool_choice: tool_choice may only be specified while providing tools")

    system = body.get("system")
    system_blocks: list[dict[str, Any]] = []
    if isinstance(system, str):
        system_blocks = [{"type": "text", "text": system}] if system else []
    elif isinstance(system, list):
        for i, b in enumerate(system):
            require(isinstance(b, dict) and b.get("type") == "text", f"system.{i}.type: Input should be 'text'")
            require(isinstance(b.get("text"), str) and b["text"] != "", "system: text content blocks must be non-empty")
            _cache_control(b, f"system.{i}")
        system_blocks = system
    elif system is not None:
        raise InvalidRequest("system: Input should be a valid string or a list of text blocks")

    messages = body["messages"]
    msg_blocks = _validate_messages(messages, thinking_on)

    has_tool_blocks = any(b.get("type") in ("tool_use", "tool_result") for bl in msg_blocks for b in bl)
    require(not has_tool_blocks or bool(tools), "Requests which include `tool_use` or `tool_result` blocks must define tools.")

    # Cache blocks, in prefix order tools -> system -> messages.
    blocks: list[Block] = []
    for i, tool in enumerate(tools):
        blocks.append(make_block({"tool": _strip_cc(tool)}, breakpoint=_cache_control(tool, f"tools.{i}")))
    for b in system_blocks:
        blocks.append(make_block({"system": _strip_cc(b)}, text=b["text"], breakpoint=_cache_control(b, "system")))
    for msg, bl in zip(messages, msg_blocks):
        for b in bl:
            kind = b.get("type")
            text: str | None = None
            if kind == "text":
                text = b["text"]
            elif kind == "thinking":
                text = b["thinking"]
            elif kind == "tool_result" and isinstance(b.get("content", ""), str):
                text = b.get("content", "") or " "
            blocks.append(make_block({"role": msg["role"], "block": _strip_cc(b)}, text=text,
                                     breakpoint=_cache_control(b, "messages")))
    top_cc = body.get("cache_control")
    if top_cc is not None:
        ttl = _cache_control(body, "")
        if blocks and blocks[-1].breakpoint is None:
            blocks[-1] = Block(key=blocks[-1].key, tokens=blocks[-1].tokens, breakpoint=ttl)
    bps = [b.breakpoint for b in blocks if b.breakpoint]
    require(len(bps) <= MAX_BREAKPOINTS,
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {len(bps)}.")
    for a, b in zip(bps, bps[1:]):
        require(not (a == "5m" and b == "1h"),
                "a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block; "
                "put longer-lived breakpoints first")

    last_user = next((k for k in range(len(messages) - 1, -1, -1) if messages[k]["role"] == "user"), 0)
    ub = msg_blocks[last_user]
    req = SimRequest(
        api=API,
        model=model,
        system="\n".join(b["text"] for b in system_blocks),
        tool_names=tool_names,
        last_user_text="".join(b["text"] for b in ub if b.get("type") == "text"),
        last_tool_results=[
            {"id": b["tool_use_id"], "content": text_of(b.get("content", "")), "is_error": bool(b.get("is_error", False))}
            for b in ub if b.get("type") == "tool_result"
        ],
        n_messages=len(messages),
        body=body,
    )
    return Parsed(req=req, blocks=blocks, stream=stream, max_output=max_tokens, extra={"thinking": thinking_on})


# ---------------------------------------------------------------------------------------------- responses


def usage(u: AnthropicUsage, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": u.cache_creation_input_tokens,
        "cache_read_input_tokens": u.cache_read_input_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": u.ephemeral_5m_input_tokens,
            "ephemeral_1h_input_tokens": u.ephemeral_1h_input_tokens,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def content_blocks(turn: Turn) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if turn.reasoning:
        out.append({"type": "thinking", "thinking": turn.reasoning, "signature": sign(turn.reasoning)})
    if turn.text:
        out.append({"type": "text", "text": turn.text, "citations": None})
    for c in turn.calls:  # a call cut off by max_tokens has no complete input to show
        out.append({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments if c.cut is None else {}})
    return out


def stop_reason(turn: Turn) -> str:
    if turn.truncated:
        return "max_tokens"
    return "tool_use" if turn.calls else "end_turn"


def message(msg_id: str, model: str, turn: Turn, use: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content_blocks(turn),
        "stop_reason": stop_reason(turn),
        "stop_sequence": None,
        "usage": use,
    }


def stream_events(msg: dict[str, Any], cut: dict[str, str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The SSE events of a message, in the order the API sends them. ``cut``: tool_use id -> the
    input JSON as far as it got before max_tokens (streamed instead of the whole input)."""
    use = msg["usage"]
    start = dict(msg, content=[], stop_reason=None, stop_sequence=None, usage=dict(use, output_tokens=1))
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start}),
                                                  ("ping", {"type": "ping"})]
    for index, block in enumerate(msg["content"]):
        kind = block["type"]
        if kind == "text":
            first = {"type": "text", "text": "", "citations": None}
            deltas = [{"type": "text_delta", "text": piece} for piece in chunks(block["text"])]
        elif kind == "thinking":
            first = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": piece} for piece in chunks(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            first = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            text = (cut or {}).get(block["id"], json.dumps(block["input"], ensure_ascii=False))
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in chunks(text, 16)]
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": first}))
        for d in deltas:
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
        "usage": {k: use[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
                                      "output_tokens")},
    }))
    events.append(("message_stop", {"type": "message_stop"}))
    return events
