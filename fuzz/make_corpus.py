#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus (fuzz/corpus/<target>/) from tests/vectors/canonical.json
plus hand-made edge cases. Deterministic; re-running rewrites the same files.

    python3 fuzz/make_corpus.py
"""
import json
import pathlib
import re

HERE = pathlib.Path(__file__).resolve().parent
VECTORS = HERE.parent / "tests" / "vectors" / "canonical.json"
MAX_SEED = 5000  # bytes: small seeds mutate faster

JSON_PICKS = [
    "float/all", "float/min_subnormal", "float/max", "float/1e16_minus", "float/neg_zero",
    "number/spellings", "number/spelling/3", "number/spelling/17", "number/spelling/29",
    "int/2**64", "int/-(2**100)", "int/i64_max+1", "int/i64_min-1", "int/u64_max",
    "int/mixed_with_floats",
    "string/controls", "string/short_escapes_all", "string/max_cp", "string/g_clef",
    "string/surrogate_neighbours", "string/line_sep", "string/nul_inside", "string/mixed",
    "string/escaped_upper_hex", "string/fffe_feff/ensure_ascii_false",
    "keys/unicode_sort", "keys/bmp_vs_astral", "keys/escaped_forms", "keys/differ_past_ascii",
    "struct/whitespace_everywhere", "struct/nested", "struct/depth_64", "struct/literals",
    "special/nan_inf", "special/overflow_to_inf",
]

# Edge cases the vectors do not hold (several are refusals: they seed the error paths).
JSON_HANDMADE = {
    "lone_high_surrogate": r'"\ud800"',
    "lone_low_surrogate": r'"\udc00x"',
    "high_then_non_low": r'"\ud83d\u0041"',
    "truncated_escape": r'"\u12',
    "duplicate_key": '{"a":1,"b":2,"a":3}',
    "duplicate_key_escaped": r'{"a":1,"\u0061":2}',
    "depth_65": "[" * 65 + "]" * 65,
    "depth_64_objects": '{"a":' * 63 + "{}" + "}" * 63,
    "trailing": "{} x",
    "neg_infinity": "[-Infinity,Infinity,NaN,-0,-0.0,0e0,1E+400,-1e-400]",
    "leading_zero": "01",
    "bare_minus": "-",
    "exp_no_digits": "1e",
    "big_int_4301_digits": "9" * 4301,
    "int_edges": "[9223372036854775807,9223372036854775808,-9223372036854775808,-9223372036854775809]",
    "float_text_long": "0." + "0" * 400 + "1",
    "raw_control": '"a\x01b"',
    "invalid_utf8": b'"\xff\xfe"',
    "overlong_utf8": b'"\xc0\xaf"',
    "utf8_surrogate": b'"\xed\xa0\x80"',
    "bom": b"\xef\xbb\xbf{}",
    "ws_only": " \t\r\n",
    "literal_prefixes": "[tru",
}

ENVELOPE_HANDMADE_BASE = {
    "v": "mcp/0.1",
    "request_id": "r-1",
    "ts_ms": 1767225600000,
    "client_id": "fuzz-client",
    "server_id": "fuzz-server",
    "tool": "echo",
    "args": {"text": "hi"},
    "nonce": "n-1",
    "signature": "0" * 64,
}


def envelope_variants():
    base = ENVELOPE_HANDMADE_BASE
    out = {"base": dict(base)}
    for key in base:
        out[f"missing_{key}"] = {k: v for k, v in base.items() if k != key}
    out["extra_field"] = dict(base, extra=1)
    out["ts_big_int"] = dict(base, ts_ms=2**70)
    out["ts_float"] = dict(base, ts_ms=1.5)
    out["ts_i64_max"] = dict(base, ts_ms=2**63 - 1)
    out["ts_i64_min"] = dict(base, ts_ms=-(2**63))
    out["empty_nonce"] = dict(base, nonce="")
    out["id_128"] = dict(base, request_id="r" * 128, nonce="n" * 128)
    out["id_129"] = dict(base, tool="t" * 129)
    out["sig_not_hex"] = dict(base, signature="z" * 64)
    out["sig_65"] = dict(base, signature="0" * 65)
    out["args_array"] = dict(base, args=[1, 2])
    out["unicode_ids"] = dict(base, client_id="cl\u00e9", nonce="\U0001d11e", args={"\u2028": "\x00"})
    out["wrong_version"] = dict(base, v="mcp/0.2")
    return out


def write(dirpath: pathlib.Path, name: str, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > MAX_SEED:
        return
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name)
    (dirpath / safe).write_bytes(data)


def main():
    cases = {c["name"]: c for c in json.loads(VECTORS.read_text())}
    jdir = HERE / "corpus" / "json_parse"
    edir = HERE / "corpus" / "envelope"
    for d in (jdir, edir):
        d.mkdir(parents=True, exist_ok=True)
        for f in d.iterdir():
            f.unlink()
    for name in JSON_PICKS:
        write(jdir, name, cases[name]["input"])
    for name in sorted(n for n in cases if n.startswith("random/"))[:6]:
        write(jdir, name, cases[name]["input"])
    for name, data in JSON_HANDMADE.items():
        write(jdir, "hand/" + name, data)
    for name, c in cases.items():
        if c["kind"] in ("envelope", "response"):
            write(edir, name, c["input"])
    for name, obj in envelope_variants().items():
        write(edir, "hand/" + name, json.dumps(obj))
    write(edir, "hand/not_object", "[]")
    write(edir, "hand/duplicate_nonce", json.dumps(ENVELOPE_HANDMADE_BASE)[:-1] + ',"nonce":"n-2"}')
    for d in (jdir, edir):
        print(d.relative_to(HERE.parent), len(list(d.iterdir())), "files")


if __name__ == "__main__":
    main()
