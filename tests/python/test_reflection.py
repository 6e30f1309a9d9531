"""gRPC server reflection, v1 and v1alpha, walked as a generic client
(grpcurl, Postman) does: list the services, fetch each one's file by
symbol, build a descriptor pool from what came back alone, resolve every
method's input and output types, and call grpc.health.v1.Health/Check with
a request message built from the fetched descriptors. The two versions'
messages are the same on the wire; the client messages are v1's, from
<build>/python/reflection_v1.desc."""

import os

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

import gs

VERSIONS = ["grpc.reflection.v1", "grpc.reflection.v1alpha"]
SERVICES = {"gradserve.v1.GradientService", "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"}


def classes(pool, *names):
    factory = message_factory.MessageFactory(pool)
    return [factory.GetPrototype(pool.FindMessageTypeByName(n)) for n in names]


@pytest.fixture(scope="module")
def messages():
    with open(os.path.join(gs.BUILD_DIR, "python", "reflection_v1.desc"), "rb") as f:
        files = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return classes(pool, "grpc.reflection.v1.ServerReflectionRequest",
                   "grpc.reflection.v1.ServerReflectionResponse")


def add_in_order(pool, files, added):
    """Adds `files` to `pool`, each after the files it imports."""
    waiting = [f for f in files if f.name not in added]
    while waiting:
        ready = [f for f in waiting if set(f.dependency) <= added]
        assert ready, f"imports not sent: {[set(f.dependency) - added for f in waiting]}"
        for file in ready:
            pool.Add(file)
            added.add(file.name)
        waiting = [f for f in waiting if f.name not in added]


class Reflection:
    """One ServerReflectionInfo stream per ask() (each answer then carries
    every file the asked one needs)."""

    def __init__(self, channel, version, messages):
        self.request, self.response = messages
        self.info = channel.stream_stream(
            f"/{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.response.FromString)

    def ask(self, **fields):
        replies = list(self.info(iter([self.request(**fields)]), timeout=30))
        assert len(replies) == 1
        return replies[0]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_listed_service_is_described_and_callable(server, messages, version):
    reflection = Reflection(server.channel, version, messages)
    listed = {s.name for s in reflection.ask(list_services="").list_services_response.service}
    assert listed == SERVICES
    pool = descriptor_pool.DescriptorPool()
    added = set()
    for service in sorted(listed):
        reply = reflection.ask(file_containing_symbol=service)
        assert reply.WhichOneof("message_response") == "file_descriptor_response", reply
        files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                 for b in reply.file_descriptor_response.file_descriptor_proto]
        add_in_order(pool, files, added)
        descriptor = pool.FindServiceByName(service)
        assert descriptor.methods, service
        for method in descriptor.methods:
            for message in (method.input_type, method.output_type):
                assert pool.FindMessageTypeByName(message.full_name) is message
    assert {m.name for m in pool.FindServiceByName("gradserve.v1.GradientService").methods} >= {
        "Compute", "ComputeStream", "Forward", "Backward", "CreateSession", "TrainStep"}

    # Health/Check through messages made from the reflected descriptors alone.
    check = pool.FindServiceByName("grpc.health.v1.Health").methods_by_name["Check"]
    request, response = classes(pool, check.input_type.full_name, check.output_type.full_name)
    call = server.channel.unary_unary("/grpc.health.v1.Health/Check",
                                      request_serializer=request.SerializeToString,
                                      response_deserializer=response.FromString)
    for name in ("", "gradserve.v1.GradientService"):
        reply = call(request(service=name), timeout=10)
        assert check.output_type.fields_by_name["status"].enum_type.values_by_number[
            reply.status].name == "SERVING"


@pytest.mark.parametrize("version", VERSIONS)
def test_files_by_name_and_unknown_symbols(server, messages, version):
    reflection = Reflection(server.channel, version, messages)
    reply = reflection.ask(file_containing_symbol="gradserve.v1.ComputeRequest")
    names = [descriptor_pb2.FileDescriptorProto.FromString(b).name
             for b in reply.file_descriptor_response.file_descriptor_proto]
    assert names[0] == "gradserve/v1/gradient_service.proto"
    assert "gradserve/v1/tensor.proto" in names  # its imports come with it
    by_name = reflection.ask(file_by_filename="gradserve/v1/tensor.proto")
    assert descriptor_pb2.FileDescriptorProto.FromString(
        by_name.file_descriptor_response.file_descriptor_proto[0]).package == "gradserve.v1"
    for fields in ({"file_containing_symbol": "no.such.Symbol"},
                   {"file_by_filename": "no/such.proto"}):
        reply = reflection.ask(**fields)
        assert reply.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0], reply


def test_v1_sends_each_file_once_per_stream(server, messages):
    reflection = Reflection(server.channel, "grpc.reflection.v1", messages)
    asks = [reflection.request(file_containing_symbol=s)
            for s in ("gradserve.v1.ComputeRequest", "gradserve.v1.Tensor")]
    replies = list(reflection.info(iter(asks), timeout=30))
    assert len(replies[0].file_descriptor_response.file_descriptor_proto) > 1
    # tensor.proto came with the first answer: the second has nothing new.
    assert len(replies[1].file_descriptor_response.file_descriptor_proto) == 0
    assert replies[1].original_request.file_containing_symbol == "gradserve.v1.Tensor"
