#!/usr/bin/env python3
"""Independent computation of the sealed-datagram test vector in tests/vectors.rs.

Uses only Python's hashlib/hmac (HKDF-SHA256), a hand-written HChaCha20 and the
`cryptography` package's ChaCha20-Poly1305 (XChaCha20-Poly1305 = ChaCha20-Poly1305 under the
HChaCha20 subkey of the first 16 nonce bytes, with nonce 0000 || last 8 nonce bytes).

    python3 crates/statesync/tests/vectors/seal_vector.py
"""
import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def rotl(v, c):
    return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))


def quarter(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 7)


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    s = list(struct.unpack("<4I", b"expand 32-byte k")) + list(struct.unpack("<8I", key)) \
        + list(struct.unpack("<4I", nonce16))
    for _ in range(10):
        quarter(s, 0, 4, 8, 12); quarter(s, 1, 5, 9, 13)
        quarter(s, 2, 6, 10, 14); quarter(s, 3, 7, 11, 15)
        quarter(s, 0, 5, 10, 15); quarter(s, 1, 6, 11, 12)
        quarter(s, 2, 7, 8, 13); quarter(s, 3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def xchacha_seal(key: bytes, nonce24: bytes, aad: bytes, pt: bytes) -> bytes:
    sub = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(sub).encrypt(b"\0\0\0\0" + nonce24[16:], pt, aad)


psk = hkdf_extract(b"tandem statesync v1 passphrase", b"correct horse battery staple")
aead_key = hkdf_expand(psk, b"tandem statesync v1 aead key", 32)
key_id = hkdf_expand(psk, b"tandem statesync v1 key id", 4)
print("psk     ", psk.hex())
print("key_id  ", key_id.hex())

node, epoch, seq = 7, 0x1122334455667788, 42
header = b"TS" + bytes([1, 2]) + key_id + struct.pack(">IQQ", node, epoch, seq)
# Control body: one heartbeat (last stream 5, ready, 100 states).
body = bytes([0x10, 0x00, 0x0D]) + struct.pack(">Q", 5) + b"\x01" + struct.pack(">I", 100)
nonce = struct.pack(">IQQ", node, epoch, seq) + b"\0\0\0\0"
sealed = xchacha_seal(aead_key, nonce, header, body)
print("datagram", (header + sealed).hex())
