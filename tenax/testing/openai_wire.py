"""OpenAI Responses (``POST /v1/responses``) and Chat Completions (``POST /v1/chat/completions``):
validation, cache blocks, responses and SSE."""

from __future__ import annotations

import time
from typing import Any

from tenax.testing._common import InvalidRequest, Parsed, Turn, chunks, make_block, require, text_of, type_name
from tenax.testing.script import SimRequest

RESPONSES = "openai-responses"
CHAT = "openai-chat"

RESPONSES_TOP = {
    "model", "input", "instructions", "tools", "tool_choice", "stream", "stream_options", "max_output_tokens",
    "max_tool_calls", "metadata", "parallel_tool_calls", "previous_response_id", "conversation", "prompt",
    "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options", "reasoning", "safety_identifier",
    "service_tier", "store", "temperature", "text", "top_logprobs", "top_p", "truncation", "user", "include",
    "background", "context_management",
}
CHAT_TOP = {
    "model", "messages", "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
    "max_completion_tokens", "max_tokens", "metadata", "modalities", "n", "parallel_tool_calls", "prediction",
    "presence_penalty", "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options", "reasoning_effort",
    "response_format", "safety_identifier", "seed", "service_tier", "stop", "store", "stream", "stream_options",
    "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
}
INPUT_PARTS = ("input_text", "input_image", "input_file")
OUTPUT_PARTS = ("output_text", "refusal")
ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning", "item_reference")
CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def _values(options: tuple[str, ...] | list[str]) -> str:
    quoted = [f"'{o}'" for o in options]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 1 else quoted[0]


def bad(message: str, param: str | None = None, code: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def need(cond: bool, message: str, param: str | None = None, code: str | None = None) -> None:
    if not cond:
        raise bad(message, param, code)


def error_type(status: int) -> str:
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return {401: "invalid_request_error", 403: "invalid_request_error", 404: "invalid_request_error"}.get(
        status, "invalid_request_error")


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None,
               kind: str | None = None) -> dict[str, Any]:
    if code is None and status == 429:
        code = "rate_limit_exceeded"
    return {"error": {"message": message, "type": kind or error_type(status), "param": param, "code": code}}


def context_error(api: str, tokens: int, window: int) -> InvalidRequest:
    if api == CHAT:
        return bad(
            f"This model's maximum context length is {window} tokens. However, your messages resulted in "
            f"{tokens} tokens. Please reduce the length of the messages.", "messages", "context_length_exceeded")
    return bad("Your input exceeds the context window of this model. Please adjust your input and try again. "
               f"({tokens} tokens > {window} maximum)", "input", "context_length_exceeded")


def _check_top(body: dict[str, Any], allowed: set[str], required: tuple[str, ...]) -> None:
    for key in body:
        need(key in allowed, f"Unknown parameter: '{key}'.", key, "unknown_parameter")
    for key in required:
        need(body.get(key) is not None, f"Missing required parameter: '{key}'.", key, "missing_required_parameter")
    need(isinstance(body["model"], str) and body["model"] != "",
         f"Invalid type for 'model': expected a string, but got {type_name(body['model'])} instead.", "model",
         "invalid_type")
    stream = body.get("stream", False)
    need(stream is None or isinstance(stream, bool),
         f"Invalid type for 'stream': expected a boolean, but got {type_name(stream)} instead.", "stream",
         "invalid_type")
    if body.get("stream_options") is not None:
        need(bool(stream), "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
             "stream_options")
    key = body.get("prompt_cache_key")
    need(key is None or isinstance(key, str),
         f"Invalid type for 'prompt_cache_key': expected a string, but got {type_name(key)} instead.",
         "prompt_cache_key", "invalid_type")


def _int_limit(body: dict[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    need(isinstance(value, int) and not isinstance(value, bool),
         f"Invalid type for '{name}': expected an integer, but got {type_name(value)} instead.", name, "invalid_type")
    need(value >= minimum,
         f"Invalid '{name}': integer below minimum value. Expected a value >= {minimum}, but got {value} instead.",
         name, "integer_below_min_value")
    return value


def _function_tools(tools: Any, *, types: tuple[str, ...] | None, nested: bool) -> list[dict[str, Any]]:
    """The ``tools`` array checked as OpenAI checks it (``types``: the tool types accepted, ``None``: any
    string). A function tool's name and parameters sit in the tool itself (Responses) or, ``nested``,
    under its ``function`` key (Chat Completions)."""
    if tools is None:
        return []
    need(isinstance(tools, list), f"Invalid type for 'tools': expected an array, but got {type_name(tools)} instead.",
         "tools", "invalid_type")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        need(isinstance(kind, str) and (types is None or kind in types),
             f"Missing required parameter: 'tools[{i}].type'.", f"tools[{i}].type", "missing_required_parameter")
        if kind != "function":
            continue
        fn, where = (tool.get("function"), f"tools[{i}].function") if nested else (tool, f"tools[{i}]")
        need(isinstance(fn, dict) and isinstance(fn.get("name"), str) and fn["name"] != "",
             f"Missing required parameter: '{where}.name'.", f"{where}.name", "missing_required_parameter")
        params = fn.get("parameters")
        need(params is None or (isinstance(params, dict) and params.get("type") == "object"),
             f"Invalid schema for function '{fn['name']}': schema must be a JSON Schema of 'type: \"object\"'.",
             f"{where}.parameters", "invalid_function_parameters")
        need(fn["name"] not in names, f"Duplicate tool name: '{fn['name']}'. Tool names must be unique.", "tools")
        names.add(fn["name"])
    return tools


# ------------------------------------------------------------------------------------------ Responses API


def _item_type(item: dict[str, Any]) -> str | None:
    if "type" in item:
        return item["type"]
    return "message" if "role" in item else None


def parse_responses(body: dict[str, Any]) -> Parsed:
    _check_top(body, RESPONSES_TOP, ("model", "input"))
    if body.get("previous_response_id") is not None:
        raise bad(f"Previous response with id '{body['previous_response_id']}' not found. (The simulator stores "
                  "nothing: send the whole input.)", "previous_response_id", "previous_response_not_found")
    need(body.get("conversation") is None, "The simulator does not support 'conversation': send the whole input.",
         "conversation", "unsupported_parameter")
    limit = _int_limit(body, "max_output_tokens", 16)
    instructions = body.get("instructions")
    need(instructions is None or isinstance(instructions, str),
         f"Invalid type for 'instructions': expected a string, but got {type_name(instructions)} instead.",
         "instructions", "invalid_type")
    tools = _function_tools(body.get("tools"), types=None, nested=False)
    fn_names = [t["name"] for t in tools if t.get("type") == "function"]

    raw = body["input"]
    if isinstance(raw, str):
        items: list[dict[str, Any]] = [{"role": "user", "content": raw}]
    else:
        need(isinstance(raw, list), f"Invalid type for 'input': expected a string or an array, but got "
             f"{type_name(raw)} instead.", "input", "invalid_type")
        items = raw
    calls: dict[str, int] = {}
    outputs: dict[str, int] = {}
    for i, item in enumerate(items):
        p = f"input[{i}]"
        need(isinstance(item, dict), f"Invalid type for '{p}': expected an object, but got {type_name(item)} instead.",
             p, "invalid_type")
        kind = _item_type(item)
        need(kind is not None, f"Missing required parameter: '{p}.type'.", f"{p}.type", "missing_required_parameter")
        need(kind in ITEM_TYPES, f"Invalid value: '{kind}'. Supported values are: {_values(ITEM_TYPES)}.",
             f"{p}.type", "invalid_value")
        if kind == "message":
            role = item.get("role")
            roles = ("user", "assistant", "system", "developer")
            need(role in roles, f"Invalid value: '{role}'. Supported values are: {_values(roles)}.", f"{p}.role",
                 "invalid_value")
            content = item.get("content")
            need(content is not None, f"Missing required parameter: '{p}.content'.", f"{p}.content",
                 "missing_required_parameter")
            if isinstance(content, list):
                allowed = OUTPUT_PARTS if role == "assistant" else INPUT_PARTS
                for j, part in enumerate(content):
                    ptype = part.get("type") if isinstance(part, dict) else None
                    need(ptype in allowed, f"Invalid value: '{ptype}'. Supported values are: {_values(allowed)}.",
                         f"{p}.content[{j}]", "invalid_value")
                    if ptype in ("input_text", "output_text"):
                        need(isinstance(part.get("text"), str), f"Missing required parameter: '{p}.content[{j}].text'.",
                             f"{p}.content[{j}].text", "missing_required_parameter")
            else:
                need(isinstance(content, str), f"Invalid type for '{p}.content': expected a string or an array.",
                     f"{p}.content", "invalid_type")
        elif kind == "function_call":
            for f in ("call_id", "name", "arguments"):
                need(isinstance(item.get(f), str), f"Missing required parameter: '{p}.{f}'.", f"{p}.{f}",
                     "missing_required_parameter")
            need(item["call_id"] not in calls, f"Duplicate function call with call_id {item['call_id']}.", p)
            calls[item["call_id"]] = i
        elif kind == "function_call_output":
            need(isinstance(item.get("call_id"), str), f"Missing required parameter: '{p}.call_id'.", f"{p}.call_id",
                 "missing_required_parameter")
            need(isinstance(item.get("output"), (str, list)), f"Missing required parameter: '{p}.output'.",
                 f"{p}.output", "missing_required_parameter")
            cid = item["call_id"]
            need(cid in calls, f"No tool call found for function call output with call_id {cid}.", "input")
            need(cid not in outputs, f"Duplicate function call output for call_id {cid}.", "input")
            outputs[cid] = i
        elif kind == "reasoning":
            need(isinstance(item.get("summary"), list), f"Missing required parameter: '{p}.summary'.",
                 f"{p}.summary", "missing_required_parameter")
        else:
            raise bad(f"Item with id '{item.get('id')}' not found. Items are not persisted by the simulator.",
                      "input")
    for cid in calls:
        need(cid in outputs, f"No tool output found for function call {cid}.", "input")
    if calls:
        need(bool(fn_names), "Tools must be defined when 'input' contains function_call or function_call_output "
             "items.", "tools")

    blocks = []
    if instructions:
        blocks.append(make_block({"instructions": instructions}, text=instructions))
    for tool in tools:
        blocks.append(make_block({"tool": tool}))
    for item in items:
        blocks.append(make_block({"item": item}, text=_item_text(item)))

    system = [instructions] if instructions else []
    system += [text_of(it["content"]) for it in items
               if _item_type(it) == "message" and it.get("role") in ("system", "developer")]
    trailing = _trailing_user_turn(items, lambda it: _item_type(it) == "function_call"
                                   or (_item_type(it) == "message" and it.get("role") == "assistant"))
    req = SimRequest(
        api=RESPONSES,
        model=body["model"],
        system="\n".join(system),
        tool_names=fn_names,
        last_user_text="\n".join(text_of(it["content"]) for it in trailing
                                 if _item_type(it) == "message" and it.get("role") == "user"),
        last_tool_results=[{"id": it["call_id"], "content": text_of(it["output"]), "is_error": False}
                           for it in trailing if _item_type(it) == "function_call_output"],
        n_messages=len(items),
        body=body,
    )
    return Parsed(req=req, blocks=blocks, stream=bool(body.get("stream")), max_output=limit,
                  extra={"cache_key": body.get("prompt_cache_key")})


def _item_text(item: dict[str, Any]) -> str | None:
    kind = _item_type(item)
    if kind == "message" and isinstance(item.get("content"), str):
        return item["content"] or " "
    if kind == "function_call_output" and isinstance(item.get("output"), str):
        return item["output"] or " "
    return None


def _trailing_user_turn(items: list[dict[str, Any]], is_model_item) -> list[dict[str, Any]]:
    """The items after the last model-produced item (the "last user turn")."""
    k = len(items)
    while k > 0 and not is_model_item(items[k - 1]):
        k -= 1
    return items[k:]


def responses_usage(input_tokens: int, cached: int, turn: Turn) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": turn.output_tokens,
        "output_tokens_details": {"reasoning_tokens": turn.reasoning_tokens},
        "total_tokens": input_tokens + turn.output_tokens,
    }


def responses_object(resp_id: str, body: dict[str, Any], turn: Turn, use: dict[str, Any] | None,
                     ids, status: str = "completed") -> dict[str, Any]:
    """The Response object; ``ids.next(prefix)`` makes item ids."""
    output: list[dict[str, Any]] = []
    if turn.reasoning:
        item: dict[str, Any] = {"type": "reasoning", "id": ids.next("rs_sim_"),
                                "summary": [{"type": "summary_text", "text": turn.reasoning}]}
        if "reasoning.encrypted_content" in (body.get("include") or []):
            item["encrypted_content"] = "sim-encrypted:" + turn.reasoning.encode().hex()[:64]
        output.append(item)
    if turn.text or not turn.calls:
        output.append({"type": "message", "id": ids.next("msg_sim_"), "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": turn.text, "annotations": [], "logprobs": []}]})
    for c in turn.calls:
        if not c.item_id:
            c.item_id = ids.next("fc_sim_")
        output.append({"type": "function_call", "id": c.item_id, "call_id": c.id, "name": c.name,
                       "arguments": c.wire_arguments, "status": "completed" if c.cut is None else "incomplete"})
    return {
        "id": resp_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": use,
        "metadata": body.get("metadata") or {},
    }


def responses_events(resp: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The SSE events of a Response, in the order the API sends them."""
    events: list[tuple[str, dict[str, Any]]] = []

    def emit(kind: str, **data: Any) -> None:
        events.append((kind, {"type": kind, "sequence_number": len(events), **data}))

    pending = dict(resp, status="in_progress", output=[], usage=None, incomplete_details=None)
    emit("response.created", response=pending)
    emit("response.in_progress", response=pending)
    for k, item in enumerate(resp["output"]):
        iid = item["id"]
        if item["type"] == "reasoning":
            emit("response.output_item.added", output_index=k, item=dict(item, summary=[]))
            for s, part in enumerate(item["summary"]):
                emit("response.reasoning_summary_part.added", item_id=iid, output_index=k, summary_index=s,
                     part={"type": "summary_text", "text": ""})
                for piece in chunks(part["text"]):
                    emit("response.reasoning_summary_text.delta", item_id=iid, output_index=k, summary_index=s,
                         delta=piece)
                emit("response.reasoning_summary_text.done", item_id=iid, output_index=k, summary_index=s,
                     text=part["text"])
                emit("response.reasoning_summary_part.done", item_id=iid, output_index=k, summary_index=s,
                     part=part)
        elif item["type"] == "message":
            emit("response.output_item.added", output_index=k, item=dict(item, status="in_progress", content=[]))
            for c, part in enumerate(item["content"]):
                emit("response.content_part.added", item_id=iid, output_index=k, content_index=c,
                     part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
                for piece in chunks(part["text"]):
                    emit("response.output_text.delta", item_id=iid, output_index=k, content_index=c, delta=piece,
                         logprobs=[])
                emit("response.output_text.done", item_id=iid, output_index=k, content_index=c, text=part["text"],
                     logprobs=[])
                emit("response.content_part.done", item_id=iid, output_index=k, content_index=c, part=part)
        else:
            emit("response.output_item.added", output_index=k, item=dict(item, arguments="", status="in_progress"))
            for piece in chunks(item["arguments"], 16):
                emit("response.function_call_arguments.delta", item_id=iid, output_index=k, delta=piece)
            emit("response.function_call_arguments.done", item_id=iid, output_index=k, arguments=item["arguments"],
                 name=item["name"])
        emit("response.output_item.done", output_index=k, item=item)
    emit("response.incomplete" if resp["status"] == "incomplete" else "response.completed", response=resp)
    return events


# ------------------------------------------------------------------------------------------ Chat Completions


def parse_chat(body: dict[str, Any]) -> Parsed:
    _check_top(body, CHAT_TOP, ("model", "messages"))
    limit = _int_limit(body, "max_completion_tokens", 1)
    if limit is None:
        limit = _int_limit(body, "max_tokens", 1)
    tools = _function_tools(body.get("tools"), types=("function", "custom"), nested=True)
    fn_names = [t["function"]["name"] for t in tools if t.get("type") == "function"]
    messages = body["messages"]
    need(isinstance(messages, list), f"Invalid type for 'messages': expected an array, but got "
         f"{type_name(messages)} instead.", "messages", "invalid_type")
    need(len(messages) > 0, "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
         "empty array instead.", "messages", "empty_array")

    pending: list[str] = []  # tool_call ids of the open assistant message still awaiting a tool message
    open_ids: set[str] = set()
    open_at = -1
    has_tool_parts = False
    for i, msg in enumerate(messages):
        p = f"messages[{i}]"
        need(isinstance(msg, dict), f"Invalid type for '{p}': expected an object, but got {type_name(msg)} instead.",
             p, "invalid_type")
        role = msg.get("role")
        need(role is not None, f"Missing required parameter: '{p}.role'.", f"{p}.role", "missing_required_parameter")
        need(role in CHAT_ROLES, f"Invalid value: '{role}'. Supported values are: {_values(CHAT_ROLES)}.",
             f"{p}.role", "invalid_value")
        content = msg.get("content")
        if role == "tool":
            has_tool_parts = True
            if open_at < 0:
                raise bad("Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                          "with 'tool_calls'.", f"messages.[{i}].role")
            tcid = msg.get("tool_call_id")
            need(isinstance(tcid, str), f"Missing required parameter: '{p}.tool_call_id'.", f"{p}.tool_call_id",
                 "missing_required_parameter")
            need(tcid in open_ids, f"Invalid parameter: 'tool_call_id' of '{tcid}' not found in 'tool_calls' of "
                 "previous message.", f"messages.[{i}].tool_call_id")
            need(tcid in pending, f"Invalid parameter: duplicate tool message for 'tool_call_id' of '{tcid}'.",
                 f"messages.[{i}].tool_call_id")
            pending.remove(tcid)
            need(isinstance(content, (str, list)), f"Missing required parameter: '{p}.content'.", f"{p}.content",
                 "missing_required_parameter")
            continue
        if pending:
            raise bad("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                      f"'tool_call_id'. The following tool_call_ids did not have response messages: "
                      f"{', '.join(pending)}", f"messages.[{open_at}].role")
        open_at, open_ids = -1, set()
        if role == "assistant":
            calls = msg.get("tool_calls") or []
            need(isinstance(calls, list), f"Invalid type for '{p}.tool_calls': expected an array.", f"{p}.tool_calls",
                 "invalid_type")
            need(content is not None or calls, f"Invalid value for '{p}.content': expected a string or an array when "
                 "'tool_calls' is empty.", f"{p}.content")
            for j, call in enumerate(calls):
                cp = f"{p}.tool_calls[{j}]"
                need(isinstance(call, dict) and isinstance(call.get("id"), str), f"Missing required parameter: "
                     f"'{cp}.id'.", f"{cp}.id", "missing_required_parameter")
                fn = call.get("function")
                need(isinstance(fn, dict) and isinstance(fn.get("name"), str) and isinstance(fn.get("arguments"), str),
                     f"Missing required parameter: '{cp}.function'.", f"{cp}.function", "missing_required_parameter")
            if calls:
                has_tool_parts = True
                open_at = i
                open_ids = {c["id"] for c in calls}
                pending = [c["id"] for c in calls]
        else:
            need(content is not None, f"Missing required parameter: '{p}.content'.", f"{p}.content",
                 "missing_required_parameter")
            if isinstance(content, list):
                for j, part in enumerate(content):
                    ptype = part.get("type") if isinstance(part, dict) else None
                    allowed = ("text", "image_url", "input_audio", "file") if role == "user" else ("text",)
                    need(ptype in allowed, f"Invalid value: '{ptype}'. Supported values are: {_values(allowed)}.",
                         f"{p}.content[{j}].type", "invalid_value")
            else:
                need(isinstance(content, str), f"Invalid type for '{p}.content': expected a string or an array.",
                     f"{p}.content", "invalid_type")
    if pending:
        raise bad("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                  f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(pending)}",
                  f"messages.[{open_at}].role")
    if has_tool_parts:
        need(bool(fn_names), "Invalid parameter: 'tools' must be defined when 'messages' contain 'tool_calls' or "
             "'tool' messages.", "tools")

    lead = 0
    while lead < len(messages) and messages[lead]["role"] in ("system", "developer"):
        lead += 1
    blocks = [make_block({"message": m}, text=_chat_text(m)) for m in messages[:lead]]
    blocks += [make_block({"tool": t}) for t in tools]
    blocks += [make_block({"message": m}, text=_chat_text(m)) for m in messages[lead:]]

    trailing = _trailing_user_turn(messages, lambda m: m["role"] == "assistant")
    req = SimRequest(
        api=CHAT,
        model=body["model"],
        system="\n".join(text_of(m["content"]) for m in messages if m["role"] in ("system", "developer")),
        tool_names=fn_names,
        last_user_text="\n".join(text_of(m["content"]) for m in trailing if m["role"] == "user"),
        last_tool_results=[{"id": m["tool_call_id"], "content": text_of(m["content"]), "is_error": False}
                           for m in trailing if m["role"] == "tool"],
        n_messages=len(messages),
        body=body,
    )
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return Parsed(req=req, blocks=blocks, stream=bool(body.get("stream")), max_output=limit,
                  extra={"cache_key": body.get("prompt_cache_key"), "include_usage": include_usage})


def _chat_text(msg: dict[str, Any]) -> str | None:
    if msg.get("role") == "assistant" and msg.get("tool_calls"):
        return None
    content = msg.get("content")
    if isinstance(content, str):
        return content or " "
    return None


def chat_usage(input_tokens: int, cached: int, turn: Turn) -> dict[str, Any]:
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": turn.output_tokens,
        "total_tokens": input_tokens + turn.output_tokens,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": turn.reasoning_tokens, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def finish_reason(turn: Turn) -> str:
    if turn.truncated:
        return "length"
    return "tool_calls" if turn.calls else "stop"


def chat_completion(cid: str, model: str, turn: Turn, use: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": turn.text if (turn.text or not turn.calls) else None,
                               "refusal": None}
    if turn.calls:
        message["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.wire_arguments}} for c in turn.calls]
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_tenax_sim",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason(turn)}],
        "usage": use,
    }


def chat_chunks(completion: dict[str, Any], include_usage: bool, *, repeat_name: bool = False
                ) -> list[dict[str, Any]]:
    """The ``data:`` payloads of a streamed chat completion (``[DONE]`` not included).
    ``repeat_name``: every tool-call delta carries the function name again (a server quirk)."""
    base = {k: completion[k] for k in ("id", "created", "model", "system_fingerprint")}
    base["object"] = "chat.completion.chunk"
    if include_usage:
        base["usage"] = None
    choice = completion["choices"][0]
    msg = choice["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])

    out = [chunk({"role": "assistant", "content": "", "refusal": None})]
    for piece in chunks(msg["content"] or ""):
        out.append(chunk({"content": piece}))
    for k, call in enumerate(msg.get("tool_calls") or []):
        out.append(chunk({"tool_calls": [{"index": k, "id": call["id"], "type": "function",
                                          "function": {"name": call["function"]["name"], "arguments": ""}}]}))
        for piece in chunks(call["function"]["arguments"], 16):
            fn = {"name": call["function"]["name"], "arguments": piece} if repeat_name else {"arguments": piece}
            out.append(chunk({"tool_calls": [{"index": k, "function": fn}]}))
    out.append(chunk({}, choice["finish_reason"]))
    if include_usage:
        out.append(dict(base, choices=[], usage=completion["usage"]))
    return out
