#!/usr/bin/env python3
"""Verify a ketenpoort checkpoint without ketenpoort's code.

    python3 scripts/verify_checkpoint.py VERIFIER_KEY NOTE [--origin ORIGIN]

VERIFIER_KEY is the log's signed-note verifier key as served by
GET /v1/log/verifier-key (`<name>+<hex key id>+<base64 key>`), or `@FILE`
to read it from a file. NOTE is a file holding a checkpoint as served by
GET /v1/log/checkpoint, or `-` for standard input.

Implements, from the specifications and nothing else:
- C2SP signed-note (https://c2sp.org/signed-note): the note text, the
  signature block after the last blank line, key ids
  (SHA-256(name || 0x0A || 0x01 || public key)[:4]) and Ed25519 signatures
  over the note text; signatures by other keys are ignored, a signature by
  this key must verify.
- C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint): origin line,
  decimal tree size, base64 root hash of 32 bytes, optional extension lines.
  The origin must equal ORIGIN, by default the verifier key's name.

Prints `verified <origin> <size> <base64 root>` and exits 0 when the
checkpoint verifies; prints why and exits 1 when it does not; exits 2 on a
usage error or when the Python package `cryptography` is missing (.ci/run
installs it into .venv-py/lib; this script looks there first).
"""

import argparse
import base64
import binascii
import hashlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL_LIB = ROOT / ".venv-py" / "lib"

ALG_ED25519 = 0x01
SIG_PREFIX = "\u2014 "  # EM DASH, space
MAX_SIGNATURES = 100


class Invalid(Exception):
    """The note or checkpoint does not verify."""


def load_ed25519():
    """Ed25519 verification from `cryptography`, or exit 2 with how to get it."""
    if str(LOCAL_LIB) not in sys.path:
        sys.path.insert(0, str(LOCAL_LIB))
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError as err:
        print(
            f"the Python package 'cryptography' is missing ({err}); install it with "
            f"`python3 -m pip install --target {LOCAL_LIB} cryptography` (as .ci/run does)",
            file=sys.stderr,
        )
        sys.exit(2)

    def verify(public_key, signature, message):
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
            return True
        except InvalidSignature:
            return False

    return verify


def valid_name(name):
    return name != "" and "+" not in name and not any(c.isspace() for c in name)


def key_id(name, key):
    digest = hashlib.sha256(name.encode() + b"\n" + key).digest()
    return int.from_bytes(digest[:4], "big")


def b64decode(text):
    """Strict standard base64 (padding required, nothing else allowed)."""
    if not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", text) or len(text) % 4:
        raise ValueError("not base64")
    return base64.b64decode(text, validate=True)


def parse_verifier_key(vkey):
    """`<name>+<8 hex digits>+<base64(0x01 || 32-byte Ed25519 key)>`"""
    name, _, rest = vkey.partition("+")
    hex_id, _, key64 = rest.partition("+")
    try:
        kid = int(hex_id, 16)
        key = b64decode(key64)
    except ValueError as err:
        raise Invalid(f"malformed verifier key: {err}") from None
    if len(hex_id) != 8 or not valid_name(name) or not key:
        raise Invalid("malformed verifier key")
    if key_id(name, key) != kid:
        raise Invalid("verifier key id does not match its name and key")
    if key[0] != ALG_ED25519 or len(key) != 33:
        raise Invalid("verifier key is not an Ed25519 key")
    return name, kid, key[1:]


def open_note(raw, name, kid, public_key, ed25519_verify):
    """Returns the note text once a signature by (name, kid) verifies."""
    try:
        msg = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("note is not UTF-8") from None
    if any(ord(c) < 0x20 and c != "\n" for c in msg):
        raise Invalid("note holds control characters")
    split = msg.rfind("\n\n")
    if split < 0:
        raise Invalid("note has no signature block")
    text, sigs = msg[: split + 1], msg[split + 2 :]
    if not sigs.endswith("\n"):
        raise Invalid("signature block does not end with a newline")
    verified = 0
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise Invalid("too many signatures")
    for line in lines:
        if not line.startswith(SIG_PREFIX):
            raise Invalid("malformed signature line")
        sig_name, _, sig64 = line[len(SIG_PREFIX) :].partition(" ")
        try:
            sig = b64decode(sig64)
        except (ValueError, binascii.Error):
            raise Invalid("signature is not base64") from None
        if not valid_name(sig_name) or len(sig) < 5:
            raise Invalid("malformed signature line")
        if sig_name != name or int.from_bytes(sig[:4], "big") != kid:
            continue  # another key's signature: not ours to judge
        if not ed25519_verify(public_key, sig[4:], text.encode()):
            raise Invalid("the signature by the log key does not verify")
        verified += 1
    if verified == 0:
        raise Invalid("no signature by the log key")
    return text


def parse_checkpoint(text, origin):
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(line == "" for line in lines):
        raise Invalid("checkpoint needs origin, size and root hash lines")
    if lines[0] != origin:
        raise Invalid(f"checkpoint origin {lines[0]!r} is not {origin!r}")
    if not re.fullmatch(r"0|[1-9][0-9]*", lines[1]) or int(lines[1]) >= 2**64:
        raise Invalid("tree size is not a decimal number")
    try:
        root = b64decode(lines[2])
    except ValueError:
        raise Invalid("root hash is not base64") from None
    if len(root) != 32:
        raise Invalid("root hash is not 32 bytes")
    return int(lines[1]), lines[2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("verifier_key", help="verifier key, or @FILE")
    ap.add_argument("note", help="checkpoint note file, or - for stdin")
    ap.add_argument("--origin", help="expected origin (default: the key name)")
    args = ap.parse_args()
    ed25519_verify = load_ed25519()
    vkey = args.verifier_key
    if vkey.startswith("@"):
        vkey = Path(vkey[1:]).read_text()
    raw = sys.stdin.buffer.read() if args.note == "-" else Path(args.note).read_bytes()
    try:
        name, kid, public_key = parse_verifier_key(vkey.strip())
        text = open_note(raw, name, kid, public_key, ed25519_verify)
        size, root = parse_checkpoint(text, args.origin or name)
    except Invalid as err:
        print(f"checkpoint does NOT verify: {err}", file=sys.stderr)
        return 1
    print(f"verified {name} {size} {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
