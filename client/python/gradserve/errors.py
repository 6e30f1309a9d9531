"""Typed exceptions, one per gRPC status code, carrying the server's message.

Every error a call raises is a gradserve.Error: `.code` is the grpc.StatusCode,
`.details` the server's message (which names the node, tensor or id at fault),
`str(error)` is "CODE: message". Catch a subclass for one code:

    try:
        client.compute(graph, feeds)
    except gradserve.InvalidArgument as e:
        print(e.details)   # e.g. node 'fc1' (Linear): input 'weight' ... got [128, 700]
"""

from __future__ import annotations

from typing import Dict, Optional, Type

import grpc


class Error(Exception):
    """A failed gradserve call. `code`: grpc.StatusCode; `details`: the message."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, details: str, code: Optional[grpc.StatusCode] = None):
        if code is not None:
            self.code = code
        self.details = details
        super().__init__(f"{self.code.name}: {details}")


class Cancelled(Error):
    code = grpc.StatusCode.CANCELLED


class Unknown(Error):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(Error):
    """Malformed graph, tensors or attributes; the message names the culprit."""
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(Error):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(Error):
    """Unknown, closed or expired session, activation or shared-memory region."""
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(Error):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(Error):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(Error):
    """Over a server limit (message size, elements, memory, sessions, queue)."""
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(Error):
    """E.g. TrainStep on a session without an optimizer."""
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(Error):
    code = grpc.StatusCode.ABORTED


class OutOfRange(Error):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(Error):
    """An unknown op, or an ONNX op/attribute the server cannot run."""
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(Error):
    """A bug in gradserve: please report it."""
    code = grpc.StatusCode.INTERNAL


class Unavailable(Error):
    """The server cannot be reached (retried with backoff first)."""
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(Error):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(Error):
    """No token, another scheme, or a token the server does not know."""
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: Dict[grpc.StatusCode, Type[Error]] = {
    cls.code: cls for cls in (
        Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists,
        PermissionDenied, ResourceExhausted, FailedPrecondition, Aborted, OutOfRange,
        Unimplemented, Internal, Unavailable, DataLoss, Unauthenticated)}


def from_code(code: grpc.StatusCode, details: str) -> Error:
    """The exception for a status code and message."""
    return _BY_CODE.get(code, Error)(details, code)


def from_rpc_error(error: grpc.RpcError) -> Error:
    """The typed exception for a grpc.RpcError raised by a call."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return from_code(code, details or "")


def from_numeric(code: int, details: str) -> Error:
    """The exception for a numeric status code (ComputeStream's in-band errors)."""
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return from_code(status, details)
    return Error(details, grpc.StatusCode.UNKNOWN)
