"""The Python `mcp` SDK (2.x, pinned in .ci/run) against a running mcpq daemon's /mcp.

Run by tests/it/mcp.rs:  python mcp_sdk_client.py URL TOKEN JOB_TOOL

In both protocol eras (mode="legacy": the 2025-11-25 initialize handshake; mode="auto":
server/discover, then the stateless 2026-07-28 revision), it lists the tools, calls
batch_sum, and makes a blocking call of a job tool with a progress callback. Prints one
JSON line per era with what it saw; exits non-zero on any failure.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def run(url: str, token: str, job_tool: str, mode: str) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            tools = await client.list_tools()
            names = sorted(t.name for t in tools.tools)
            summed = await client.call_tool("batch_sum", {"numbers": [1, 2, 3.5]})
            progress = []

            async def on_progress(p, total, message):
                progress.append({"progress": p, "total": total, "message": message})

            held = await client.call_tool(
                job_tool, {"text": f"hello {mode}"}, progress_callback=on_progress
            )
            return {
                "mode": mode,
                "protocol": client.protocol_version,
                "tools": names,
                "batch_sum": summed.structured_content,
                "held_error": held.is_error,
                "held": held.structured_content,
                "held_meta": (held.meta or {}),
                "progress": progress,
            }


async def main() -> None:
    url, token, job_tool = sys.argv[1], sys.argv[2], sys.argv[3]
    for mode in ("legacy", "auto"):
        print(json.dumps(await run(url, token, job_tool, mode), default=str), flush=True)


asyncio.run(main())
