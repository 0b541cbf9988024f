"""The Python `mcp` SDK (2.x, pinned in .ci/run) running mcpq's long tools as tasks, and
answering a tool's questions (multi-round calls), against a running daemon's /mcp.

Run by tests/it/mcp.rs:  python mcp_sdk_tasks.py COMMAND URL TOKEN ARG [ARGS_JSON]

  task TOOL         2026-07-28: call TOOL with a client that declares the tasks extension;
                    the SDK hands the CreateTaskResult to the extension's claim, which polls
                    tasks/get until the task ends and returns its CallToolResult.
  start TOOL        2026-07-28: call TOOL, take the CreateTaskResult as it is (allow_claimed)
                    and print its taskId: the task outlives this client.
  finish TASK_ID    2026-07-28: poll tasks/get until the task ends; print it.
  legacy-finish ID  2025-11-25: tasks/get, then tasks/result (which waits for the end).
  ask TOOL          2026-07-28: call a tool that elicits (or samples); the SDK's
                    multi-round driver answers through its callbacks and retries.
  legacy-ask TOOL   2025-11-25: the same tool; its question arrives as an elicitation/create
                    request on the call's SSE stream, answered by the same callback.
                    Both call TOOL with ARGS_JSON (default {}) and print its text blocks.

Prints one JSON line; exits non-zero on any failure.

The SDK 2.3 has the 2025-11-25 task types and a ClientExtension interface (result claims)
for the 2026-07-28 tasks extension, but no ready tasks client: the small extension below
is what an application writes with the SDK's public API. Its 2025-11-25 tools/call
accepts only a CallToolResult, so a task of that era is created without it (tests/it/mcp.rs)
and read back with it (legacy-finish).
"""

import asyncio
import json
import sys
from typing import Any, Literal

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.streamable_http import streamable_http_client
from pydantic import TypeAdapter

TASKS = "io.modelcontextprotocol/tasks"
TERMINAL = ("completed", "failed", "cancelled")
ANY = TypeAdapter(dict[str, Any])


class CreatedTask(types.Result):
    """2026-07-28 CreateTaskResult: the task's fields flat on the result."""

    result_type: Literal["task"]
    task_id: str
    status: str


class GetTask(types.Request[types.GetTaskRequestParams, Literal["tasks/get"]]):
    """tasks/get; its id is mirrored into the Mcp-Name header, as the 2026 revision asks."""

    method: Literal["tasks/get"] = "tasks/get"
    params: types.GetTaskRequestParams
    name_param = "taskId"


async def poll(session, task_id: str) -> dict:
    for _ in range(600):
        task = await session.send_request(
            GetTask(params=types.GetTaskRequestParams(task_id=task_id)), ANY
        )
        if task["status"] in TERMINAL:
            return task
        await asyncio.sleep(0.1)
    raise RuntimeError(f"task {task_id} did not end")


async def resolve(created: CreatedTask, ctx: ClaimContext) -> types.CallToolResult:
    task = await poll(ctx.session, created.task_id)
    if task["status"] != "completed":
        raise RuntimeError(f"task {created.task_id} ended {task['status']}: {task}")
    return types.CallToolResult.model_validate(task["result"])


class Tasks(ClientExtension):
    identifier = TASKS

    def claims(self):
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=resolve)]


async def on_elicit(context, params):
    return types.ElicitResult(action="accept", content={"name": "Ada"})


async def on_sample(context, params):
    return types.CreateMessageResult(
        role="assistant", model="test-model",
        content=types.TextContent(type="text", text="Nice to meet you."))


def client(http, mode: str, tasks: bool = False, **kw) -> Client:
    return Client(
        streamable_http_client(URL, http_client=http),
        mode=mode,
        extensions=[Tasks()] if tasks else None,
        **kw,
    )


async def main(command: str, arg: str) -> dict:
    headers = {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        if command == "task":
            async with client(http, "auto", tasks=True) as c:
                r = await c.call_tool(arg, {"text": "as a task"})
                return {"protocol": c.protocol_version, "is_error": r.is_error,
                        "structured": r.structured_content}
        if command == "start":
            async with client(http, "auto", tasks=True) as c:
                r = await c.session.call_tool(arg, {"text": "survives"}, allow_claimed=True)
                return {"protocol": c.protocol_version, "kind": type(r).__name__,
                        "task_id": r.task_id, "status": r.status}
        if command == "finish":
            async with client(http, "auto", tasks=True) as c:
                return {"protocol": c.protocol_version, "task": await poll(c.session, arg)}
        if command == "legacy-finish":
            async with client(http, "legacy") as c:
                got = await c.session.send_request(
                    types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=arg)),
                    types.GetTaskResult,
                )
                raw = await c.session.send_request(
                    types.GetTaskPayloadRequest(
                        params=types.GetTaskPayloadRequestParams(task_id=arg)),
                    ANY,
                )
                result = types.CallToolResult.model_validate(raw)
                return {"protocol": c.protocol_version, "status_before": got.status,
                        "is_error": result.is_error, "structured": result.structured_content}
        if command in ("ask", "legacy-ask"):
            # 2026-07-28: the SDK's multi-round driver; 2025-11-25: the daemon sends the
            # question on the call's stream and the SDK answers it with a POST.
            mode = "legacy" if command == "legacy-ask" else "auto"
            async with client(http, mode, elicitation_callback=on_elicit,
                              sampling_callback=on_sample) as c:
                r = await c.call_tool(arg, ARGS)
                return {"protocol": c.protocol_version, "is_error": r.is_error,
                        "text": r.content[0].text,
                        "texts": "\n".join(b.text for b in r.content if b.type == "text")}
        raise SystemExit(f"unknown command {command}")


COMMAND, URL, TOKEN, ARG = sys.argv[1:5]
# The tool's arguments, for `ask` and `legacy-ask` (default none).
ARGS = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
print(json.dumps(asyncio.run(main(COMMAND, ARG)), default=str), flush=True)
