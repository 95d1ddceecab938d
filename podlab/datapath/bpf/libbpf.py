"""Debian's libbpf1 through ctypes: the calls podlab needs, each raising BpfError on failure.

libbpf returns -errno (or NULL with errno set); every wrapper turns that into an exception
that names the call, and load failures carry libbpf's own log (the verifier's verdict).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from podlab.datapath.model import DatapathError

BPF_TC_INGRESS = 1
BPF_TC_EGRESS = 2
BPF_TC_F_REPLACE = 1
# enum bpf_attach_type
BPF_CGROUP_INET4_CONNECT = 10
BPF_CGROUP_UDP4_SENDMSG = 14
BPF_CGROUP_UDP4_RECVMSG = 19
BPF_MAP_TYPE_LPM_TRIE = 11
BPF_F_NO_PREALLOC = 1


class BpfError(DatapathError):
    """A libbpf or bpf(2) call failed; `errno` is the kernel's answer."""

    def __init__(self, what: str, code: int, log: str = "") -> None:
        self.errno = code
        detail = f"\n{log.strip()[-4000:]}" if log.strip() else ""
        super().__init__(f"{what}: {os.strerror(code)}{detail}")


class ObjectOpenOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("object_name", ctypes.c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", ctypes.c_char_p),
        ("_attach_prog_fd", ctypes.c_uint32),
        ("kconfig", ctypes.c_char_p),
        ("btf_custom_path", ctypes.c_char_p),
        ("kernel_log_buf", ctypes.c_char_p),
        ("kernel_log_size", ctypes.c_size_t),
        ("kernel_log_level", ctypes.c_uint32),
    ]


class TcHook(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("ifindex", ctypes.c_int),
        ("attach_point", ctypes.c_int),
        ("parent", ctypes.c_uint32),
    ]


class TcOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("prog_fd", ctypes.c_int),
        ("flags", ctypes.c_uint32),
        ("prog_id", ctypes.c_uint32),
        ("handle", ctypes.c_uint32),
        ("priority", ctypes.c_uint32),
    ]


class MapCreateOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("btf_fd", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
        ("numa_node", ctypes.c_uint32),
        ("map_ifindex", ctypes.c_uint32),
    ]


class ProgInfo(ctypes.Structure):
    """The head of struct bpf_prog_info: the kernel fills no more than the length given."""

    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32)]


class MapInfo(ctypes.Structure):
    """The head of struct bpf_map_info."""

    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("key_size", ctypes.c_uint32), ("value_size", ctypes.c_uint32),
                ("max_entries", ctypes.c_uint32)]


_PRINT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
# ring_buffer_sample_fn: (ctx, data, size) -> 0 to go on
RING_SAMPLE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_p = ctypes.c_void_p


@functools.cache
def lib() -> ctypes.CDLL:
    """libbpf.so.1, loaded on first use (importing podlab never needs it) and told to
    log through `collecting_log`."""
    try:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    except OSError as e:
        raise BpfError("libbpf.so.1 (Debian's libbpf1)", errno.ENOENT) from e
    sigs: dict[str, tuple[object, list[object]]] = {
        "libbpf_set_print": (_p, [_PRINT]),
        "bpf_object__open_file": (_p, [ctypes.c_char_p, ctypes.POINTER(ObjectOpenOpts)]),
        "bpf_object__load": (ctypes.c_int, [_p]),
        "bpf_object__close": (None, [_p]),
        "bpf_object__find_map_by_name": (_p, [_p, ctypes.c_char_p]),
        "bpf_object__find_program_by_name": (_p, [_p, ctypes.c_char_p]),
        "bpf_map__set_max_entries": (ctypes.c_int, [_p, ctypes.c_uint32]),
        "bpf_program__fd": (ctypes.c_int, [_p]),
        "bpf_obj_pin": (ctypes.c_int, [ctypes.c_int, ctypes.c_char_p]),
        "bpf_obj_get": (ctypes.c_int, [ctypes.c_char_p]),
        "bpf_map_create": (ctypes.c_int, [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32,
                                          ctypes.c_uint32, ctypes.c_uint32,
                                          ctypes.POINTER(MapCreateOpts)]),
        "bpf_map_get_fd_by_id": (ctypes.c_int, [ctypes.c_uint32]),
        "ring_buffer__new": (_p, [ctypes.c_int, RING_SAMPLE, _p, _p]),
        "ring_buffer__poll": (ctypes.c_int, [_p, ctypes.c_int]),
        "ring_buffer__free": (None, [_p]),
        "bpf_link_create": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, ctypes.c_int, _p]),
        "bpf_obj_get_info_by_fd": (ctypes.c_int, [ctypes.c_int, _p,
                                                  ctypes.POINTER(ctypes.c_uint32)]),
        "bpf_map_update_elem": (ctypes.c_int, [ctypes.c_int, _p, _p, ctypes.c_uint64]),
        "bpf_map_lookup_elem": (ctypes.c_int, [ctypes.c_int, _p, _p]),
        "bpf_map_delete_elem": (ctypes.c_int, [ctypes.c_int, _p]),
        "bpf_map_update_batch": (ctypes.c_int, [ctypes.c_int, _p, _p,
                                                ctypes.POINTER(ctypes.c_uint32), _p]),
        "bpf_map_delete_batch": (ctypes.c_int, [ctypes.c_int, _p,
                                                ctypes.POINTER(ctypes.c_uint32), _p]),
        "bpf_map_get_next_key": (ctypes.c_int, [ctypes.c_int, _p, _p]),
        "bpf_tc_hook_create": (ctypes.c_int, [ctypes.POINTER(TcHook)]),
        "bpf_tc_attach": (ctypes.c_int, [ctypes.POINTER(TcHook), ctypes.POINTER(TcOpts)]),
        "bpf_tc_detach": (ctypes.c_int, [ctypes.POINTER(TcHook), ctypes.POINTER(TcOpts)]),
        "bpf_tc_query": (ctypes.c_int, [ctypes.POINTER(TcHook), ctypes.POINTER(TcOpts)]),
        "libbpf_num_possible_cpus": (ctypes.c_int, []),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    lib.libbpf_set_print(_PRINTER)
    return lib


_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_LIBC.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]

# libbpf logs through one process-wide callback; a load collects what it says meanwhile.
_log_lock = threading.Lock()
_log: list[str] = []


def _print(level: int, fmt: bytes | None, args: int | None) -> int:
    buf = ctypes.create_string_buffer(1024)
    _LIBC.vsnprintf(buf, len(buf), fmt, args)
    _log.append(buf.value.decode(errors="replace"))
    return 0


_PRINTER = _PRINT(_print)  # kept referenced: libbpf holds only the C pointer


@contextmanager
def collecting_log() -> Iterator[list[str]]:
    """libbpf's messages during the block (kept only for error reports)."""
    with _log_lock:
        _log.clear()
        try:
            yield _log
        finally:
            _log.clear()


def check(what: str, ret: int) -> int:
    """`ret` if it is not a negative errno, else BpfError."""
    if ret < 0:
        raise BpfError(what, -ret if ret != -1 else (ctypes.get_errno() or errno.EINVAL))
    return ret


def check_ptr(what: str, ptr: int | None) -> int:
    """libbpf pointers: NULL with errno, or an error encoded in the pointer (libbpf 1.x
    returns NULL, but be exact: values in the last page are -errno)."""
    if not ptr:
        raise BpfError(what, ctypes.get_errno() or errno.EINVAL)
    if ptr >= 2**64 - 4095:
        raise BpfError(what, 2**64 - ptr)
    return ptr


def obj_get(path: str) -> int:
    """An fd for a pinned object (map, program or link)."""
    return check(f"bpf_obj_get({path})", lib().bpf_obj_get(path.encode()))


def _info(fd: int, info: ctypes.Structure) -> None:
    size = ctypes.c_uint32(ctypes.sizeof(info))
    check("bpf_obj_get_info_by_fd", lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info),
                                                               ctypes.byref(size)))


def obj_pin(fd: int, path: str) -> None:
    check(f"bpf_obj_pin({path})", lib().bpf_obj_pin(fd, path.encode()))


def prog_id(fd: int) -> int:
    info = ProgInfo()
    _info(fd, info)
    return int(info.id)


def map_info(fd: int) -> MapInfo:
    info = MapInfo()
    _info(fd, info)
    return info


def possible_cpus() -> int:
    return check("libbpf_num_possible_cpus", lib().libbpf_num_possible_cpus())
