"""Independent Python client tests for the tvix-store gRPC daemon.

Uses only Debian packages: python3-grpcio (1.51), python3-grpc-tools (1.14,
stubs are generated at test time from ../../protos by tvix_stubs.py) and
python3-protobuf. Run with the system interpreter:

    TVIX_DAEMON=127.0.0.1:PORT /usr/bin/python3 -m unittest -v test_daemon
    TVIX_DAEMON=unix:/path/to.sock /usr/bin/python3 -m unittest -v test_daemon

Against a daemon with --tls-cert and --auth-file, also TVIX_DAEMON_CA=ca.pem
(the CA to trust), TVIX_DAEMON_TOKEN (a write token, sent with every call)
and TVIX_DAEMON_READ_TOKEN (a read token): AuthTest then checks the
statuses of calls without a token, with a wrong one and with the read one.

Expected values come from /work/shared/SPEC.md (sections 1, 2, 3 and the
worked examples of 4 and 5), never from the daemon's own code. Every test
uploads what it needs first (uploads are idempotent), so tests are
independent of each other and of their order, and of what the store already
holds.
"""

import hashlib
import os
import queue
import struct
import threading
import time
import unittest

import grpc

import tvix_stubs
from pure_blake3 import blake3

TIMEOUT = 60  # seconds, per call

S = None  # the stub modules, set in setUpModule
CHANNEL = None

C = grpc.StatusCode

# --- SPEC constants ----------------------------------------------------------

H = bytes.fromhex
EMPTY_B3 = H("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262")
ABC_B3 = H("6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85")
HW = b"Hello World!"
HW_B3 = H("5ca7815adcb484e9a136c11efe69c1d530176d549b5d18d038eb5280b4b3470c")
RUN_SH = b"#!/bin/sh\necho hi\n"
RUN_SH_B3 = H("4b694fa6468140836e2f43625aca1150ec72032dc23a12e13416ca026c647ef3")
THREE_MIB_B3 = H("c9e03344ea01f416e5fd2c4aa87b32f2b13e731d034be31898de3ce251926b1c")  # bytes(i % 251 for i in range(3 MiB))

B_DIGEST = H("8701f4722d8dae7f2c40fa003331b8437a3825f9e1bfd3a77998c64cc226b9cc")
D_DIGEST = H("99922a5c1801805287a647af73bca0ed7352a5f7f373e54992795bcc4a235213")
SUB_DIGEST = H("8b43bce5456f4a1d8744af0634841e0d692107a2c42ba0b639a3d395cdd810f6")
ROOT_DIGEST = H("308a97e51de0275df17cca0873226c9a12e92b3e58f80dc55eb8ccf8bd3b66e6")

# SPEC 1.6
HW_NAR_SIZE = 128
HW_NAR_SHA256 = H("03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040")
HW_STORE_HASH = "ix6ykgdrk4m9dfl0zl48d0nr88g02rxq"
HW_OUTPUT_HASH = H("b867011e42d9828608fd80ba962a99b9bde94d8f")
GET_HW_REQUEST = H("0a14b867011e42d9828608fd80ba962a99b9bde94d8f")
CALC_HW_REQUEST = H("122412205ca7815adcb484e9a136c11efe69c1d530176d549b5d18d038eb5280b4b3470c180c")
CALC_HW_RESPONSE = H("088001122003e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040")
HW_PATHINFO = H(
    "0a4b12490a23697836796b6764726b346d3964666c307a6c343864306e7238386730327278712d6877"
    "12205ca7815adcb484e9a136c11efe69c1d530176d549b5d18d038eb5280b4b3470c180c"
    "1a490880011220" "03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040"
    "32221220" "03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040"
)

# SPEC 5.5: the tree's NAR is 888 bytes with sha256 (nixbase32)
# 1gas6kn20vrjmv80v7xyvlb4x2s4cm2g8yfygac3pyl1hsxa350q, which is this hex
# (decoded by nb32_decode below; `nix-hash --type sha256 --to-base16` agrees).
TREE_NAR_SIZE = 888
TREE_NAR_SHA256_NB32 = "1gas6kn20vrjmv80v7xyvlb4x2s4cm2g8yfygac3pyl1hsxa350q"
TREE_NAR_SHA256 = H("1894a1ba8681fa3b987ade79f44465448b4e16ddbe9f0dd0ae326f20ec345abd")
TREE_STORE_BASENAME = "5mdmy1apg46f58gk1j8qwp1p5nrmx88z-tree"

TVIX_SERVICES = {
    "tvix.castore.v1.BlobService": {"Stat": (False, False), "Read": (False, True), "Put": (True, False)},
    "tvix.castore.v1.DirectoryService": {"Get": (False, True), "Put": (True, False)},
    "tvix.store.v1.PathInfoService": {
        "Get": (False, False), "Put": (False, False), "CalculateNAR": (False, False), "List": (False, True),
    },
}
HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
REFLECTION_V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"


# --- nixbase32 (SPEC 4.1) ----------------------------------------------------

NB32_ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"


def nb32_encode(data):
    n = (len(data) * 8 + 4) // 5
    out = []
    for m in range(n - 1, -1, -1):
        i, j = divmod(m * 5, 8)
        c = data[i] >> j
        if i + 1 < len(data):
            c |= data[i + 1] << (8 - j)
        out.append(NB32_ALPHABET[c & 0x1F])
    return "".join(out)


def nb32_decode(s):
    nbytes = len(s) * 5 // 8
    if (nbytes * 8 + 4) // 5 != len(s):
        raise ValueError("invalid nixbase32 length %d" % len(s))
    out = bytearray(nbytes)
    for m, ch in enumerate(s):
        digit = NB32_ALPHABET.index(ch)
        i, j = divmod((len(s) - 1 - m) * 5, 8)
        if i >= nbytes:
            if digit:
                raise ValueError("nixbase32: stray bits")
            continue
        out[i] |= (digit << j) & 0xFF
        carry = digit >> (8 - j)
        if carry:
            if i + 1 >= nbytes:
                raise ValueError("nixbase32: stray bits")
            out[i + 1] |= carry
    return bytes(out)


# --- NAR (SPEC 5), to cross-check CalculateNAR independently -------------------

def nar_str(b):
    return struct.pack("<Q", len(b)) + b + b"\0" * (-len(b) % 8)


def nar_node(node):
    """node: ('file', bytes, executable) | ('symlink', target) | ('dir', {name: node})"""
    out = nar_str(b"(") + nar_str(b"type")
    if node[0] == "file":
        out += nar_str(b"regular")
        if node[2]:
            out += nar_str(b"executable") + nar_str(b"")
        out += nar_str(b"contents") + nar_str(node[1])
    elif node[0] == "symlink":
        out += nar_str(b"symlink") + nar_str(b"target") + nar_str(node[1])
    else:
        out += nar_str(b"directory")
        for name in sorted(node[1]):
            out += nar_str(b"entry") + nar_str(b"(") + nar_str(b"name") + nar_str(name)
            out += nar_str(b"node") + nar_node(node[1][name]) + nar_str(b")")
    return out + nar_str(b")")


def nar(node):
    return nar_str(b"nix-archive-1") + nar_node(node)


TREE_FS = ("dir", {
    b"link": ("symlink", b"run.sh"),
    b"run.sh": ("file", RUN_SH, True),
    b"sub": ("dir", {b"a.txt": ("file", b"abc", False)}),
})


# --- message builders ----------------------------------------------------------

def dnode(name, digest, size):
    return S.castore.DirectoryNode(name=name, digest=digest, size=size)


def fnode(name, digest, size, executable=False):
    return S.castore.FileNode(name=name, digest=digest, size=size, executable=executable)


def snode(name, target):
    return S.castore.SymlinkNode(name=name, target=target)


def directory(directories=(), files=(), symlinks=()):
    return S.castore.Directory(directories=list(directories), files=list(files), symlinks=list(symlinks))


def empty_dir():
    return directory()


def dir_b():
    return directory(directories=[dnode(b"a", EMPTY_B3, 0)])


def dir_d():
    return directory(directories=[dnode(b"a", EMPTY_B3, 0), dnode(b"b", B_DIGEST, 1)])


def dir_sub():
    return directory(files=[fnode(b"a.txt", ABC_B3, 3)])


def dir_root(sub_size=1):
    return directory(
        directories=[dnode(b"sub", SUB_DIGEST, sub_size)],
        files=[fnode(b"run.sh", RUN_SH_B3, len(RUN_SH), executable=True)],
        symlinks=[snode(b"link", b"run.sh")],
    )


def hw_pathinfo():
    """The PathInfo of SPEC 1.6, built field by field."""
    pi = S.pathinfo.PathInfo()
    pi.node.file.CopyFrom(fnode((HW_STORE_HASH + "-hw").encode(), HW_B3, len(HW)))
    pi.narinfo.nar_size = HW_NAR_SIZE
    pi.narinfo.nar_sha256 = HW_NAR_SHA256
    pi.narinfo.ca.SetInParent()  # type NAR_SHA256 (= 0, omitted on the wire)
    pi.narinfo.ca.digest = HW_NAR_SHA256
    return pi


def tree_pathinfo():
    pi = S.pathinfo.PathInfo()
    pi.node.directory.CopyFrom(dnode(TREE_STORE_BASENAME.encode(), ROOT_DIGEST, 4))
    pi.narinfo.nar_size = TREE_NAR_SIZE
    pi.narinfo.nar_sha256 = TREE_NAR_SHA256
    pi.narinfo.ca.digest = TREE_NAR_SHA256
    return pi


def store_hash(tag):
    """A deterministic 20-byte store path digest and its nixbase32 form."""
    d = hashlib.sha256(tag.encode()).digest()[:20]
    return d, nb32_encode(d)


def fold20(h):
    """Nix's compression of a hash to 20 bytes (SPEC 4.3)."""
    out = bytearray(20)
    for i, b in enumerate(h):
        out[i % 20] ^= b
    return bytes(out)


def missing_digest(tag):
    """A 32-byte digest no test ever uploads content for."""
    return hashlib.sha256(b"tvix python suite: never uploaded: " + tag.encode()).digest()


# --- service helpers -----------------------------------------------------------

def blobs():
    return S.blob_grpc.BlobServiceStub(CHANNEL)


def dirs():
    return S.directory_grpc.DirectoryServiceStub(CHANNEL)


def pathinfos():
    return S.rpc_pathinfo_grpc.PathInfoServiceStub(CHANNEL)


def put_blob(chunks):
    return blobs().Put(iter([S.blob.BlobChunk(data=c) for c in chunks]), timeout=TIMEOUT).digest


def read_blob(digest):
    return [c.data for c in blobs().Read(S.blob.ReadBlobRequest(digest=digest), timeout=TIMEOUT)]


def put_dirs(ds):
    return dirs().Put(iter(ds), timeout=TIMEOUT).root_digest


def get_dirs(digest, recursive):
    req = S.directory.GetDirectoryRequest(digest=digest, recursive=recursive)
    return list(dirs().Get(req, timeout=TIMEOUT))


def upload_tree():
    """Blobs of the SPEC 2.4 tree, then its directories leaves first; returns the root digest."""
    assert put_blob([b"abc"]) == ABC_B3
    assert put_blob([RUN_SH]) == RUN_SH_B3
    return put_dirs([dir_sub(), dir_root()])


def upload_d():
    return put_dirs([empty_dir(), dir_b(), dir_d()])


def raw_unary(method):
    """A unary call that sends and returns raw bytes, to compare wire bytes exactly."""
    return CHANNEL.unary_unary(method, request_serializer=None, response_deserializer=None)


def open_channel(token):
    """A channel to TVIX_DAEMON: over TLS trusting TVIX_DAEMON_CA if set, sending `token` (if any) as a bearer token."""
    target = os.environ["TVIX_DAEMON"]
    ca = os.environ.get("TVIX_DAEMON_CA")
    if ca is None:
        # grpcio sends call credentials (the token) only over TLS.
        assert token is None, "TVIX_DAEMON_TOKEN needs TVIX_DAEMON_CA"
        return grpc.insecure_channel(target)
    with open(ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    if token is not None:
        creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(token))
    return grpc.secure_channel(target, creds)


def setUpModule():
    global S, CHANNEL
    target = os.environ.get("TVIX_DAEMON")
    if not target:
        raise unittest.SkipTest("set TVIX_DAEMON=HOST:PORT or unix:/path/to.sock")
    S = tvix_stubs.load()
    CHANNEL = open_channel(os.environ.get("TVIX_DAEMON_TOKEN"))
    grpc.channel_ready_future(CHANNEL).result(timeout=30)


def tearDownModule():
    if CHANNEL is not None:
        CHANNEL.close()


class Case(unittest.TestCase):
    maxDiff = None

    def assertStatus(self, code, fn, *args, **kwargs):
        """fn(*args) must fail with `code`; streaming results are drained so their status counts."""
        with self.assertRaises(grpc.RpcError) as cm:
            res = fn(*args, **kwargs)
            if hasattr(res, "__iter__") and not isinstance(res, (bytes, str)):
                list(res)
        self.assertEqual(cm.exception.code(), code, "details: %r" % cm.exception.details())
        return cm.exception


# --- self checks of the suite's own helpers --------------------------------------

class HelperSelfCheck(unittest.TestCase):
    """The pure-Python BLAKE3, nixbase32 and NAR writer against SPEC / official vectors."""

    def test_blake3_vectors(self):
        self.assertEqual(blake3(b""), EMPTY_B3)
        self.assertEqual(blake3(b"abc"), ABC_B3)
        self.assertEqual(blake3(HW), HW_B3)
        self.assertEqual(blake3(RUN_SH), RUN_SH_B3)
        # Official BLAKE3 test vectors (input byte i = i % 251), multi-chunk tree shapes.
        official = {
            1024: "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
            1025: "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444",
            2049: "5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030",
            3073: "7124b49501012f81cc7f11ca069ec9226cecb8a2c850cfe644e327d22d3e1cd3",
            31744: "62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47",
            102400: "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085",
        }
        for n, want in official.items():
            with self.subTest(n=n):
                self.assertEqual(blake3(bytes(i % 251 for i in range(n))).hex(), want)

    def test_directory_digests(self):
        # SPEC 2.4: canonical bytes (Python's proto3 serialisation) hashed with BLAKE3.
        self.assertEqual(empty_dir().SerializeToString(), b"")
        b = dir_b().SerializeToString()
        self.assertEqual(len(b), 39)
        self.assertEqual(b, H("0a250a01611220") + EMPTY_B3)
        self.assertEqual(blake3(b), B_DIGEST)
        self.assertEqual(blake3(dir_d().SerializeToString()), D_DIGEST)
        sub = dir_sub().SerializeToString()
        self.assertEqual(sub, H("122b0a05612e7478741220") + ABC_B3 + H("1803"))
        self.assertEqual(blake3(sub), SUB_DIGEST)
        root = dir_root().SerializeToString()
        self.assertEqual(len(root), 107)
        self.assertEqual(root, H("0a290a037375621220") + SUB_DIGEST + H("1801") + H("122e0a0672756e2e73681220")
                         + RUN_SH_B3 + H("18122001") + H("1a0e0a046c696e6b120672756e2e7368"))
        self.assertEqual(blake3(root), ROOT_DIGEST)

    def test_nixbase32(self):
        self.assertEqual(nb32_encode(bytes([0x1F])), "0z")
        self.assertEqual(nb32_encode(H("8a12321522fd91efbd60ebb2481af88580f61600")), "00bgd045z0d4icpbc2yyz4gx48ak44la")
        self.assertEqual(nb32_encode(hashlib.sha256(b"").digest()), "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73")
        self.assertEqual(nb32_decode(HW_STORE_HASH), HW_OUTPUT_HASH)
        self.assertEqual(nb32_decode(TREE_NAR_SHA256_NB32), TREE_NAR_SHA256)
        self.assertEqual(nb32_encode(TREE_NAR_SHA256), TREE_NAR_SHA256_NB32)

    def test_nar_writer(self):
        hw = nar(("file", HW, False))
        self.assertEqual(len(hw), HW_NAR_SIZE)
        self.assertEqual(hashlib.sha256(hw).digest(), HW_NAR_SHA256)
        tree = nar(TREE_FS)
        self.assertEqual(len(tree), TREE_NAR_SIZE)
        self.assertEqual(hashlib.sha256(tree).digest(), TREE_NAR_SHA256)
        self.assertEqual(tree[456:456 + len(RUN_SH)], RUN_SH)  # SPEC 5.5 offsets
        self.assertEqual(tree[800:803], b"abc")

    def test_pathinfo_bytes(self):
        self.assertEqual(len(HW_PATHINFO), 152)
        self.assertEqual(hw_pathinfo().SerializeToString(), HW_PATHINFO)
        req = S.rpc_pathinfo.GetPathInfoRequest(by_output_hash=HW_OUTPUT_HASH)
        self.assertEqual(req.SerializeToString(), GET_HW_REQUEST)
        node = S.castore.Node(file=fnode(b"", HW_B3, len(HW)))
        self.assertEqual(node.SerializeToString(), CALC_HW_REQUEST)


# --- BlobService -------------------------------------------------------------------

class BlobServiceTest(Case):

    def test_put_several_chunks_and_read_back(self):
        self.assertEqual(put_blob([b"Hello", b" ", b"", b"World!"]), HW_B3)
        self.assertEqual(b"".join(read_blob(HW_B3)), HW)
        self.assertEqual(put_blob([b"a", b"b", b"c"]), ABC_B3)
        self.assertEqual(b"".join(read_blob(ABC_B3)), b"abc")

    def test_put_is_idempotent(self):
        self.assertEqual(put_blob([HW]), HW_B3)
        self.assertEqual(put_blob([HW]), HW_B3)
        self.assertEqual(put_blob([b"Hello W", b"orld!"]), HW_B3)

    def test_empty_blob(self):
        self.assertEqual(put_blob([]), EMPTY_B3)  # zero messages
        self.assertEqual(put_blob([b""]), EMPTY_B3)  # one empty message
        self.assertEqual(b"".join(read_blob(EMPTY_B3)), b"")
        blobs().Stat(S.blob.StatBlobRequest(digest=EMPTY_B3), timeout=TIMEOUT)

    def test_three_mib_blob(self):
        data = bytes(i % 251 for i in range(3 * 1024 * 1024))
        # pure_blake3's digest of `data` (checked against the official vectors above), as a
        # literal: hashing 3 MiB in pure Python costs 2 s of CPU in each of the suite's runs.
        want = THREE_MIB_B3
        step = 64 * 1024
        self.assertEqual(put_blob([data[i:i + step] for i in range(0, len(data), step)]), want)
        chunks = read_blob(want)
        self.assertEqual(b"".join(chunks), data)
        self.assertTrue(all(len(c) <= 4 * 1024 * 1024 for c in chunks))
        # The same content as one 3 MiB message (below the 4 MiB message limit).
        self.assertEqual(put_blob([data]), want)
        stat = blobs().Stat(S.blob.StatBlobRequest(digest=want, send_chunks=True), timeout=TIMEOUT)
        if stat.chunks:  # SPEC 3.2: when chunks are given, they must make up the blob
            self.assertEqual(sum(c.size for c in stat.chunks), len(data))
            for c in stat.chunks:
                self.assertEqual(len(c.digest), 32)

    def test_stat(self):
        self.assertEqual(put_blob([b"abc"]), ABC_B3)
        res = blobs().Stat(S.blob.StatBlobRequest(digest=ABC_B3), timeout=TIMEOUT)
        self.assertIsInstance(res, S.blob.StatBlobResponse)
        self.assertStatus(C.NOT_FOUND, blobs().Stat, S.blob.StatBlobRequest(digest=missing_digest("stat")),
                          timeout=TIMEOUT)
        for n in (0, 31, 33):
            with self.subTest(digest_len=n):
                self.assertStatus(C.INVALID_ARGUMENT, blobs().Stat, S.blob.StatBlobRequest(digest=ABC_B3[:n].ljust(n, b"\1")),
                                  timeout=TIMEOUT)

    def test_read_errors(self):
        self.assertStatus(C.NOT_FOUND, read_blob, missing_digest("read"))
        for n in (0, 31, 33):
            with self.subTest(digest_len=n):
                self.assertStatus(C.INVALID_ARGUMENT, read_blob, b"\1" * n)


# --- DirectoryService ------------------------------------------------------------------

class DirectoryServiceTest(Case):

    def test_put_tree_and_get(self):
        self.assertEqual(upload_tree(), ROOT_DIGEST)
        got = get_dirs(ROOT_DIGEST, recursive=False)
        self.assertEqual([d.SerializeToString() for d in got], [dir_root().SerializeToString()])
        got = get_dirs(ROOT_DIGEST, recursive=True)
        self.assertEqual([blake3(d.SerializeToString()) for d in got], [ROOT_DIGEST, SUB_DIGEST])
        self.assertEqual(got[1], dir_sub())

    def test_recursive_get_order(self):
        # SPEC 3.7: Get(D, recursive) = [D, empty, B]; the empty directory is sent once.
        self.assertEqual(upload_d(), D_DIGEST)
        got = get_dirs(D_DIGEST, recursive=True)
        self.assertEqual([blake3(d.SerializeToString()) for d in got], [D_DIGEST, EMPTY_B3, B_DIGEST])
        self.assertEqual([d.SerializeToString() for d in get_dirs(D_DIGEST, recursive=False)], [dir_d().SerializeToString()])
        self.assertEqual([blake3(d.SerializeToString()) for d in get_dirs(B_DIGEST, recursive=True)], [B_DIGEST, EMPTY_B3])

    def test_same_directory_twice_in_a_stream(self):
        self.assertEqual(put_dirs([empty_dir(), empty_dir(), dir_b(), dir_b()]), B_DIGEST)

    def test_three_lists_sorted_independently(self):
        # SPEC 2.1 rule 2: directories=[b], symlinks=[a] is valid.
        put_dirs([empty_dir()])
        d = directory(directories=[dnode(b"b", EMPTY_B3, 0)], symlinks=[snode(b"a", b"x")])
        self.assertEqual(put_dirs([empty_dir(), d]), blake3(d.SerializeToString()))

    def test_get_absent(self):
        absent = missing_digest("dir")
        self.assertStatus(C.NOT_FOUND, get_dirs, absent, False)
        self.assertEqual(get_dirs(absent, True), [])  # our daemon's (and tvix-2024's) choice

    def test_get_bad_argument(self):
        for n in (0, 31, 33):
            for rec in (False, True):
                with self.subTest(digest_len=n, recursive=rec):
                    self.assertStatus(C.INVALID_ARGUMENT, get_dirs, b"\1" * n, rec)
        with self.subTest("by_what unset"):
            self.assertStatus(C.INVALID_ARGUMENT, lambda: list(dirs().Get(S.directory.GetDirectoryRequest(), timeout=TIMEOUT)))

    def test_invalid_puts(self):
        put_blob([b"abc"])
        f = lambda name, digest=ABC_B3: fnode(name, digest, 3)  # noqa: E731
        unstored_dir = directory(symlinks=[snode(b"never-stored", b"python suite")])
        unstored = blake3(unstored_dir.SerializeToString())
        cases = {
            "unsorted files": [directory(files=[f(b"b"), f(b"a")])],
            "unsorted directories": [empty_dir(), directory(directories=[dnode(b"b", EMPTY_B3, 0), dnode(b"a", EMPTY_B3, 0)])],
            "prefix sorts first": [directory(symlinks=[snode(b"ab", b"x"), snode(b"a", b"x")])],
            "duplicate name in one list": [directory(files=[f(b"a"), f(b"a")])],
            "duplicate name across lists": [empty_dir(), directory(directories=[dnode(b"a", EMPTY_B3, 0)], files=[f(b"a")])],
            "name ..": [directory(files=[f(b"..")])],
            "name .": [directory(files=[f(b".")])],
            "empty name": [directory(symlinks=[snode(b"", b"x")])],
            "name with /": [directory(files=[f(b"a/b")])],
            "name with NUL": [directory(files=[f(b"a\0b")])],
            "name of 256 bytes": [directory(files=[f(b"n" * 256)])],
            "31-byte file digest": [directory(files=[f(b"a", ABC_B3[:31])])],
            "31-byte directory digest": [directory(directories=[dnode(b"a", EMPTY_B3[:31], 0)])],
            "empty symlink target": [directory(symlinks=[snode(b"a", b"")])],
            "symlink target with NUL": [directory(symlinks=[snode(b"a", b"x\0y")])],
            # A child that is neither in this stream nor anywhere in the store.
            "child not sent first": [directory(directories=[dnode(b"x", unstored, 1)])],
            "child sent after its parent": [directory(directories=[dnode(b"x", unstored, 1)]), unstored_dir],
            "wrong child size": [dir_sub(), dir_root(sub_size=2)],  # SPEC 3.7: [sub, root']
            "wrong child size, child stored": [dir_root(sub_size=2)],
            "empty stream": [],
        }
        upload_tree()  # children that exist in the store do not make these valid
        for name, stream in cases.items():
            with self.subTest(name):
                self.assertStatus(C.INVALID_ARGUMENT, put_dirs, stream)

    # The project's issue asks the daemon to reject a Directory referring to a
    # directory "neither sent earlier in the stream nor already stored": a child
    # the store already has counts (SPEC 3.3 is stricter, and so is tvix-2024).
    # A stored Directory implies its whole closure is stored, so only new
    # Directories need to travel.
    def test_child_already_stored_counts(self):
        upload_tree()  # sub is now stored
        upload_d()  # the empty directory is now stored
        self.assertEqual(put_dirs([dir_root()]), ROOT_DIGEST)
        self.assertEqual(put_dirs([dir_b()]), blake3(dir_b().SerializeToString()))

    def test_name_of_255_bytes_is_valid(self):
        put_blob([b"abc"])
        d = directory(files=[fnode(b"n" * 255, ABC_B3, 3)])
        self.assertEqual(put_dirs([d]), blake3(d.SerializeToString()))

    def test_digest_of_non_canonical_encoding(self):
        # SPEC 2.3: receivers parse and re-encode before hashing. Send sub and
        # root with explicit defaults and fields out of order, as raw bytes.
        upload_tree()
        file_a = H("180320000a05612e74787412 20".replace(" ", "")) + ABC_B3  # size, executable=false, name, digest
        sub = H("12%02x" % len(file_a)) + file_a
        self.assertEqual(S.castore.Directory.FromString(sub), dir_sub())
        root_canon = dir_root().SerializeToString()
        run_sh = dir_root().files[0].SerializeToString()
        sub_node = dir_root().directories[0].SerializeToString()
        link = dir_root().symlinks[0].SerializeToString()
        # files first, then symlinks, then directories, a size-0-like default (executable) kept explicit
        root = (H("12%02x" % len(run_sh)) + run_sh + H("1a%02x" % len(link)) + link
                + H("0a%02x" % len(sub_node)) + sub_node)
        self.assertNotEqual(root, root_canon)
        self.assertEqual(S.castore.Directory.FromString(root), dir_root())
        put = CHANNEL.stream_unary("/tvix.castore.v1.DirectoryService/Put", request_serializer=None,
                                   response_deserializer=S.directory.PutDirectoryResponse.FromString)
        self.assertEqual(put(iter([sub, root]), timeout=TIMEOUT).root_digest, ROOT_DIGEST)
        # What comes back is the canonical encoding, byte for byte.
        get = CHANNEL.unary_stream("/tvix.castore.v1.DirectoryService/Get", request_serializer=None,
                                   response_deserializer=None)
        req = S.directory.GetDirectoryRequest(digest=ROOT_DIGEST, recursive=True).SerializeToString()
        self.assertEqual(list(get(req, timeout=TIMEOUT)), [root_canon, dir_sub().SerializeToString()])

    def test_file_size_is_checked_against_stored_blobs(self):
        # SPEC 2.1 leaves FileNode.size unchecked; this store refuses a size its stored blob does not have.
        put_blob([b"abc"])
        d = directory(files=[fnode(b"a.txt", ABC_B3, 4)])
        self.assertStatus(C.INVALID_ARGUMENT, put_dirs, [d])
        # A blob not stored yet may come later: any size is taken for now (the PathInfo checks it).
        later = directory(files=[fnode(b"later", missing_digest("directory file size"), 4)])
        self.assertEqual(put_dirs([later]), blake3(later.SerializeToString()))



# --- PathInfoService ----------------------------------------------------------------

def put_pathinfo(pi):
    return pathinfos().Put(pi, timeout=TIMEOUT)


def get_pathinfo(digest):
    return pathinfos().Get(S.rpc_pathinfo.GetPathInfoRequest(by_output_hash=digest), timeout=TIMEOUT)


def symlink_pathinfo(tag, target=b"/nix/store/somewhereelse"):
    """A PathInfo needing no blobs: a symlink at a made-up store path."""
    digest, h = store_hash(tag)
    pi = S.pathinfo.PathInfo()
    pi.node.symlink.CopyFrom(snode(("%s-%s" % (h, tag)).encode(), target))
    n = nar(("symlink", target))
    pi.narinfo.nar_size = len(n)
    pi.narinfo.nar_sha256 = hashlib.sha256(n).digest()
    return digest, pi


class PathInfoServiceTest(Case):

    def test_put_and_get_spec_pathinfo(self):
        self.assertEqual(put_blob([HW]), HW_B3)
        pi = S.pathinfo.PathInfo.FromString(HW_PATHINFO)
        self.assertEqual(put_pathinfo(pi).SerializeToString(), HW_PATHINFO)
        self.assertEqual(get_pathinfo(HW_OUTPUT_HASH).SerializeToString(), HW_PATHINFO)
        # And the raw bytes on the wire, both ways, as in SPEC 1.6.
        self.assertEqual(raw_unary("/tvix.store.v1.PathInfoService/Get")(GET_HW_REQUEST, timeout=TIMEOUT), HW_PATHINFO)

    def test_get_errors(self):
        self.assertStatus(C.INVALID_ARGUMENT, get_pathinfo, HW_OUTPUT_HASH[:19])
        self.assertStatus(C.INVALID_ARGUMENT, get_pathinfo, HW_OUTPUT_HASH + b"\0")
        self.assertStatus(C.NOT_FOUND, get_pathinfo, store_hash("absent")[0])
        self.assertStatus(C.UNIMPLEMENTED, pathinfos().Get, S.rpc_pathinfo.GetPathInfoRequest(), timeout=TIMEOUT)

    def test_put_keeps_all_fields_and_never_replaces(self):
        put_blob([HW])
        put_pathinfo(hw_pathinfo())
        digest, pi = symlink_pathinfo("keeps")
        # References (stored ones), signatures and deriver: every field round-trips.
        pi.references.append(HW_OUTPUT_HASH)
        pi.narinfo.reference_names.append(HW_STORE_HASH + "-hw")
        pi.narinfo.signatures.add(name="cache.example.org-1", data=bytes(range(64)))
        drv_digest, drv_hash = store_hash("deriver")
        pi.narinfo.deriver.name = "keeps"
        pi.narinfo.deriver.digest = drv_digest
        self.assertEqual(put_pathinfo(pi).SerializeToString(), pi.SerializeToString())
        self.assertEqual(get_pathinfo(digest).SerializeToString(), pi.SerializeToString())
        # The same content again is accepted, and the answer is what is stored (no signature merged in).
        again = S.pathinfo.PathInfo.FromString(pi.SerializeToString())
        again.narinfo.signatures.add(name="other.example.org-1", data=bytes(64))
        self.assertEqual(put_pathinfo(again).SerializeToString(), pi.SerializeToString())
        # Other content for the same path is refused, and the stored one stays.
        other = S.pathinfo.PathInfo.FromString(pi.SerializeToString())
        other.node.symlink.target = b"/nix/store/elsewhere"
        self.assertStatus(C.ALREADY_EXISTS, put_pathinfo, other)
        self.assertEqual(get_pathinfo(digest).SerializeToString(), pi.SerializeToString())

    def test_put_reference_not_stored(self):
        digest, pi = symlink_pathinfo("dangling")
        ref_digest, ref_hash = store_hash("never stored")
        pi.references.append(ref_digest)
        pi.narinfo.reference_names.append(ref_hash + "-never")
        self.assertStatus(C.FAILED_PRECONDITION, put_pathinfo, pi)
        self.assertStatus(C.NOT_FOUND, get_pathinfo, digest)

    def test_put_tree_pathinfo(self):
        upload_tree()
        pi = tree_pathinfo()
        self.assertEqual(put_pathinfo(pi), pi)
        self.assertEqual(get_pathinfo(nb32_decode(TREE_STORE_BASENAME[:32])), pi)

    def test_invalid_pathinfos(self):
        put_blob([HW])

        def variant(mutate):
            pi = hw_pathinfo()
            mutate(pi)
            return pi

        def ref_mismatch(pi):
            pi.references.append(store_hash("one")[0])
            pi.narinfo.reference_names.append(store_hash("two")[1] + "-two")

        def ref_count(pi):
            pi.references.append(HW_OUTPUT_HASH)

        def ref_19(pi):
            pi.references.append(HW_OUTPUT_HASH[:19])
            pi.narinfo.reference_names.append(HW_STORE_HASH + "-hw")

        def ref_name_with_store_dir(pi):
            pi.references.append(HW_OUTPUT_HASH)
            pi.narinfo.reference_names.append("/nix/store/" + HW_STORE_HASH + "-hw")

        def bad_root_name(pi):
            pi.node.file.name = b"hw"

        def root_name_bad_hash(pi):
            pi.node.file.name = b"ix6ykgdrk4m9dfl0zl48d0nr88g02rxe-hw"  # 'e' is not nixbase32

        def root_name_empty(pi):
            pi.node.file.name = b""

        def node_unset(pi):
            pi.ClearField("node")

        def file_digest_31(pi):
            pi.node.file.digest = HW_B3[:31]

        def narinfo_missing(pi):
            pi.ClearField("narinfo")

        def nar_sha256_31(pi):
            pi.narinfo.nar_sha256 = HW_NAR_SHA256[:31]

        def signature_63(pi):
            pi.narinfo.signatures.add(name="k", data=b"\1" * 63)

        def deriver_19(pi):
            pi.narinfo.deriver.name = "hw"
            pi.narinfo.deriver.digest = HW_OUTPUT_HASH[:19]

        def ca_wrong_length(pi):
            pi.narinfo.ca.digest = HW_NAR_SHA256[:20]  # NAR_SHA256 needs 32

        def ca_unknown_type(pi):
            pi.narinfo.ca.type = 99

        cases = {
            "reference name mismatch": ref_mismatch,
            "references without names": ref_count,
            "19-byte reference": ref_19,
            "reference name with store dir": ref_name_with_store_dir,
            "31-byte nar_sha256": nar_sha256_31,
            "bad root name": bad_root_name,
            "root name with bad hash": root_name_bad_hash,
            "empty root name": root_name_empty,
            "node unset": node_unset,
            "31-byte file digest": file_digest_31,
            "narinfo missing": narinfo_missing,
            "63-byte signature": signature_63,
            "19-byte deriver digest": deriver_19,
            "ca digest of wrong length": ca_wrong_length,
            "ca of unknown type": ca_unknown_type,
        }
        for name, mutate in cases.items():
            with self.subTest(name):
                self.assertStatus(C.INVALID_ARGUMENT, put_pathinfo, variant(mutate))
        # Nothing of that was stored under the hw path: Get is either absent or the valid one.
        try:
            self.assertEqual(get_pathinfo(HW_OUTPUT_HASH).SerializeToString(), HW_PATHINFO)
        except grpc.RpcError as e:
            self.assertEqual(e.code(), C.NOT_FOUND)

    def test_put_missing_content(self):
        digest, h = store_hash("missing-blob")
        pi = S.pathinfo.PathInfo()
        pi.node.file.CopyFrom(fnode(("%s-missing-blob" % h).encode(), missing_digest("pathinfo blob"), 5))
        pi.narinfo.nar_size = 120
        pi.narinfo.nar_sha256 = b"\2" * 32
        self.assertStatus(C.FAILED_PRECONDITION, put_pathinfo, pi)
        self.assertStatus(C.NOT_FOUND, get_pathinfo, digest)

        digest, h = store_hash("missing-dir")
        pi = S.pathinfo.PathInfo()
        pi.node.directory.CopyFrom(dnode(("%s-missing-dir" % h).encode(), missing_digest("pathinfo dir"), 1))
        pi.narinfo.nar_size = 96
        pi.narinfo.nar_sha256 = b"\3" * 32
        self.assertStatus(C.FAILED_PRECONDITION, put_pathinfo, pi)
        self.assertStatus(C.NOT_FOUND, get_pathinfo, digest)

    def test_calculate_nar_file(self):
        put_blob([HW])
        node = S.castore.Node(file=fnode(b"", HW_B3, len(HW)))
        res = pathinfos().CalculateNAR(node, timeout=TIMEOUT)
        self.assertEqual((res.nar_size, res.nar_sha256), (HW_NAR_SIZE, HW_NAR_SHA256))
        self.assertEqual(raw_unary("/tvix.store.v1.PathInfoService/CalculateNAR")(CALC_HW_REQUEST, timeout=TIMEOUT),
                         CALC_HW_RESPONSE)
        # Seed clients send the basename: accepted, same answer (SPEC 1.7).
        named = S.castore.Node(file=fnode((HW_STORE_HASH + "-hw").encode(), HW_B3, len(HW)))
        res = pathinfos().CalculateNAR(named, timeout=TIMEOUT)
        self.assertEqual((res.nar_size, res.nar_sha256), (HW_NAR_SIZE, HW_NAR_SHA256))

    def test_calculate_nar_symlink_and_executable(self):
        res = pathinfos().CalculateNAR(S.castore.Node(symlink=snode(b"", b"/nix/store/somewhereelse")), timeout=TIMEOUT)
        want = nar(("symlink", b"/nix/store/somewhereelse"))
        self.assertEqual(len(want), 136)
        self.assertEqual((res.nar_size, res.nar_sha256), (136, hashlib.sha256(want).digest()))
        self.assertEqual(put_blob([b"x"]), blake3(b"x"))
        res = pathinfos().CalculateNAR(S.castore.Node(file=fnode(b"", blake3(b"x"), 1, executable=True)), timeout=TIMEOUT)
        want = nar(("file", b"x", True))
        self.assertEqual((res.nar_size, res.nar_sha256), (152, hashlib.sha256(want).digest()))

    def test_calculate_nar_tree(self):
        self.assertEqual(upload_tree(), ROOT_DIGEST)
        res = pathinfos().CalculateNAR(S.castore.Node(directory=dnode(b"", ROOT_DIGEST, 4)), timeout=TIMEOUT)
        self.assertEqual(res.nar_size, TREE_NAR_SIZE)
        self.assertEqual(res.nar_sha256.hex(), TREE_NAR_SHA256.hex())
        upload_d()
        res = pathinfos().CalculateNAR(S.castore.Node(directory=dnode(b"", D_DIGEST, 3)), timeout=TIMEOUT)
        want = nar(("dir", {b"a": ("dir", {}), b"b": ("dir", {b"a": ("dir", {})})}))
        self.assertEqual((res.nar_size, res.nar_sha256), (len(want), hashlib.sha256(want).digest()))

    def test_calculate_nar_errors(self):
        calc = pathinfos().CalculateNAR
        self.assertStatus(C.NOT_FOUND, calc, S.castore.Node(file=fnode(b"", missing_digest("nar file"), 5)),
                          timeout=TIMEOUT)
        self.assertStatus(C.NOT_FOUND, calc, S.castore.Node(directory=dnode(b"", missing_digest("nar dir"), 1)),
                          timeout=TIMEOUT)
        self.assertStatus(C.INVALID_ARGUMENT, calc, S.castore.Node(), timeout=TIMEOUT)
        self.assertStatus(C.INVALID_ARGUMENT, calc, S.castore.Node(file=fnode(b"", HW_B3[:31], 12)), timeout=TIMEOUT)

    def test_calculate_nar_size_mismatch(self):
        # SPEC 8.3: a blob shorter or longer than the node's size is an error (code unspecified).
        put_blob([HW])
        for size in (11, 13, 0):
            with self.subTest(size=size):
                with self.assertRaises(grpc.RpcError) as cm:
                    pathinfos().CalculateNAR(S.castore.Node(file=fnode(b"", HW_B3, size)), timeout=TIMEOUT)
                self.assertNotEqual(cm.exception.code(), C.OK)
        # The same inside a directory whose file entry claims the wrong size (sent before its blob,
        # the only order in which the store takes a wrong size).
        content = b"calculate-nar: a blob whose size a directory gets wrong"
        d = directory(files=[fnode(b"a.txt", blake3(content), len(content) + 1)])
        digest = put_dirs([d])
        put_blob([content])
        with self.assertRaises(grpc.RpcError):
            pathinfos().CalculateNAR(S.castore.Node(directory=dnode(b"", digest, 1)), timeout=TIMEOUT)
        # A failed calculation does not poison any cache: the right size still works.
        res = pathinfos().CalculateNAR(S.castore.Node(file=fnode(b"", HW_B3, len(HW))), timeout=TIMEOUT)
        self.assertEqual((res.nar_size, res.nar_sha256), (HW_NAR_SIZE, HW_NAR_SHA256))

    def test_store_path_names(self):
        # SPEC 4.2 name rules, for the root node and for reference names.
        def named(name):
            digest, h = store_hash("names-" + name)
            pi = S.pathinfo.PathInfo()
            pi.node.symlink.CopyFrom(snode(("%s-%s" % (h, name)).encode(), b"/nix/store/somewhereelse"))
            pi.narinfo.nar_size = 136
            pi.narinfo.nar_sha256 = hashlib.sha256(nar(("symlink", b"/nix/store/somewhereelse"))).digest()
            return pi

        for name in ["a" * 211, ".dotfile", "A-Za-z0-9+-._?=", "x"]:
            with self.subTest(valid=name):
                pi = named(name)
                self.assertEqual(put_pathinfo(pi), pi)
        for name in ["a" * 212, "", "with space", "a/b", "caf\u00e9", "a:b", "a@b"]:
            with self.subTest(invalid=name):
                self.assertStatus(C.INVALID_ARGUMENT, put_pathinfo, named(name))
        with self.subTest("reference name with space"):
            pi = named("x")
            pi.references.append(HW_OUTPUT_HASH)
            pi.narinfo.reference_names.append(HW_STORE_HASH + "-h w")
            self.assertStatus(C.INVALID_ARGUMENT, put_pathinfo, pi)
        with self.subTest("deriver name with space"):
            pi = named("x")
            pi.narinfo.deriver.name = "a b"
            pi.narinfo.deriver.digest = HW_OUTPUT_HASH
            self.assertStatus(C.INVALID_ARGUMENT, put_pathinfo, pi)
        with self.subTest("deriver name ending in .drv"):  # SPEC 3.5 rule 5: not rejected
            pi = named("y")
            pi.narinfo.deriver.name = "foo.drv"
            pi.narinfo.deriver.digest = HW_OUTPUT_HASH
            self.assertEqual(put_pathinfo(pi), pi)

    def test_symlink_targets(self):
        # SPEC 3.5 rule 8 / 2.1 rule 5 for a symlink root node.
        for target, ok in [(b"t" * 4095, True), (b"t" * 4096, False), (b"", False), (b"a\0b", False)]:
            with self.subTest(target_len=len(target), ok=ok):
                _, pi = symlink_pathinfo("target")
                pi.node.symlink.target = target
                if ok:
                    self.assertEqual(put_pathinfo(pi), pi)
                else:
                    self.assertStatus(C.INVALID_ARGUMENT, put_pathinfo, pi)

    def test_ca_types(self):
        # SPEC 1.4 and 4.3: every CA hash type, at the store path it gives for the file hw; one byte less is refused.
        hash_enum = S.pathinfo.NARInfo.CA.Hash
        kinds = {"NAR_SHA256": ("nar", "sha256"), "NAR_SHA1": ("nar", "sha1"), "NAR_SHA512": ("nar", "sha512"),
                 "NAR_MD5": ("nar", "md5"), "TEXT_SHA256": ("text", "sha256"), "FLAT_SHA1": ("flat", "sha1"),
                 "FLAT_MD5": ("flat", "md5"), "FLAT_SHA256": ("flat", "sha256"), "FLAT_SHA512": ("flat", "sha512")}
        self.assertEqual(sorted(hash_enum.keys()), sorted(kinds))
        put_blob([HW])
        hw_nar = nar(("file", HW, False))
        for name, (mode, algo) in kinds.items():
            with self.subTest(name):
                ca_digest = hashlib.new(algo, hw_nar if mode == "nar" else HW).digest()
                tag = "ca-" + name.lower().replace("_", "-")
                if mode == "nar" and algo == "sha256":
                    fingerprint_type, inner = "source", ca_digest
                elif mode == "text":
                    fingerprint_type, inner = "text", ca_digest
                else:
                    prefix = "r:" if mode == "nar" else ""
                    fingerprint_type = "output:out"
                    inner = hashlib.sha256(("fixed:out:%s%s:%s:" % (prefix, algo, ca_digest.hex())).encode()).digest()
                fingerprint = "%s:sha256:%s:/nix/store:%s" % (fingerprint_type, inner.hex(), tag)
                digest = fold20(hashlib.sha256(fingerprint.encode()).digest())
                pi = S.pathinfo.PathInfo()
                pi.node.file.CopyFrom(fnode(("%s-%s" % (nb32_encode(digest), tag)).encode(), HW_B3, len(HW)))
                pi.narinfo.nar_size = len(hw_nar)
                pi.narinfo.nar_sha256 = hashlib.sha256(hw_nar).digest()
                pi.narinfo.ca.type = hash_enum.Value(name)
                pi.narinfo.ca.digest = ca_digest
                self.assertEqual(put_pathinfo(pi), pi)
                self.assertEqual(get_pathinfo(digest), pi)
                stored = S.pathinfo.PathInfo.FromString(pi.SerializeToString())
                pi.narinfo.ca.digest = ca_digest[:-1]
                self.assertStatus(C.INVALID_ARGUMENT, put_pathinfo, pi)
                # A made-up CA at a path nothing is stored under: not the path it gives.
                pi.node.file.name = ("%s-%s" % (store_hash(tag)[1], tag)).encode()
                pi.narinfo.ca.digest = b"\5" * len(ca_digest)
                self.assertStatus(C.INVALID_ARGUMENT, put_pathinfo, pi)
                self.assertEqual(get_pathinfo(digest), stored)


    def test_list(self):
        put_blob([HW])
        put_pathinfo(S.pathinfo.PathInfo.FromString(HW_PATHINFO))
        upload_tree()
        put_pathinfo(tree_pathinfo())
        _, link = symlink_pathinfo("listed")
        put_pathinfo(link)
        listed = list(pathinfos().List(S.rpc_pathinfo.ListPathInfoRequest(), timeout=TIMEOUT))
        by_name = {}
        for pi in listed:
            kind = pi.node.WhichOneof("node")
            self.assertIsNotNone(kind)
            name = getattr(pi.node, kind).name
            self.assertNotIn(name, by_name, "listed twice")
            by_name[name] = pi.SerializeToString()
        self.assertEqual(by_name.get((HW_STORE_HASH + "-hw").encode()), HW_PATHINFO)
        self.assertEqual(by_name.get(TREE_STORE_BASENAME.encode()), tree_pathinfo().SerializeToString())
        self.assertEqual(by_name.get(link.node.symlink.name), link.SerializeToString())


# --- robustness -----------------------------------------------------------------------

class RobustnessTest(Case):

    def assertStillServing(self):
        res = S.health_grpc.HealthStub(CHANNEL).Check(S.health.HealthCheckRequest(service=""), timeout=TIMEOUT)
        self.assertEqual(res.status, S.health.HealthCheckResponse.SERVING)

    def test_concurrent_puts(self):
        import concurrent.futures

        datas = [bytes([i]) * (256 * 1024 + i) for i in range(6)] + [HW] * 6
        with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
            got = list(pool.map(lambda d: put_blob([d[i:i + 8192] for i in range(0, len(d), 8192)]), datas))
        want = [blake3(d) for d in datas]
        self.assertEqual(got, want)
        for d, digest in zip(datas[:6], want):
            self.assertEqual(b"".join(read_blob(digest)), d)

    def test_cancelled_calls(self):
        # A Put abandoned half-way stores nothing under the full content's digest.
        data = b"cancelled upload " * 20000
        sent, release = threading.Event(), threading.Event()

        def chunks():
            yield S.blob.BlobChunk(data=data[:100000])
            sent.set()
            release.wait(30)  # the call is cancelled meanwhile
            yield S.blob.BlobChunk(data=data[100000:])

        fut = blobs().Put.future(chunks(), timeout=TIMEOUT)
        self.assertTrue(sent.wait(10))
        time.sleep(0.2)
        fut.cancel()
        release.set()
        self.assertStatus(C.NOT_FOUND, blobs().Stat, S.blob.StatBlobRequest(digest=blake3(data)), timeout=TIMEOUT)
        # A Read abandoned after its first chunk.
        big = bytes(range(256)) * 4096  # 1 MiB, more than one chunk of any sane server
        big_digest = put_blob([big])
        self.assertEqual(big_digest, blake3(big))
        call = blobs().Read(S.blob.ReadBlobRequest(digest=big_digest), timeout=TIMEOUT)
        self.assertTrue(next(call).data)
        call.cancel()
        self.assertStillServing()

    def test_oversized_message(self):
        # Above the 4 MiB message limit: refused (grpc's RESOURCE_EXHAUSTED), and the daemon carries on.
        with self.assertRaises(grpc.RpcError) as cm:
            put_blob([b"\0" * (5 * 1024 * 1024)])
        self.assertEqual(cm.exception.code(), C.RESOURCE_EXHAUSTED, cm.exception.details())
        self.assertStillServing()


# --- grpc.health.v1 --------------------------------------------------------------------

class HealthTest(Case):

    def stub(self):
        return S.health_grpc.HealthStub(CHANNEL)

    def test_check(self):
        serving = S.health.HealthCheckResponse.SERVING
        for service in ["", "tvix.store.v1.PathInfoService", "tvix.castore.v1.BlobService", "tvix.castore.v1.DirectoryService"]:
            with self.subTest(service=service):
                res = self.stub().Check(S.health.HealthCheckRequest(service=service), timeout=TIMEOUT)
                self.assertEqual(res.status, serving)

    def test_check_unknown_service(self):
        self.assertStatus(C.NOT_FOUND, self.stub().Check, S.health.HealthCheckRequest(service="no.such.Service"),
                          timeout=TIMEOUT)

    def test_watch(self):
        call = self.stub().Watch(S.health.HealthCheckRequest(service=""), timeout=TIMEOUT)
        try:
            self.assertEqual(next(call).status, S.health.HealthCheckResponse.SERVING)
        finally:
            call.cancel()


# --- server reflection -----------------------------------------------------------------

class ReflectionSession:
    """One ServerReflectionInfo stream: ask() sends a request and waits for its answer."""

    def __init__(self, stub, request_cls):
        self.request_cls = request_cls
        self.queue = queue.Queue()

        def requests():
            while True:
                item = self.queue.get()
                if item is None:
                    return
                yield item

        self.responses = stub.ServerReflectionInfo(requests(), timeout=TIMEOUT)

    def ask(self, **kwargs):
        self.queue.put(self.request_cls(**kwargs))
        return next(self.responses)

    def close(self):
        self.queue.put(None)
        return list(self.responses)  # raises if the stream ends with an error


class ReflectionTest(Case):

    def v1(self):
        return ReflectionSession(S.reflection_grpc.ServerReflectionStub(CHANNEL), S.reflection.ServerReflectionRequest)

    def test_list_services(self):
        for name, session in [("v1", self.v1()), ("v1alpha", ReflectionSession(
                S.reflection_alpha_grpc.ServerReflectionStub(CHANNEL), S.reflection_alpha.ServerReflectionRequest))]:
            with self.subTest(name):
                res = session.ask(list_services="*")
                self.assertEqual(res.WhichOneof("message_response"), "list_services_response", str(res))
                names = {s.name for s in res.list_services_response.service}
                want = set(TVIX_SERVICES) | {HEALTH_SERVICE, REFLECTION_V1}
                self.assertTrue(want <= names, "missing: %s" % sorted(want - names))
                self.assertEqual(session.close(), [])

    def test_unknown_symbol(self):
        session = self.v1()
        res = session.ask(file_containing_symbol="no.such.Symbol")
        self.assertEqual(res.WhichOneof("message_response"), "error_response", str(res))
        self.assertEqual(res.error_response.error_code, C.NOT_FOUND.value[0])
        # The stream survives an error answer.
        res = session.ask(list_services="")
        self.assertEqual(res.WhichOneof("message_response"), "list_services_response")
        session.close()

    def test_symbols_and_files(self):
        from google.protobuf import descriptor_pb2

        session = self.v1()
        want_file = {
            "tvix.castore.v1.Directory": "tvix/castore/protos/castore.proto",
            "tvix.castore.v1.BlobChunk": "tvix/castore/protos/rpc_blobstore.proto",
            "tvix.store.v1.NARInfo.Signature": "tvix/store/protos/pathinfo.proto",  # nested message
            "tvix.store.v1.NARInfo.CA.Hash": "tvix/store/protos/pathinfo.proto",  # nested enum
            "tvix.store.v1.PathInfoService.CalculateNAR": "tvix/store/protos/rpc_pathinfo.proto",  # method
            "grpc.health.v1.HealthCheckResponse.ServingStatus": "grpc/health/v1/health.proto",
        }
        for symbol, filename in want_file.items():
            with self.subTest(symbol):
                res = session.ask(file_containing_symbol=symbol)
                self.assertEqual(res.WhichOneof("message_response"), "file_descriptor_response", str(res))
                names = [descriptor_pb2.FileDescriptorProto.FromString(b).name
                         for b in res.file_descriptor_response.file_descriptor_proto]
                self.assertEqual(names[0], filename)  # the requested file comes first
        for filename in ["tvix/store/protos/rpc_pathinfo.proto", "grpc/reflection/v1alpha/reflection.proto"]:
            with self.subTest(filename):
                res = session.ask(file_by_filename=filename)
                self.assertEqual(res.WhichOneof("message_response"), "file_descriptor_response", str(res))
                first = descriptor_pb2.FileDescriptorProto.FromString(res.file_descriptor_response.file_descriptor_proto[0])
                self.assertEqual(first.name, filename)
        with self.subTest("unknown file"):
            res = session.ask(file_by_filename="no/such.proto")
            self.assertEqual(res.WhichOneof("message_response"), "error_response", str(res))
            self.assertEqual(res.error_response.error_code, C.NOT_FOUND.value[0])
        self.assertEqual(session.close(), [])

    def test_full_resolve(self):
        from google.protobuf import descriptor_pb2, descriptor_pool

        session = self.v1()
        files = {}  # filename -> FileDescriptorProto

        def take(res, what):
            self.assertEqual(res.WhichOneof("message_response"), "file_descriptor_response", "%s: %s" % (what, res))
            got = []
            for raw in res.file_descriptor_response.file_descriptor_proto:
                fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
                files.setdefault(fd.name, fd)
                got.append(fd.name)
            return got

        for service in list(TVIX_SERVICES) + [HEALTH_SERVICE, REFLECTION_V1, REFLECTION_V1ALPHA]:
            got = take(session.ask(file_containing_symbol=service), service)
            self.assertTrue(got, service)
        # Fetch every dependency by the exact name the importing file uses, until closed.
        asked = set()
        while True:
            missing = sorted({dep for fd in files.values() for dep in fd.dependency} - set(files))
            if not missing:
                break
            for dep in missing:
                self.assertNotIn(dep, asked, "file_by_filename(%r) did not return that file" % dep)
                asked.add(dep)
                self.assertIn(dep, take(session.ask(file_by_filename=dep), dep))
        self.assertEqual(session.close(), [])

        pool = descriptor_pool.DescriptorPool()
        added = set()

        def add(name):
            if name in added:
                return
            for dep in files[name].dependency:
                add(dep)
            pool.Add(files[name])
            added.add(name)

        for name in sorted(files):
            add(name)

        for service, methods in TVIX_SERVICES.items():
            with self.subTest(service):
                sd = pool.FindServiceByName(service)
                self.assertEqual({m.name for m in sd.methods}, set(methods))
                local = S.castore.DESCRIPTOR.pool.FindServiceByName(service)
                for m in sd.methods:
                    self.assertEqual(m.input_type.full_name, local.methods_by_name[m.name].input_type.full_name)
                    self.assertEqual(m.output_type.full_name, local.methods_by_name[m.name].output_type.full_name)
                    for mt in (m.input_type, m.output_type):
                        self.assertIs(pool.FindMessageTypeByName(mt.full_name), mt)
                        self.assertMessageMatchesLocal(mt)
                # Streaming flags from the descriptor proto.
                fdp = descriptor_pb2.FileDescriptorProto()
                sd.file.CopyToProto(fdp)
                sdp = next(s for s in fdp.service if s.name == sd.name)
                self.assertEqual({m.name: (m.client_streaming, m.server_streaming) for m in sdp.method}, methods)

    def assertMessageMatchesLocal(self, desc, seen=None):
        """The reflected message has the same fields as the one compiled locally from protos/, recursively."""
        seen = set() if seen is None else seen
        if desc.full_name in seen:
            return
        seen.add(desc.full_name)
        local = S.castore.DESCRIPTOR.pool.FindMessageTypeByName(desc.full_name)
        shape = lambda d: sorted((f.name, f.number, f.type, f.label) for f in d.fields)  # noqa: E731
        self.assertEqual(shape(desc), shape(local), desc.full_name)
        self.assertEqual(sorted(o.name for o in desc.oneofs), sorted(o.name for o in local.oneofs), desc.full_name)
        for f in desc.fields:
            if f.message_type is not None:
                self.assertMessageMatchesLocal(f.message_type, seen)



# --- tokens (a daemon with --auth-file) ------------------------------------------------

class AuthTest(Case):
    """No token or a wrong one: UNAUTHENTICATED; a read token on a Put: PERMISSION_DENIED; health and reflection open."""

    def setUp(self):
        if not os.environ.get("TVIX_DAEMON_READ_TOKEN"):
            self.skipTest("set TVIX_DAEMON_TOKEN and TVIX_DAEMON_READ_TOKEN for a daemon with --auth-file")
        self.channels = []

    def tearDown(self):
        for c in self.channels:
            c.close()

    def channel(self, token):
        c = open_channel(token)
        self.channels.append(c)
        return c

    def test_without_a_valid_token(self):
        for token in [None, "wrong-token-0123456789abcdef"]:
            c = self.channel(token)
            stat = S.blob_grpc.BlobServiceStub(c).Stat
            self.assertStatus(C.UNAUTHENTICATED, stat, S.blob.StatBlobRequest(digest=HW_B3), timeout=TIMEOUT)
            put = S.blob_grpc.BlobServiceStub(c).Put
            self.assertStatus(C.UNAUTHENTICATED, put, iter([S.blob.BlobChunk(data=HW)]), timeout=TIMEOUT)
            listing = S.rpc_pathinfo_grpc.PathInfoServiceStub(c).List
            self.assertStatus(C.UNAUTHENTICATED, listing, S.rpc_pathinfo.ListPathInfoRequest(), timeout=TIMEOUT)
            health = S.health_grpc.HealthStub(c).Check(S.health.HealthCheckRequest(service=""), timeout=TIMEOUT)
            self.assertEqual(health.status, S.health.HealthCheckResponse.SERVING)
            reflection = S.reflection_grpc.ServerReflectionStub(c).ServerReflectionInfo
            answers = list(reflection(iter([S.reflection.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT))
            self.assertIn("tvix.castore.v1.BlobService", [s.name for s in answers[0].list_services_response.service])

    def test_a_read_token(self):
        c = self.channel(os.environ["TVIX_DAEMON_READ_TOKEN"])
        assert put_blob([HW]) == HW_B3  # with the write token of CHANNEL
        self.assertEqual(len(S.blob_grpc.BlobServiceStub(c).Stat(S.blob.StatBlobRequest(digest=HW_B3), timeout=TIMEOUT).chunks), 0)
        self.assertEqual([m.data for m in S.blob_grpc.BlobServiceStub(c).Read(S.blob.ReadBlobRequest(digest=HW_B3), timeout=TIMEOUT)], [HW])
        self.assertStatus(C.PERMISSION_DENIED, S.blob_grpc.BlobServiceStub(c).Put, iter([S.blob.BlobChunk(data=HW)]), timeout=TIMEOUT)
        self.assertStatus(C.PERMISSION_DENIED, S.directory_grpc.DirectoryServiceStub(c).Put, iter([empty_dir()]), timeout=TIMEOUT)
        self.assertStatus(C.PERMISSION_DENIED, S.rpc_pathinfo_grpc.PathInfoServiceStub(c).Put, hw_pathinfo(), timeout=TIMEOUT)


if __name__ == "__main__":
    unittest.main()
