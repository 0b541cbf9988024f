#!/usr/bin/env python3
"""Generates tests/vectors/canonical.json: canonical-JSON and HMAC test vectors, made by CPython.

The canonical form that mcpq signs is the seed's `_canonical_json`:
    json.dumps(obj, separators=(",", ":"), sort_keys=True)
with CPython's defaults otherwise (ensure_ascii=True, float repr, arbitrary
integers, NaN/Infinity literals). This script writes each case's `input` in a
NON-canonical form (indentation, unsorted keys, raw non-ASCII, odd number
spellings) and records what CPython makes of it:

    canonical = json.dumps(json.loads(input), separators=(",", ":"), sort_keys=True)
    hmac_hex  = HMAC-SHA256(hmac_key as UTF-8, canonical as bytes), lowercase hex

Every case has: name, kind ("value" | "envelope" | "response"), input,
canonical, hmac_key, hmac_hex. Envelope cases are built exactly as the seed's
`MCPClient.call` does (with the seed's own `MCPEnvelope` model) and also carry
`signing` (the canonical JSON of every field but "signature", which is what the
envelope's "signature" is the HMAC of, with `hmac_key`). Response cases are built
exactly as the seed's `MCPServer.handle` signs them and also carry `unsigned`
(the canonical JSON with "signature": "", which the signature is the HMAC of).

Everything is deterministic (fixed random seed, fixed ids and timestamps), so
re-running the script reproduces the committed file byte for byte.

Run (needs pydantic>=2 for the seed's models):
    .venv/bin/python3 tests/vectors/gen_vectors.py
The seed is found at ../shared/reference/seed_mcp.py relative to the repository,
or at $MCPQ_SEED_MCP.
"""
import hashlib
import hmac
import json
import math
import os
import pathlib
import random
import struct
import sys
import types
import uuid

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = HERE / "canonical.json"
SEED_PATH = pathlib.Path(
    os.environ.get("MCPQ_SEED_MCP", REPO.parent / "shared" / "reference" / "seed_mcp.py")
)


def load_seed() -> types.ModuleType:
    """Executes the seed file without its `asyncio.run(demo())` line (as seed_loader.py does)."""
    if not SEED_PATH.is_file():
        sys.exit(f"gen_vectors: seed not found at {SEED_PATH}; set MCPQ_SEED_MCP to seed_mcp.py")
    demo = "asyncio.run(demo())"
    lines = SEED_PATH.read_text().splitlines(keepends=True)
    kept = [l for l in lines if l.strip() != demo]
    if len(kept) != len(lines) - 1:
        sys.exit(f"gen_vectors: expected exactly one {demo!r} line in {SEED_PATH}")
    mod = types.ModuleType("seed_mcp")
    mod.__file__ = str(SEED_PATH)
    sys.modules["seed_mcp"] = mod
    exec(compile("".join(kept), str(SEED_PATH), "exec"), mod.__dict__)
    return mod


def canonical(obj) -> str:
    """The seed's `_canonical_json`, as text (it is ASCII by construction)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def hmac_hex(key: str, text: str) -> str:
    return hmac.new(key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def shuffled(obj, rng: random.Random):
    """The same value with every object's keys in a random (insertion) order."""
    if isinstance(obj, dict):
        items = [(k, shuffled(v, rng)) for k, v in obj.items()]
        rng.shuffle(items)
        return dict(items)
    if isinstance(obj, list):
        return [shuffled(v, rng) for v in obj]
    return obj


def reversed_keys(obj):
    """The same value with every object's keys in reverse sorted order (never canonical)."""
    if isinstance(obj, dict):
        return {k: reversed_keys(obj[k]) for k in sorted(obj, reverse=True)}
    if isinstance(obj, list):
        return [reversed_keys(v) for v in obj]
    return obj


def noncanonical(obj, rng: random.Random) -> str:
    """A valid, deliberately non-canonical JSON text for `obj`."""
    indent = rng.choice([None, 0, 1, 2, 4, "\t", " "])
    seps = rng.choice([(", ", ": "), (" ,", " : "), (",", ":"), (" , ", ":\t")])
    text = json.dumps(
        reversed_keys(obj) if rng.random() < 0.5 else shuffled(obj, rng),
        indent=indent,
        separators=seps,
        ensure_ascii=rng.random() < 0.3,
    )
    if rng.random() < 0.5 or text == canonical(obj):
        text = "\n " + text + " \t\r\n"
    return text


CASES = []
NAMES = set()


def add(name, input_text, key, kind="value", allow_canonical_input=False, **extra):
    if name in NAMES:
        raise SystemExit(f"duplicate case name {name}")
    NAMES.add(name)
    value = json.loads(input_text)
    canon = canonical(value)
    if input_text == canon and not allow_canonical_input:
        raise SystemExit(f"case {name}: input is already canonical")
    case = {
        "name": name,
        "kind": kind,
        "input": input_text,
        "canonical": canon,
        "hmac_key": key,
        "hmac_hex": hmac_hex(key, canon),
    }
    case.update(extra)
    CASES.append(case)


def add_value(name, obj, rng, key="vector-key"):
    add(name, noncanonical(obj, rng), key)


def main():
    seed = load_seed()
    # Our canonical() must be the seed's byte for byte.
    probe = {"b": [1.5, "é😀", None], "a": float("nan"), "\u00e9": 10**30}
    assert seed._canonical_json(probe) == canonical(probe).encode()

    rng = random.Random(0x6D637071)  # "mcpq"

    # --- floats ---------------------------------------------------------------
    floats = {
        "one": 1.0,
        "tenth": 0.1,
        "1e-07": 1e-07,
        "1e+16": 1e16,
        "1e15": 1e15,
        "1.5e300": 1.5e300,
        "neg_zero": -0.0,
        "point3": 0.30000000000000004,
        "min_subnormal": 5e-324,
        "max": 1.7976931348623157e308,
        "123456.789": 123456.789,
        "1e22": 1e22,
        "1e-5": 1e-5,
        "0.0001": 0.0001,
        "9999999999999998": 9999999999999998.0,
        "1e16_minus": 1e16 - 2,
        "0.001": 0.001,
        "min_normal": 2.2250738585072014e-308,
        "neg_tiny": -1e-300,
        "2**53": float(2**53),
        "third": 1 / 3,
        "zero": 0.0,
    }
    for name, f in floats.items():
        add_value(f"float/{name}", {"x": f, "neg": -f, "list": [f, f * 2]}, rng)
        add(f"float/{name}/bare", " " + repr(f) + " ", "k")
    add_value("float/all", list(floats.values()), rng)

    # Number spellings CPython accepts that are not its own repr: json.loads decides the value.
    spellings = [
        "1E5", "1e+5", "1e-7", "1E-07", "1.0e+16", "1e16", "0.000010", "10e-6", "0.1e1",
        "100e-2", "1e007", "1.000", "-0", "-0.0", "-0e0", "0e-10", "1E400", "-1E400",
        "123456789012345678901234567890.0", "4.9e-324", "2.4703282292062328e-324",
        "2.4703282292062327e-324", "1.7976931348623158e308", "1.7976931348623159e308",
        "9007199254740993.0", "9007199254740993", "0.30000000000000004441",
        "3.141592653589793238462643383279", "1e-400", "-1e-400", "12345678901234567890",
        "-9223372036854775808", "-9223372036854775809", "9223372036854775807",
        "9223372036854775808", "18446744073709551616", "1" + "0" * 308 + ".0",
        "0." + "0" * 320 + "1", "2.5e-324", "7.4e-324",
    ]
    add("number/spellings", "[ " + " ,\n".join(spellings) + " ]", "k")
    for i, s in enumerate(spellings):
        add(f"number/spelling/{i}", "{ \"n\" : " + s + " }", "k")

    # --- integers ---------------------------------------------------------------
    ints = {
        "2**64": 2**64,
        "-(2**100)": -(2**100),
        "10**30": 10**30,
        "i64_max": 2**63 - 1,
        "i64_min": -(2**63),
        "i64_max+1": 2**63,
        "i64_min-1": -(2**63) - 1,
        "u64_max": 2**64 - 1,
        "zero": 0,
        "minus_one": -1,
        "4300_digits": 10**4299,
        "neg_4300_digits": -(10**4299 + 7),
    }
    for name, n in ints.items():
        add_value(f"int/{name}", {"n": n, "l": [n, -n]}, rng)
    add_value("int/mixed_with_floats", [1, 1.0, -1, -1.0, 0, 0.0, -0.0, 2**64, 2.0**64], rng)

    # --- strings ---------------------------------------------------------------
    strings = {
        "e_acute": "é",
        "u_umlaut": "ü",
        "cjk": "漢字かな한국어",
        "del": "\u007f",
        "u0080": "\u0080",
        "uffff": "\uffff",
        "fffe_feff": "\ufffe\ufeff",
        "emoji": "😀",
        "g_clef": "𝄞",
        "max_cp": "\U0010ffff",
        "u10000": "\U00010000",
        "controls": "".join(chr(c) for c in range(0x20)),
        "short_escapes": "\b\f\n\r\t",
        "quotes_backslashes_slash": "\"quoted\" \\back\\slash\\ /slash/ </script>",
        "line_sep": "\u2028\u2029",
        "nul_inside": "a\u0000b",
        "latin1_range": "".join(chr(c) for c in range(0x7e, 0x100)),
        "mixed": "a\"é\\😀/\n𝄞\u007f\u0080z",
        "empty": "",
        "spaces": "   ",
        "combining": "e\u0301 n\u0303",
        "rtl": "\u05e9\u05dc\u05d5\u05dd \u0627\u0644\u0633\u0644\u0627\u0645",
        "surrogate_neighbours": "\ud7ff\ue000",
        "long_ascii": "x" * 1000,
        "json_in_string": '{"a": [1, 2.0, "\\u00e9"]}',
    }
    for name, s in strings.items():
        add_value(f"string/{name}", {"s": s, "l": [s, s + s]}, rng)
        add(f"string/{name}/ensure_ascii_false", json.dumps(s, ensure_ascii=False) + "\n", "k",
            allow_canonical_input=True)
    # Every escape spelled with \u, in upper and lower case hex.
    add("string/escaped_upper_hex", '"' + "".join("\\u%04X" % ord(c) for c in "é\u007f\"\\/a") + "\\uD83D\\uDE00\"", "k")
    add("string/escaped_lower_hex", '"' + "".join("\\u%04x" % ord(c) for c in "é\u007f\"\\/a\n") + "\\ud834\\udd1e\"", "k")
    add("string/escaped_slash", '"\\/\\/a\\/b"', "k")
    add("string/short_escapes_all", '"\\"\\\\\\/\\b\\f\\n\\r\\t"', "k")

    # --- keys ---------------------------------------------------------------
    add_value("keys/unicode_sort", {
        "b": 1, "a": 2, "A": 3, "Z": 4, "_": 5, "": 6, "aa": 7, "a ": 8,
        "é": 9, "e": 10, "ü": 11, "z": 12, "\u007f": 13, "\u0080": 14, "\uffff": 15,
        "😀": 16, "𝄞": 17, "\uff61": 18, "\ue000": 19, "\U0010ffff": 20, "漢": 21,
        "\u0000": 22, "\n": 23, "\"": 24, "\\": 25, "/": 26, "~": 27, "1": 28, "10": 29, "9": 30,
    }, rng)
    # Keys equal in their ASCII prefix, differing only past ASCII (code point order:
    # U+00E9 < U+00FC < U+FF61 < U+1D11E < U+1F600, which UTF-16 order would not give).
    add_value("keys/differ_past_ascii", {
        "keyé": 1, "keyü": 2, "key\uff61": 3, "key😀": 4, "key𝄞": 5, "key": 6, "key~": 7,
        "key\u0080": 8, "key\u07ff": 9, "key\u0800": 10, "key\uffff": 11, "key\U00010000": 12,
    }, rng)
    add_value("keys/bmp_vs_astral", {"\uffff": "bmp-max", "\U00010000": "astral-min", "\ue000x": 1, "\ud7ff": 2}, rng)
    add_value("keys/escaped_forms", {"a\nb": 1, "a\tb": 2, "a\"b": 3, "a\\b": 4, "a/b": 5, "a\u0001b": 6}, rng)

    # --- structure ---------------------------------------------------------------
    add_value("struct/empty_object", {"args": {}, "o": {}, "nested": {"a": {}}}, rng)
    add_value("struct/empty_arrays", {"a": [], "b": [[]], "c": [[], [[]], {}]}, rng)
    add("struct/empty_object_bare", " { } ", "k")
    add("struct/empty_array_bare", "[\n]", "k")
    add("struct/whitespace_everywhere", ' \r\n\t{ "b" :\t[ 1 , 2.50 , { "y" : null , "x" : true } ] ,\n "a" : false } \n', "k")
    add_value("struct/nested", {
        "z": {"y": {"x": {"w": [1, {"v": [2, {"u": "deep"}]}]}}},
        "a": [{"c": 1, "b": 2}, {"e": [None, True, False]}],
        "m": [[1, [2, [3, [4, [5]]]]]],
    }, rng)
    add("struct/depth_64", "[" * 63 + "{\"k\":\"bottom\"}" + "]" * 63, "k",
        allow_canonical_input=True)
    add_value("struct/literals", {"t": True, "f": False, "n": None, "l": [True, False, None]}, rng)

    # --- NaN / Infinity (CPython emits and accepts them by default) -------------------
    add_value("special/nan_inf", {"nan": math.nan, "inf": math.inf, "ninf": -math.inf,
                                  "l": [math.nan, math.inf, -math.inf, 1.0]}, rng)
    add("special/bare_nan", " NaN ", "k")
    add("special/bare_inf", "\nInfinity\n", "k")
    add("special/bare_ninf", "\t-Infinity", "k")
    add("special/overflow_to_inf", "[1e309, -1e309, 1E400]", "k")

    # --- HMAC keys of several shapes ------------------------------------------------
    add("hmac/empty_key", "{ \"a\" : 1 }", "")
    add("hmac/long_key", "{ \"a\" : 1 }", "k" * 200)
    add("hmac/unicode_key", "{ \"a\" : 1 }", "clé-😀")
    add("hmac/dev_server_key", "{ \"a\" : 1 }", "dev-only-server-secret-0000000000000000000000000000")

    # --- signed envelopes, built exactly as the seed's MCPClient.call does --------------
    client_secret = "dev-only-client-secret-000000000000000000000000000"
    envelope_specs = [
        ("server_identity", {}, client_secret),
        ("batch_sum", {"numbers": [1, 2, 3]}, client_secret),
        ("batch_sum", {"numbers": [0.1, 0.2, 1e-07, 1e16, -0.0, 5e-324, 1.7976931348623157e308, 2**64]}, client_secret),
        ("start_long_task", {"seconds": 2, "payload": {"task": "démo", "emoji": "😀", "n": 10**30,
                                                       "f": [1.0, 1e22, float("nan")], "z": {}, "a": []}},
         client_secret),
        ("poll_job", {"job_id": "0190a5f0-0000-7000-8000-000000000000"}, client_secret),
        ("echo", {"𝄞": "clef", "é": "e-acute", "e": "e", "\u007f": "del", "s": "\"\\/\n\t\u0001"},
         "another-client-secret-with-é-in-it-0123456789"),
        ("batch_sum", {"numbers": [float("inf"), -float("inf")]}, client_secret),
    ]
    for i, (tool, args, key) in enumerate(envelope_specs):
        env = seed.MCPEnvelope(
            request_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            ts_ms=1_700_000_000_000 + i * 1_234,
            client_id="client-001" if i != 5 else "clïent-😀",
            server_id="mcp-server-001",
            tool=tool,
            args=args or {},
            nonce=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            signature="",
        ).model_dump()
        env["signature"] = seed._hmac_hex(key.encode(), {k: v for k, v in env.items() if k != "signature"})
        signing = canonical({k: v for k, v in env.items() if k != "signature"})
        assert env["signature"] == hmac_hex(key, signing)
        add(f"envelope/{i}/{tool}", noncanonical(env, rng), key, kind="envelope", signing=signing)

    # --- signed responses, built exactly as the seed's MCPServer.handle signs -----------
    server_secret = "dev-only-server-secret-0000000000000000000000000000"
    response_specs = [
        dict(ok=True, status="ok", result=seed.ServerIdentityOut(
            server_id="mcp-server-001",
            fingerprint=hashlib.sha256(server_secret.encode()).hexdigest()[:16],
            capabilities={"async": True, "stateless": True}).model_dump()),
        dict(ok=True, status="ok", result=seed.BatchSumOut(count=3, total=6.0).model_dump()),
        dict(ok=True, status="ok", result={"count": 2, "total": 0.30000000000000004}),
        dict(ok=True, status="accepted", result={"job_id": "0190a5f0-0000-7000-8000-000000000001"}),
        dict(ok=True, status="running", result=None),
        dict(ok=True, status="done", result={"task": "démo", "n": 10**30, "l": [1e-07, None, "😀"]}),
        dict(ok=False, status="error", result=None, error="bad_signature: signature does not match the envelope"),
        dict(ok=False, status="error", result=None, error="invalid_args: field \"numbers[1]\" must be a number, got string"),
    ]
    for i, spec in enumerate(response_specs):
        resp = seed.MCPResponse(
            request_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            ts_ms=1_700_000_100_000 + i,
            server_id="mcp-server-001",
            signature="",
            **spec,
        )
        payload = resp.model_dump()
        resp.signature = seed._hmac_hex(server_secret.encode(), payload)
        body = resp.model_dump()
        unsigned = canonical({**body, "signature": ""})
        assert body["signature"] == hmac_hex(server_secret, unsigned)
        add(f"response/{i}/{spec['status']}", noncanonical(body, rng), server_secret,
            kind="response", unsigned=unsigned)

    # --- random structures with a fixed seed ---------------------------------------
    for i in range(200):
        add_value(f"random/{i:03}", random_value(rng, depth=0), rng, key=random_string(rng, 12))

    # A few bulk float cases: many values per case, cheap to check.
    add_value("bulk/random_bit_floats", [random_bit_float(rng) for _ in range(2000)], rng)
    add_value("bulk/decimal_floats", [round(rng.uniform(-1e6, 1e6), rng.randint(0, 12)) for _ in range(2000)], rng)
    add_value("bulk/powers_of_ten", [10.0**e for e in range(-323, 309)] + [-(10.0**e) for e in range(-30, 30)], rng)
    add_value("bulk/powers_of_two", [2.0**e for e in range(-1074, 1024, 3)], rng)
    add_value("bulk/near_repr_switch", [x * 10.0**e for e in (-6, -5, -4, -3, 14, 15, 16, 17)
                                        for x in (1.0, 1.5, 9.999999999999998, 1.234567890123456789)], rng)

    OUT.write_text(json.dumps(CASES, indent=1, ensure_ascii=True) + "\n")
    kinds = {}
    for c in CASES:
        kinds[c["kind"]] = kinds.get(c["kind"], 0) + 1
    print(f"wrote {len(CASES)} cases to {OUT} ({kinds})")


ALPHABETS = [
    [chr(c) for c in range(0x20, 0x7f)],  # printable ASCII (incl. " \ /)
    [chr(c) for c in range(0x00, 0x20)] + ["\u007f"],  # controls
    [chr(c) for c in range(0x80, 0x800)],  # 2-byte UTF-8
    [chr(c) for c in range(0x800, 0xd800, 7)] + [chr(c) for c in range(0xe000, 0x10000, 5)],  # rest of the BMP
    [chr(c) for c in range(0x10000, 0x110000, 997)] + ["😀", "𝄞", "\U0001f9d1\u200d\U0001f4bb"],  # astral
    ["\"", "\\", "/", "\n", "\t", "é", "ü", "漢", "\ufeff", "\u2028"],  # favourites
]


def random_string(rng: random.Random, max_len: int) -> str:
    out = []
    for _ in range(rng.randint(0, max_len)):
        out.append(rng.choice(rng.choice(ALPHABETS)))
    return "".join(out)


def random_bit_float(rng: random.Random) -> float:
    while True:
        f = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        if not math.isnan(f):  # NaN payloads all print as NaN; covered elsewhere
            return f


SPECIAL_FLOATS = [1.0, 0.1, 1e-07, 1e16, 1e15, 1.5e300, -0.0, 0.30000000000000004, 5e-324,
                  1.7976931348623157e308, 123456.789, 1e22, 1e-5, 0.0001, math.nan, math.inf,
                  -math.inf, 0.0, 2.0**-1022, 1e-4 - 1e-20]
SPECIAL_INTS = [0, 1, -1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, 2**64, -(2**100), 10**30, -(10**40)]


def random_leaf(rng: random.Random):
    r = rng.randrange(10)
    if r == 0:
        return rng.choice([None, True, False])
    if r == 1:
        return rng.choice(SPECIAL_FLOATS)
    if r == 2:
        return random_bit_float(rng)
    if r == 3:
        return round(rng.uniform(-1000, 1000), rng.randint(0, 10)) * 10.0 ** rng.randint(-20, 20)
    if r == 4:
        return rng.choice(SPECIAL_INTS)
    if r == 5:
        return rng.randint(-(10**rng.randint(1, 60)), 10**rng.randint(1, 60))
    return random_string(rng, 16)


def random_value(rng: random.Random, depth: int):
    r = rng.random()
    if depth >= 5 or (depth > 0 and r < 0.35):
        return random_leaf(rng)
    if r < 0.65:
        return {random_string(rng, 8): random_value(rng, depth + 1) for _ in range(rng.randint(0, 6 - depth))}
    return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 6 - depth))]


if __name__ == "__main__":
    main()
