"""Typed access to one BPF map by fd: lookup, update, delete, iterate, per-CPU sums."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from podlab.datapath.bpf import libbpf
from podlab.datapath.bpf.libbpf import BpfError

K = TypeVar("K", bound=ctypes.Structure | ctypes.c_uint32 | ctypes.c_uint64)
V = TypeVar("V", bound=ctypes.Structure | ctypes.c_uint8 | ctypes.c_uint32 | ctypes.c_uint64)

BPF_ANY = 0


def pinned_fd(pin_dir: Path | str, name: str) -> int:
    """An fd of the map `name` pinned under `pin_dir` (maps/<name>, as Programs loads them)."""
    return libbpf.obj_get(str(Path(pin_dir) / "maps" / name))


class MapFull(BpfError):
    """A write would exceed a map's capacity; nothing of the write is left in the maps."""

    def __init__(self, name: str, capacity: int, needed: int) -> None:
        self.map_name, self.capacity, self.needed = name, capacity, needed
        super().__init__(f"map {name} full: {needed} entries needed, capacity {capacity}",
                         errno.E2BIG)


class _MapFd:
    """An owned fd of a map, and the capacity the kernel gave it."""

    def __init__(self, name: str, fd: int) -> None:
        self.name, self.fd = name, fd
        self.info = libbpf.map_info(fd)
        self.capacity = int(self.info.max_entries)

    def close(self) -> None:
        """Idempotent; the map lives on while pinned."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Map(_MapFd, Generic[K, V]):
    """One pinned map, keys and values as ctypes; its layout is checked on open."""

    def __init__(self, name: str, fd: int, key: type[K], value: type[V]) -> None:
        super().__init__(name, fd)
        sizes = (self.info.key_size, self.info.value_size)
        if sizes != (ctypes.sizeof(key), ctypes.sizeof(value)):
            self.close()
            raise BpfError(f"map {name}: layout {sizes[0]}/{sizes[1]} bytes, podlab expects "
                           f"{ctypes.sizeof(key)}/{ctypes.sizeof(value)}", errno.EINVAL)
        self.key, self.value = key, value

    @classmethod
    def pinned(cls, pin_dir: Path | str, name: str, key: type[K], value: type[V]) -> Map[K, V]:
        return cls(name, pinned_fd(pin_dir, name), key, value)

    def get(self, key: K) -> V | None:
        value = self.value()
        ret = libbpf.lib().bpf_map_lookup_elem(self.fd, ctypes.byref(key), ctypes.byref(value))
        if ret == -errno.ENOENT:
            return None
        libbpf.check(f"lookup in {self.name}", ret)
        return value

    def put(self, key: K, value: V, flags: int = BPF_ANY) -> None:
        ret = libbpf.lib().bpf_map_update_elem(self.fd, ctypes.byref(key), ctypes.byref(value),
                                               flags)
        if ret == -errno.E2BIG:
            raise MapFull(self.name, self.capacity, self.capacity + 1)
        libbpf.check(f"update of {self.name}", ret)

    def put_batch(self, keys: Sequence[K], values: Sequence[V]) -> None:
        """Several updates in one call: the kernel's wait for running programs after an
        update of a map of maps (a grace period, ~10 ms) is then once, not once per key."""
        if not keys:
            return
        count = ctypes.c_uint32(len(keys))
        ret = libbpf.lib().bpf_map_update_batch(self.fd, _packed(keys), _packed(values),
                                                ctypes.byref(count), None)
        if ret == -errno.E2BIG:
            raise MapFull(self.name, self.capacity, self.capacity + 1)
        libbpf.check(f"batch update of {self.name}", ret)

    def delete_batch(self, keys: Sequence[K]) -> None:
        """Several deletions in one call (see put_batch); every key must be there."""
        if not keys:
            return
        count = ctypes.c_uint32(len(keys))
        libbpf.check(f"batch delete from {self.name}", libbpf.lib().bpf_map_delete_batch(
            self.fd, _packed(keys), ctypes.byref(count), None))

    def delete(self, key: K) -> bool:
        ret = libbpf.lib().bpf_map_delete_elem(self.fd, ctypes.byref(key))
        if ret == -errno.ENOENT:
            return False
        libbpf.check(f"delete from {self.name}", ret)
        return True

    def keys(self) -> Iterator[K]:
        """Every key; entries deleted meanwhile may be skipped, as the kernel iterates."""
        prev: K | None = None
        while True:
            nxt = self.key()
            ret = libbpf.lib().bpf_map_get_next_key(
                self.fd, None if prev is None else ctypes.byref(prev), ctypes.byref(nxt))
            if ret == -errno.ENOENT:
                return
            libbpf.check(f"iteration of {self.name}", ret)
            yield nxt
            prev = nxt

    def items(self) -> Iterator[tuple[K, V]]:
        for key in list(self.keys()):
            value = self.get(key)
            if value is not None:
                yield key, value


def _packed(items: Sequence[ctypes.Structure | ctypes._SimpleCData[int]]
            ) -> ctypes.Array[ctypes.c_char]:
    """The C array of `items`, as the batch calls take it."""
    return ctypes.create_string_buffer(b"".join(bytes(item) for item in items))


class PerCpuArray(_MapFd):
    """A PERCPU_ARRAY of u64: one value per possible CPU, summed on read."""

    def __init__(self, name: str, fd: int) -> None:
        super().__init__(name, fd)
        self.cpus = libbpf.possible_cpus()

    def sum(self, index: int) -> int:
        values = (ctypes.c_uint64 * self.cpus)()
        key = ctypes.c_uint32(index)
        libbpf.check(f"lookup in {self.name}",
                     libbpf.lib().bpf_map_lookup_elem(self.fd, ctypes.byref(key), values))
        return sum(values)
