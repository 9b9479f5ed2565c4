"""The JSON state behind the stand-in ``zfs`` (tests/standin/zfs.py), and a builder for tests.

A state file describes one host's pools::

    {"version": 1, "seed": 7, "guid_counter": 3, "txg": 12,
     "datasets": {"tank/a": {"type": "filesystem", "guid": 1, "createtxg": 2, "creation": 0,
                             "resume_token": null, "partial": null,
                             "snapshots": [{"name": "s1", "guid": 2, "createtxg": 3, "creation": 0,
                                            "size": 1024, "written": 1024, "referenced": 1024,
                                            "holds": {"keep": 0}}],
                             "bookmarks": [{"name": "b1", "guid": 2, "createtxg": 3, "creation": 0}]}},
     "inject": [{"command": "destroy", "match": "tank/a@", "stderr": "...", "returncode": 1,
                 "remaining": 1}]}

``inject`` makes a matching invocation fail (``match`` is a substring of the joined argv,
``remaining`` counts down, ``null`` = forever); ``sleep`` (``{"list": 2.0}``) delays a command;
``stall_send`` (``{"after": 65536, "seconds": 30}``) makes a non-dry ``zfs send`` stop writing
after that many bytes and sleep (a hung link: the stall timeout's test). A ``zfs recv`` of a
stream sent with -L or -w marks its dataset ``large_blocks``; a plain incremental onto it then
fails as OpenZFS fails it ("incremental send stream requires -L"). ``recv -o p=v`` sets user
properties (``properties``), which ``zfs get`` reports with source ``local``.
Every invocation is appended as a JSON argv line to ``<state>.log``; with ZFS_STANDIN_TAG set in
its environment also as ``{"tag": ..., "argv": [...]}`` to ``<state>.tags.log``.

Usage from a test::

    st = StandinState(seed=1, now=1_700_000_000)
    st.filesystem("tank/data")
    st.snapshot("tank/data", "zrepl_1", size=4096)
    path = st.save(tmp_path / "nas.json")
    host = {"connection": "local", "zfs_command": zfs_command(path)}
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STANDIN_ZFS = str(Path(__file__).resolve().with_name("run.py"))  # runs zfs.py (cached bytecode)
DEFAULT_SIZE = 1024


def zfs_command(state_path: str | os.PathLike[str], now: int | None = None) -> list[str]:
    """The ``zfs_command`` of a host whose pools live in ``state_path``. With ``now`` the
    stand-in's clock is fixed through ``env`` (SSH sessions do not pass our environment)."""
    # -S: the stand-in needs only the standard library, and skipping site-packages' import
    # (the venv's .pth files) cuts about a quarter of each call's start-up: tests make
    # thousands of them.
    command = [sys.executable, "-S", STANDIN_ZFS, "--state", str(Path(state_path).resolve())]
    return ["env", f"ZFS_STANDIN_NOW={now}", *command] if now is not None else command


def empty_state(seed: int | None = None, txg: int = 1) -> dict[str, Any]:
    return {"version": 1, "seed": seed, "guid_counter": 0, "txg": txg, "datasets": {}, "inject": []}


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def save(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Atomic replace, so a concurrent reader never sees half a file."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """Serialise read-modify-write of one state file between stand-in processes."""
    with open(f"{path}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def new_guid(state: dict[str, Any]) -> int:
    """A random non-zero 64-bit GUID; deterministic when the state has a ``seed``."""
    state["guid_counter"] = state.get("guid_counter", 0) + 1
    seed = state.get("seed")
    rng = random.Random(f"{seed}:{state['guid_counter']}") if seed is not None else random.SystemRandom()
    while True:
        guid = rng.getrandbits(64)
        if guid:
            return guid


def next_txg(state: dict[str, Any]) -> int:
    state["txg"] = state.get("txg", 1) + 1
    txg: int = state["txg"]
    return txg


def now() -> int:
    env = os.environ.get("ZFS_STANDIN_NOW")
    return int(env) if env else int(time.time())


class StandinState:
    """Builds a state file from Python; every method returns ``self``-independent facts."""

    def __init__(self, seed: int | None = 1, now: int | None = None,
                 path: str | os.PathLike[str] | None = None) -> None:
        self.data = empty_state(seed)
        self.now = now if now is not None else int(time.time())
        self.path = Path(path) if path is not None else None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> StandinState:
        obj = cls(path=path)
        obj.data = load(path)
        return obj

    @property
    def zfs_command(self) -> list[str]:
        """The host's ``zfs_command`` (needs ``path``)."""
        assert self.path is not None, "StandinState needs a path for zfs_command"
        return zfs_command(self.path)

    def reload(self) -> StandinState:
        """Re-read the file after the stand-in changed it; returns self."""
        assert self.path is not None
        self.data = load(self.path)
        return self

    def snapshot_names(self, dataset: str) -> list[str]:
        return [s["name"] for s in self.datasets[dataset]["snapshots"]]

    @property
    def datasets(self) -> dict[str, Any]:
        result: dict[str, Any] = self.data["datasets"]
        return result

    def filesystem(self, name: str, *, kind: str = "filesystem", creation: int | None = None,
                   parents: bool = True, encrypted: bool = False, key_loaded: bool = True) -> dict[str, Any]:
        """Add a filesystem (or volume) and, with ``parents``, every missing ancestor. With
        ``encrypted`` it is an encryption root (aes-256-gcm); a child of an encrypted dataset
        inherits its encryption."""
        parent = name.rsplit("/", 1)[0] if "/" in name else None
        if parents and parent is not None and parent not in self.datasets:
            self.filesystem(parent, creation=creation)
        if name in self.datasets:
            ds: dict[str, Any] = self.datasets[name]
            return ds
        ds = {"type": kind, "guid": new_guid(self.data), "createtxg": next_txg(self.data),
              "creation": self.now if creation is None else creation,
              "resume_token": None, "partial": None, "snapshots": [], "bookmarks": []}
        above = self.datasets.get(parent) if parent is not None else None
        if encrypted:
            ds.update(encryption="aes-256-gcm", encryptionroot=name,
                      keystatus="available" if key_loaded else "unavailable")
        elif above is not None and above.get("encryption", "off") != "off":
            ds.update({k: above[k] for k in ("encryption", "encryptionroot", "keystatus")})
        self.datasets[name] = ds
        return ds

    def snapshot(self, dataset: str, name: str, *, creation: int | None = None, size: int = DEFAULT_SIZE,
                 holds: tuple[str, ...] = (), guid: int | None = None) -> dict[str, Any]:
        ds = self.filesystem(dataset)
        referenced = sum(s["size"] for s in ds["snapshots"]) + size
        snap = {"name": name, "guid": guid if guid is not None else new_guid(self.data),
                "createtxg": next_txg(self.data), "creation": self.now if creation is None else creation,
                "size": size, "written": size, "referenced": referenced,
                "holds": {tag: self.now for tag in holds}}
        ds["snapshots"].append(snap)
        return snap

    def bookmark(self, dataset: str, snapshot: str, name: str) -> dict[str, Any]:
        ds = self.datasets[dataset]
        snap = next(s for s in ds["snapshots"] if s["name"] == snapshot)
        bm = {"name": name, "guid": snap["guid"], "createtxg": snap["createtxg"],
              "creation": snap["creation"], "referenced": snap.get("referenced", 0)}
        ds["bookmarks"].append(bm)
        return bm

    def write(self, dataset: str) -> None:
        """Simulate data written to ``dataset`` since its newest snapshot: an incremental
        receive onto it then fails with "has been modified since most recent snapshot"."""
        self.datasets[dataset]["modified"] = True

    def inject(self, command: str, stderr: str, *, match: str = "", returncode: int = 1,
               remaining: int | None = None) -> None:
        """Make the next matching ``zfs <command>`` invocation(s) fail with ``stderr``."""
        self.data["inject"].append({"command": command, "match": match, "stderr": stderr,
                                    "returncode": returncode, "remaining": remaining})

    def sleep(self, command: str, seconds: float) -> None:
        self.data.setdefault("sleep", {})[command] = seconds

    def stall_send(self, after: int, seconds: float) -> None:
        """Every later ``zfs send`` stops writing after ``after`` bytes, for ``seconds``."""
        self.data["stall_send"] = {"after": after, "seconds": seconds}

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        if path is not None:
            self.path = Path(path)
        assert self.path is not None, "StandinState.save needs a path"
        save(self.path, self.data)
        return self.path

    def log(self) -> list[list[str]]:
        assert self.path is not None
        return read_log(self.path)


def read_log(state_path: str | os.PathLike[str]) -> list[list[str]]:
    """Every argv the stand-in was invoked with for this state file, oldest first."""
    try:
        with open(f"{state_path}.log", encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []


def read_tagged_log(state_path: str | os.PathLike[str]) -> list[tuple[str, list[str]]]:
    """(ZFS_STANDIN_TAG, argv) of every invocation made with a tag, oldest first."""
    try:
        with open(f"{state_path}.tags.log", encoding="utf-8") as fh:
            return [(entry["tag"], entry["argv"]) for entry in map(json.loads, fh) if entry]
    except FileNotFoundError:
        return []
