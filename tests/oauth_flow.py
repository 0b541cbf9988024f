"""The Python `mcp` SDK's OAuth client (mcp.client.auth.OAuthClientProvider, mcp==2.3.0 pinned
in .ci/run) signing in to mcpq through a real authorization server, unattended.

Run by tests/it/oauth.rs:  python oauth_flow.py MCP_URL LOGIN

From mcpq's 401 the SDK discovers the Protected Resource Metadata (RFC 9728) and the
authorization server's metadata, registers itself (RFC 7591), and sends the user to the
authorization endpoint with PKCE and the resource indicator (RFC 8707). This script is the
user: it follows the redirects with its own HTTP client, signs in on the provider's
development login page as LOGIN and confirms its consent page, and hands the code from the
final redirect back to the SDK, which exchanges it for an access token and retries. Then it
lists tools and calls batch_sum. Prints one JSON line: what it saw, and the access token's
claims (read, not verified: mcpq verified them). Exits non-zero on any failure.
"""

import asyncio
import base64
import json
import re
import sys
from html import unescape
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

REDIRECT = "http://127.0.0.1:1/callback"


class Memory:
    """Token storage for one run."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def form_of(html: str, base: str) -> tuple[str, dict]:
    """The page's form: its absolute action and its named inputs' values."""
    m = re.search(r'<form[^>]*action="([^"]+)"', html)
    if not m:
        raise RuntimeError(f"no form on the page: {html[:300]}")
    fields = {}
    for tag in re.findall(r"<input[^>]*>", html):
        name = re.search(r'name="([^"]+)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name:
            fields[name.group(1)] = unescape(value.group(1)) if value else ""
    return urljoin(base, unescape(m.group(1))), fields


async def sign_in(authorization_url: str, login: str) -> AuthorizationCodeResult:
    """Plays the user at the provider: login, consent, until the redirect to REDIRECT."""
    async with httpx2.AsyncClient(follow_redirects=False, timeout=30) as browser:
        r = await browser.get(authorization_url)
        for _ in range(12):
            if r.status_code in (302, 303):
                location = urljoin(str(r.url), r.headers["location"])
                if location.startswith(REDIRECT):
                    q = parse_qs(urlparse(location).query)
                    if "error" in q:
                        raise RuntimeError(f"authorization refused: {q}")
                    return AuthorizationCodeResult(
                        code=q["code"][0], state=q.get("state", [None])[0], iss=q.get("iss", [None])[0]
                    )
                r = await browser.get(location)
                continue
            if r.status_code != 200:
                raise RuntimeError(f"provider answered {r.status_code}: {r.text[:300]}")
            action, fields = form_of(r.text, str(r.url))
            if fields.get("prompt") == "login":
                fields.update(login=login, password="any password (development interactions)")
            r = await browser.post(action, data=fields)
        raise RuntimeError("too many steps at the provider")


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def main() -> None:
    url, login = sys.argv[1], sys.argv[2]
    storage = Memory()
    pending: asyncio.Future = asyncio.get_running_loop().create_future()
    steps = []

    async def redirect_handler(authorization_url: str) -> None:
        q = parse_qs(urlparse(authorization_url).query)
        steps.append({"authorize": {k: q[k][0] for k in ("resource", "scope", "code_challenge_method") if k in q}})
        pending.set_result(await sign_in(authorization_url, login))

    async def callback_handler() -> AuthorizationCodeResult:
        return await pending

    auth = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="mcpq oauth test",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    async with httpx2.AsyncClient(auth=auth, timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            tools = await client.list_tools()
            summed = await client.call_tool("batch_sum", {"numbers": [1, 2, 3.5]})
    token = storage.tokens.access_token if storage.tokens else ""
    print(
        json.dumps(
            {
                "steps": steps,
                "tools": sorted(t.name for t in tools.tools),
                "batch_sum": summed.structured_content,
                "token_claims": claims_of(token) if token.count(".") == 2 else None,
                "token_type": storage.tokens.token_type if storage.tokens else None,
            }
        ),
        flush=True,
    )


asyncio.run(main())
