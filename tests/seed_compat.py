#!/usr/bin/env python3
"""Wire compatibility with the seed: a running mcpq daemon, driven by the seed's own code.

Envelopes are built with the seed's `MCPEnvelope` model and signed with its
`_hmac_hex`, exactly as `MCPClient.call` does; they are POSTed over HTTP
(urllib, Content-Type: application/json). Every response -- error responses
included, whatever their HTTP status -- must validate as the seed's
`MCPResponse(**body)` and carry a signature equal to what the seed's
`MCPServer.handle` computes: HMAC over `model_dump()` with "signature": "".

Environment:
  MCPQ_URL            daemon base URL, e.g. http://127.0.0.1:8787 (POSTs go to /v1/call)
  MCPQ_CLIENT_ID      client id known to the daemon
  MCPQ_CLIENT_SECRET  that client's secret
  MCPQ_SERVER_ID      the daemon's server id
  MCPQ_SERVER_SECRET  the daemon's signing secret (to verify responses)
  MCPQ_SEED_MCP       optional: path of seed_mcp.py (default: ../shared/reference/seed_mcp.py
                      next to the repository, loaded as seed_http/seed_loader.py does)

Needs pydantic>=2 (the seed's models). Exits 0 if every check passes, 1 otherwise,
2 if it cannot start (missing environment, seed or pydantic).
Run by tests/it/seed_compat.rs; by hand: `.venv/bin/python3 tests/seed_compat.py`.
"""
import functools
import hashlib
import hmac
import json
import operator
import os
import pathlib
import sys
import time
import types
import urllib.error
import urllib.request
import uuid

REPO = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_SEED = REPO.parent / "shared" / "reference" / "seed_mcp.py"


def die(msg: str) -> "NoReturn":  # noqa: F821
    print(f"seed_compat: {msg}", file=sys.stderr)
    sys.exit(2)


def load_seed() -> types.ModuleType:
    """Executes seed_mcp.py without its `asyncio.run(demo())` line, as seed_http/seed_loader.py does."""
    path = pathlib.Path(os.environ.get("MCPQ_SEED_MCP") or DEFAULT_SEED)
    if not path.is_file():
        die(f"the seed reference {path} does not exist; set MCPQ_SEED_MCP to the path of seed_mcp.py")
    try:
        import pydantic  # noqa: F401
    except ImportError:
        die(f"pydantic is not importable by {sys.executable}; install it with: {sys.executable} -m pip install 'pydantic>=2'")
    demo = "asyncio.run(demo())"
    lines = path.read_text().splitlines(keepends=True)
    kept = [l for l in lines if l.strip() != demo]
    if len(kept) != len(lines) - 1:
        die(f"expected exactly one {demo!r} line in {path}")
    mod = types.ModuleType("seed_mcp")
    mod.__file__ = str(path)
    sys.modules["seed_mcp"] = mod
    exec(compile("".join(kept), str(path), "exec"), mod.__dict__)
    return mod


seed = load_seed()


def env_var(name: str) -> str:
    v = os.environ.get(name)
    if not v:
        die(f"environment variable {name} is not set")
    return v


BASE_URL = env_var("MCPQ_URL").rstrip("/")
CALL_URL = BASE_URL if BASE_URL.endswith("/v1/call") else BASE_URL + "/v1/call"
CLIENT_ID = env_var("MCPQ_CLIENT_ID")
CLIENT_SECRET = env_var("MCPQ_CLIENT_SECRET").encode()
SERVER_ID = env_var("MCPQ_SERVER_ID")
SERVER_SECRET = env_var("MCPQ_SERVER_SECRET").encode()


class CheckFailed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


# --- the seed's client side ---------------------------------------------------------------


def make_envelope(tool, args=None):
    """Exactly `MCPClient.call`: the seed's model fills v/request_id/ts_ms/nonce, then signs."""
    env = seed.MCPEnvelope(
        client_id=CLIENT_ID,
        server_id=SERVER_ID,
        tool=tool,
        args=args or {},
        signature="",
    ).model_dump()
    env["signature"] = seed._hmac_hex(CLIENT_SECRET, {k: v for k, v in env.items() if k != "signature"})
    return env


def post_raw(body: bytes):
    """POSTs `body`; returns (HTTP status, response bytes). HTTP errors are read, not raised."""
    req = urllib.request.Request(
        CALL_URL, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()


def verify_response(status: int, raw: bytes, env=None):
    """Validates a response as the seed's MCPResponse and checks the seed's signature scheme."""
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise CheckFailed(f"HTTP {status}: response is not JSON ({e}): {raw[:300]!r}")
    check(isinstance(body, dict), f"HTTP {status}: response is not an object: {body!r}")
    try:
        resp = seed.MCPResponse(**body)
    except Exception as e:  # pydantic.ValidationError, TypeError
        raise CheckFailed(f"HTTP {status}: the seed's MCPResponse rejects {body!r}: {e}")
    # Exactly as MCPServer.handle signs: HMAC over model_dump() taken with signature "".
    unsigned = seed.MCPResponse(**{**body, "signature": ""}).model_dump()
    expected = seed._hmac_hex(SERVER_SECRET, unsigned)
    check(
        hmac.compare_digest(expected, resp.signature),
        f"HTTP {status}: signature {resp.signature!r} != seed HMAC {expected!r} over {unsigned!r}",
    )
    # The seed's model is lax; the wire types must be exact too.
    check(type(body["ts_ms"]) is int, f"ts_ms is not an integer: {body['ts_ms']!r}")
    check(type(body["ok"]) is bool, f"ok is not a boolean: {body['ok']!r}")
    check(resp.server_id == SERVER_ID, f"server_id {resp.server_id!r} != {SERVER_ID!r}")
    check(resp.ok == (resp.status != "error"), f"ok={resp.ok} with status {resp.status!r}")
    if resp.status == "error":
        check(isinstance(resp.error, str) and resp.error, f"error response without error text: {body!r}")
        check(resp.result is None, f"error response with a result: {body!r}")
        check(status >= 400 or resp.error.startswith(("job_failed: ", "job_cancelled: ")),
              f"error {resp.error!r} answered with HTTP {status}")
    else:
        check(resp.error is None, f"successful response with an error: {body!r}")
        check(200 <= status < 300, f"status {resp.status!r} answered with HTTP {status}")
    if env is not None:
        check(resp.request_id == env["request_id"],
              f"request_id {resp.request_id!r} does not echo the envelope's {env['request_id']!r}")
    return resp


def send(env, encoding="default"):
    """POSTs an envelope dict as JSON text (never canonical: the server must canonicalize)."""
    if encoding == "default":
        body = json.dumps(env).encode()
    elif encoding == "pretty":
        body = json.dumps(env, indent=2, ensure_ascii=False).encode("utf-8")
    else:
        raise ValueError(encoding)
    status, raw = post_raw(body)
    return verify_response(status, raw, env)


def call(tool, args=None, encoding="default"):
    return send(make_envelope(tool, args), encoding)


def expect_error(resp, code):
    check(resp.status == "error" and not resp.ok, f"expected error {code}, got status {resp.status!r}: {resp}")
    check(resp.error.startswith(code + ": "), f"expected error starting {code + ': '!r}, got {resp.error!r}")


def python311_sum(numbers):
    """`sum()` as CPython 3.11 computes it for floats: left to right from the int 0.
    (CPython 3.12+ compensates rounding in sum(); the contract is the 3.11 result.)"""
    return functools.reduce(operator.add, [float(x) for x in numbers], 0)


# --- checks ------------------------------------------------------------------------------


def test_server_identity():
    resp = call("server_identity")
    check(resp.status == "ok", f"status {resp.status!r}, error {resp.error!r}")
    out = seed.ServerIdentityOut(**resp.result)
    check(out.server_id == SERVER_ID, f"server_id {out.server_id!r}")
    want = hashlib.sha256(SERVER_SECRET).hexdigest()[:16]  # the seed's MCPServer._fingerprint
    check(out.fingerprint == want, f"fingerprint {out.fingerprint!r} != {want!r}")
    check(out.capabilities.get("async") is True and out.capabilities.get("stateless") is True,
          f"capabilities lack the seed's async/stateless: {out.capabilities!r}")


def test_batch_sum_basic():
    resp = call("batch_sum", {"numbers": [1, 2, 3]})
    check(resp.status == "ok", f"status {resp.status!r}, error {resp.error!r}")
    out = seed.BatchSumOut(**resp.result)
    check(out.count == 3 and out.total == 6.0, f"got {out!r}")
    check(type(resp.result["total"]) is float, f"total is not a float on the wire: {resp.result!r}")


def test_batch_sum_float_edges():
    cases = [
        [0.1, 0.2],
        [0.1] * 10,
        [1e16, 1.0, 1.0],
        [1e-07, 1e-07, 1e-07],
        [5e-324, 5e-324],
        [2.2250738585072014e-308, -2.2250738585072014e-308],
        [1.7976931348623157e308, -1.7976931348623157e308, 1.0],
        [-0.0],
        [-0.0, -0.0],
        [123456.789, 1e22, -1e22],
        [1, 9007199254740993],
        [10**30, 1],
        [2**64, -(2**64), 0.5],
        [1.5e300, 1.5e300],
        [0.0001, 1e-5, 1e15],
    ]
    for numbers in cases:
        for encoding in ("default", "pretty"):
            resp = call("batch_sum", {"numbers": numbers}, encoding)
            check(resp.status == "ok", f"{numbers}: status {resp.status!r} {resp.error!r}")
            out = seed.BatchSumOut(**resp.result)
            want = python311_sum(numbers)
            check(out.count == len(numbers), f"{numbers}: count {out.count}")
            check(repr(out.total) == repr(want), f"{numbers}: total {out.total!r} != CPython 3.11 sum {want!r}")


def test_invalid_args():
    for tool, args in [
        ("batch_sum", {"numbers": []}),
        ("batch_sum", {"numbers": "1,2"}),
        ("batch_sum", {"numbers": [1, "x"]}),
        ("batch_sum", {"nums": [1]}),
        ("batch_sum", {}),
        ("start_long_task", {"seconds": 0}),
        ("start_long_task", {"seconds": 21}),
        ("start_long_task", {"seconds": 1, "payload": [1]}),
        ("server_identity", {"unexpected": True}),
    ]:
        resp = call(tool, args)
        expect_error(resp, "invalid_args")


def test_replay():
    env = make_envelope("batch_sum", {"numbers": [1, 2]})
    first = send(env)
    check(first.status == "ok", f"first send: {first.status!r} {first.error!r}")
    again = send(env)
    expect_error(again, "replayed_nonce")
    # Byte-different spelling of the very same envelope is the same replay.
    third = send(env, "pretty")
    expect_error(third, "replayed_nonce")


def test_tampered():
    env = make_envelope("batch_sum", {"numbers": [1, 2, 3]})
    env["args"] = {"numbers": [1, 2, 4]}
    expect_error(send(env), "bad_signature")
    env = make_envelope("batch_sum", {"numbers": [1, 2, 3]})
    env["signature"] = ("0" if env["signature"][0] != "0" else "1") + env["signature"][1:]
    expect_error(send(env), "bad_signature")
    env = make_envelope("server_identity")
    env["tool"] = "batch_sum"
    expect_error(send(env), "bad_signature")
    # Signed with the wrong key.
    env = seed.MCPEnvelope(client_id=CLIENT_ID, server_id=SERVER_ID, tool="server_identity",
                           args={}, signature="").model_dump()
    env["signature"] = seed._hmac_hex(b"not-the-client-secret", {k: v for k, v in env.items() if k != "signature"})
    expect_error(send(env), "bad_signature")


def test_long_task():
    payload = {
        "task": "seed-compat",
        "n": 1.5,
        "big": 10**30,
        "tiny": 5e-324,
        "nested": {"list": [1, 2.0, None, True, "x"], "empty": {}},
        "unicode": "é漢😀𝄞\u007f",
    }
    start = call("start_long_task", {"seconds": 1, "payload": payload}, "pretty")
    check(start.status == "accepted", f"start: status {start.status!r} {start.error!r}")
    job_id = start.result.get("job_id") if start.result else None
    check(isinstance(job_id, str) and job_id, f"start: no job_id in {start.result!r}")
    deadline = time.monotonic() + 60
    seen = []
    while True:
        poll = call("poll_job", {"job_id": job_id})
        seen.append(poll.status)
        check(poll.status in ("accepted", "running", "done"),
              f"poll: unexpected status {poll.status!r} {poll.error!r} (seen {seen})")
        if poll.status == "done":
            check(poll.result == payload, f"done result {poll.result!r} != payload {payload!r}")
            check(repr(poll.result["tiny"]) == "5e-324", f"payload float changed: {poll.result['tiny']!r}")
            break
        check(time.monotonic() < deadline, f"job not done after 60 s (statuses seen: {seen})")
        time.sleep(0.2)


def test_unknown_job():
    expect_error(call("poll_job", {"job_id": str(uuid.uuid4())}), "unknown_job")
    expect_error(call("poll_job", {"job_id": "not-a-job-id"}), "unknown_job")


def test_error_responses_without_an_envelope():
    # Even a body that is not an envelope gets a signed response the seed's model accepts.
    status, raw = post_raw(b'{"not": "an envelope"}')
    resp = verify_response(status, raw)
    expect_error(resp, "invalid_envelope")
    status, raw = post_raw(b"{not json")
    resp = verify_response(status, raw)
    expect_error(resp, "malformed_json")


CHECKS = [
    test_server_identity,
    test_batch_sum_basic,
    test_batch_sum_float_edges,
    test_invalid_args,
    test_replay,
    test_tampered,
    test_long_task,
    test_unknown_job,
    test_error_responses_without_an_envelope,
]


def main():
    print(f"seed_compat: {CALL_URL} as {CLIENT_ID} -> {SERVER_ID} (python {sys.version.split()[0]})")
    failed = []
    for fn in CHECKS:
        name = fn.__name__
        try:
            fn()
        except CheckFailed as e:
            failed.append(name)
            print(f"FAIL {name}: {e}")
        except Exception as e:  # connection refused, unexpected exceptions
            failed.append(name)
            print(f"FAIL {name}: {type(e).__name__}: {e}")
        else:
            print(f"ok   {name}")
    if failed:
        print(f"seed_compat: {len(failed)} of {len(CHECKS)} checks failed: {', '.join(failed)}")
        sys.exit(1)
    print(f"seed_compat: all {len(CHECKS)} checks passed")


if __name__ == "__main__":
    main()
