"""OpenAI ``tools``, ``tool_choice``, ``parallel_tool_calls`` and ``response_format`` as Anthropic
Messages ``tools`` and ``tool_choice`` (shapes from the official SDK's ``tool_param.py`` and
``tool_choice_*_param.py``). JSON mode becomes a forced tool whose input is the answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.errors import InvalidRequestError

JSON_OBJECT_TOOL = "json_object"
_FORMAT_TOOL_DESCRIPTION = "Give your whole answer as this tool's input."


def tools_and_choice(body: Mapping[str, Any], out: dict[str, Any]) -> str | None:
    """Set ``tools`` and ``tool_choice``; the name of the response_format tool if there is one."""
    tools = [_tool_definition(tool, f"tools[{i}]") for i, tool in enumerate(body.get("tools") or ())]
    choice = _tool_choice(body.get("tool_choice"))
    format_tool = _format_tool(body.get("response_format"))
    if format_tool is not None and any(t["name"] == format_tool["name"] for t in tools):
        raise InvalidRequestError(
            f"response_format: its name {format_tool['name']!r} is also the name of a tool; rename one of them.",
            param="response_format",
        )
    # A forced tool call makes response_format moot (the answer is that call, not content).
    forced = choice is not None and choice["type"] in ("any", "tool")
    if format_tool is not None and not forced:
        if tools and (choice is None or choice["type"] == "auto"):
            choice = {"type": "any"}  # the model calls one of the client's tools or answers in the format
        else:
            choice = {"type": "tool", "name": format_tool["name"]}
        tools.append(format_tool)
    else:
        format_tool = None
    if body.get("parallel_tool_calls") is False and tools:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if tools:
        out["tools"] = tools
    if choice is not None:
        out["tool_choice"] = choice
    return format_tool["name"] if format_tool else None


def _tool_definition(tool: Any, param: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise InvalidRequestError(
            f"{param}: tool type {kind!r} is not supported by provider 'anthropic' (function tools only).",
            param=param,
        )
    function = tool["function"]
    if not isinstance(function.get("name"), str):
        raise InvalidRequestError(f"{param}.function.name is required.", param=f"{param}.function.name")
    out: dict[str, Any] = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _tool_choice(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str) and value in _TOOL_CHOICE_MODES:
        return {"type": _TOOL_CHOICE_MODES[value]}
    if isinstance(value, dict) and value.get("type") == "function":
        name = (value.get("function") or {}).get("name")
        if isinstance(name, str) and name:
            return {"type": "tool", "name": name}
    raise InvalidRequestError("'tool_choice' must be auto, none, required or a named function.", param="tool_choice")


_TOOL_CHOICE_MODES = {"auto": "auto", "none": "none", "required": "any"}


def _format_tool(response_format: Any) -> dict[str, Any] | None:
    """The tool whose input is the answer, for JSON mode: Anthropic's tool input is always a JSON
    object matching ``input_schema``, which is what json_object / json_schema ask for."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        schema: dict[str, Any] = {"type": "object"}
        return {"name": JSON_OBJECT_TOOL, "description": _FORMAT_TOOL_DESCRIPTION, "input_schema": schema}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
            raise InvalidRequestError("response_format.json_schema needs a name.", param="response_format")
        schema = spec.get("schema") or {"type": "object"}
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise InvalidRequestError(
                "response_format: provider 'anthropic' can only enforce a schema whose root is an object.",
                param="response_format",
            )
        description = spec.get("description") or _FORMAT_TOOL_DESCRIPTION
        return {"name": spec["name"], "description": description, "input_schema": schema}
    raise InvalidRequestError(
        f"response_format type {kind!r} is not supported by provider 'anthropic'.", param="response_format"
    )
