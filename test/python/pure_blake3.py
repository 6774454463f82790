"""A small pure-Python BLAKE3 (default 32-byte hash mode only).

Debian bookworm packages no BLAKE3 module for Python (there is no
python3-blake3), so the suite carries this one. It follows the BLAKE3 paper's
reference implementation; the compression function is generated as straight-line
code once at import so that hashing a few MiB takes a couple of seconds.
It is self-checked against the vectors of SPEC sections 2.4 and 3.7 before any
test relies on it (see test_daemon.Blake3SelfCheck).
"""

import struct

IV = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
      0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)
MSG_PERMUTATION = (2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8)
CHUNK_START, CHUNK_END, PARENT, ROOT = 1, 2, 4, 8
BLOCK_LEN = 64
CHUNK_LEN = 1024


def _generate_compress():
    # Message word order for each of the 7 rounds.
    schedule = [list(range(16))]
    for _ in range(6):
        prev = schedule[-1]
        schedule.append([prev[MSG_PERMUTATION[i]] for i in range(16)])
    lines = [
        "def compress(cv, m, counter, block_len, flags):",
        "    v0, v1, v2, v3, v4, v5, v6, v7 = cv",
        "    v8, v9, v10, v11 = %d, %d, %d, %d" % IV[:4],
        "    v12 = counter & 0xFFFFFFFF",
        "    v13 = (counter >> 32) & 0xFFFFFFFF",
        "    v14 = block_len",
        "    v15 = flags",
        "    m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15 = m",
    ]

    def g(a, b, c, d, x, y):
        a, b, c, d = "v%d" % a, "v%d" % b, "v%d" % c, "v%d" % d
        out = []
        for msg, r1, r2 in ((x, 16, 12), (y, 8, 7)):
            out += [
                "    %s = (%s + %s + m%d) & 0xFFFFFFFF" % (a, a, b, msg),
                "    t = %s ^ %s" % (d, a),
                "    %s = ((t >> %d) | (t << %d)) & 0xFFFFFFFF" % (d, r1, 32 - r1),
                "    %s = (%s + %s) & 0xFFFFFFFF" % (c, c, d),
                "    t = %s ^ %s" % (b, c),
                "    %s = ((t >> %d) | (t << %d)) & 0xFFFFFFFF" % (b, r2, 32 - r2),
            ]
        return out

    for s in schedule:
        lines += g(0, 4, 8, 12, s[0], s[1])
        lines += g(1, 5, 9, 13, s[2], s[3])
        lines += g(2, 6, 10, 14, s[4], s[5])
        lines += g(3, 7, 11, 15, s[6], s[7])
        lines += g(0, 5, 10, 15, s[8], s[9])
        lines += g(1, 6, 11, 12, s[10], s[11])
        lines += g(2, 7, 8, 13, s[12], s[13])
        lines += g(3, 4, 9, 14, s[14], s[15])
    lines.append("    return (v0 ^ v8, v1 ^ v9, v2 ^ v10, v3 ^ v11, "
                 "v4 ^ v12, v5 ^ v13, v6 ^ v14, v7 ^ v15)")
    namespace = {}
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from constants above
    return namespace["compress"]


# Returns the first 8 output words, which is all that hashing needs
# (chaining values, and the 32-byte root output of block 0).
_compress = _generate_compress()
_BLOCK = struct.Struct("<16I")


def _chunk_output(chunk, chunk_counter):
    """(cv, block words, block_len, flags) of a chunk's last block, not yet compressed."""
    cv = IV
    nblocks = max(1, (len(chunk) + BLOCK_LEN - 1) // BLOCK_LEN)
    for i in range(nblocks):
        block = chunk[i * BLOCK_LEN:(i + 1) * BLOCK_LEN]
        flags = CHUNK_START if i == 0 else 0
        words = _BLOCK.unpack(block.ljust(BLOCK_LEN, b"\0"))
        if i == nblocks - 1:
            return cv, words, chunk_counter, len(block), flags | CHUNK_END
        cv = _compress(cv, words, chunk_counter, BLOCK_LEN, flags)
    raise AssertionError("unreachable")


def _parent_output(left_cv, right_cv):
    return IV, tuple(left_cv) + tuple(right_cv), 0, BLOCK_LEN, PARENT


def _cv(output):
    cv, words, counter, block_len, flags = output
    return _compress(cv, words, counter, block_len, flags)


def blake3(data):
    """BLAKE3 of `data` (bytes-like), 32 bytes."""
    data = memoryview(bytes(data))
    nchunks = max(1, (len(data) + CHUNK_LEN - 1) // CHUNK_LEN)
    stack = []
    for counter in range(nchunks - 1):
        cv = _cv(_chunk_output(bytes(data[counter * CHUNK_LEN:(counter + 1) * CHUNK_LEN]), counter))
        total = counter + 1
        while total & 1 == 0:
            cv = _cv(_parent_output(stack.pop(), cv))
            total >>= 1
        stack.append(cv)
    last = nchunks - 1
    output = _chunk_output(bytes(data[last * CHUNK_LEN:]), last)
    while stack:
        output = _parent_output(stack.pop(), _cv(output))
    cv, words, counter, block_len, flags = output
    return struct.pack("<8I", *_compress(cv, words, counter, block_len, flags | ROOT))
