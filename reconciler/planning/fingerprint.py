"""A hash of the facts a plan depends on, so ``apply --plan FILE`` can refuse a stale plan.

Covered: the configuration, and for every selected source dataset and each of its
selected target datasets: name, kind, GUID, createtxg, resume token, encryption (cipher,
encryption root, key status), every snapshot
(name, GUID, createtxg, creation, userrefs, hold tags) and bookmark (name, GUID,
createtxg), where it was read the replica's large-blocks mark, the existence and kind of
the target's parents (placeholders, a volume in the way, an encrypted one whose key is not
loaded), and which involved hosts are
unavailable. Size fields (written, referenced)
are left out: they only feed estimates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable

from reconciler.config.models import Config
from reconciler.domain.names import ancestors
from reconciler.domain.observed import Dataset, ObservedState
from reconciler.planning.selection import Selected, select


def facts_fingerprint(config: Config, observed: ObservedState, *, hosts: Collection[str] | None = None,
                      filesystems: Collection[str] | None = None, as_host: str | None = None) -> str:
    """``sha256:<hex>`` of the config and the observed facts a plan for this selection uses."""
    selection = select(config, observed, hosts=hosts, filesystems=filesystems, as_host=as_host)
    return fingerprint_selection(config.model_dump_json(), observed, selection.selected,
                                 selection.unavailable_hosts)


def fingerprint_selection(config_json: str, observed: ObservedState, selected: Iterable[Selected],
                          unavailable_sources: Iterable[str]) -> str:
    """The fingerprint for an already computed selection (make_plan avoids selecting twice);
    ``config_json`` is the configuration's ``model_dump_json()``."""
    digest = hashlib.sha256()
    digest.update(config_json.encode())
    involved: set[str] = set(unavailable_sources)
    for item in selected:
        digest.update(b"\x01source\0" + item.host.encode() + b"\0")
        _hash_dataset(digest, item.dataset)
        if not item.source_side:
            digest.update(b"\x01pairs-only\0")
        for target in item.targets:
            name = target.target_dataset(item.name)
            involved.add(target.host)
            digest.update(f"\x01target\0{target.host}\0{name}\0".encode())
            digest.update(_parents_code(observed, target.host, name).encode())
            ds = observed.dataset(target.host, name)
            if ds is None:
                digest.update(b"\x02missing")
            else:
                _hash_dataset(digest, ds)
    for host in sorted(involved):
        problem = observed.unavailable.get(host)
        if problem is not None or host not in observed.hosts:
            digest.update(f"\x03{host}\0{problem.code if problem else 'no facts'}".encode())
    return "sha256:" + digest.hexdigest()


def _parents_code(observed: ObservedState, host: str, name: str) -> str:
    """Per ancestor of a target: 0 missing, 1 exists (not listed), f/v listed filesystem/volume
    (F/V: encrypted, its key not loaded)."""
    codes = []
    for ancestor in ancestors(name):
        ds = observed.dataset(host, ancestor)
        code = ds.kind[0] if ds is not None else "1" if observed.exists(host, ancestor) else "0"
        codes.append(code.upper() if ds is not None and ds.encrypted and not ds.key_loaded else code)
    return "".join(codes)


def _hash_dataset(digest: hashlib._Hash, ds: Dataset) -> None:
    # The large-blocks mark only when set: a plan over facts without it keeps its fingerprint.
    mark = "\0large_blocks" if ds.large_blocks else ""
    head = f"{ds.name}\0{ds.kind}\0{ds.guid}\0{ds.createtxg}\0{ds.resume_token or ''}{mark}\n"
    if ds.encrypted:  # unencrypted datasets hash as before
        head += f"\x04{ds.encryption}\0{ds.encryption_root}\0{ds.key_status}\n"
    snaps = "\n".join([f"@{s.name}\0{s.guid}\0{s.createtxg}\0{s.creation}\0{s.userrefs}\0{','.join(s.holds)}"
                       for s in ds.snapshots])
    marks = "\n".join([f"#{b.name}\0{b.guid}\0{b.createtxg}" for b in ds.bookmarks])
    digest.update((head + snaps + "\n" + marks + "\n").encode())
