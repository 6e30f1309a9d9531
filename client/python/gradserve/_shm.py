"""Same-host shared memory, used automatically (see the README's "Same-host
shared memory"): a client on the server's host whose server runs with
--allow_shared_memory creates one sparse file in /dev/shm, registers it as a
region on its connection, and sends large float and int feeds as references
into it (one memcpy here, one pread there) instead of bytes in the message.
Anything that goes wrong (another host, the feature off, /dev/shm missing or
full, the region dropped with a reconnect) falls back to the plain path."""

from __future__ import annotations

import bisect
import mmap
import os
import secrets
import threading
from typing import List, Optional, Tuple

import numpy as np

from gradserve import _tensors
from gradserve.v1 import tensor_pb2

ALIGN = 64


def same_host(address: str) -> bool:
    """Whether `address` (a gRPC target) names this host."""
    if address.startswith("unix:") or address.startswith("unix-abstract:"):
        return True
    host = address.rsplit(":", 1)[0] if not address.startswith("[") else address[1:].split("]")[0]
    host = host.replace("ipv4:", "").replace("dns:///", "").replace("dns:", "")
    return host in ("localhost", "127.0.0.1", "::1", "0.0.0.0", "")


class Region:
    """A file in `directory` mapped here and registered as `name` on a client's
    connection; alloc/free hand out 64-byte aligned windows of it, so that
    requests in flight at once never share bytes."""

    def __init__(self, nbytes: int, directory: str = "/dev/shm"):
        self.name = "gradserve-py-" + secrets.token_hex(6)
        self.key = self.name
        self.path = os.path.join(directory, self.key)
        self.nbytes = nbytes
        self._lock = threading.Lock()
        self._used: List[Tuple[int, int]] = []  # sorted (offset, end)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, nbytes)  # sparse: pages cost only once written
            self.map = mmap.mmap(fd, nbytes)
        except BaseException:
            os.close(fd)
            os.unlink(self.path)
            raise
        os.close(fd)

    def alloc(self, nbytes: int) -> Optional[int]:
        """The offset of `nbytes` free bytes, or None when they do not fit."""
        size = -(-max(nbytes, 1) // ALIGN) * ALIGN
        with self._lock:
            start = 0
            for i, (offset, end) in enumerate(self._used):
                if offset - start >= size:
                    self._used.insert(i, (start, start + size))
                    return start
                start = end
            if self.nbytes - start >= size:
                self._used.append((start, start + size))
                return start
        return None

    def free(self, offset: int) -> None:
        with self._lock:
            i = bisect.bisect_left(self._used, (offset, -1))
            if i < len(self._used) and self._used[i][0] == offset:
                del self._used[i]

    def put(self, array: np.ndarray) -> Optional[tensor_pb2.Tensor]:
        """Copies a wire array in; a Tensor referencing it, or None when full."""
        offset = self.alloc(array.nbytes)
        if offset is None:
            return None
        view = np.ndarray(array.shape, dtype=array.dtype, buffer=self.map, offset=offset)
        view[...] = array
        return tensor_pb2.Tensor(
            dtype=_tensors._WIRE[array.dtype], shape=array.shape,
            shared_memory=tensor_pb2.SharedMemoryRef(region=self.name, offset=offset,
                                                     byte_size=array.nbytes))

    def close(self) -> None:
        try:
            self.map.close()
        finally:
            if os.path.lexists(self.path):
                os.unlink(self.path)
