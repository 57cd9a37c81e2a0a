"""gRPC health checking (grpc.health.v1, as Kubernetes' gRPC probes and grpc_health_probe ask
it) and server reflection (as grpcurl lists and describes a server) on the gRPC port."""

from __future__ import annotations

import json
import threading
import time

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc  # .[test]

from inception_hub.serve import v2_protos as ours
from test_serve import Running, http, slow

SERVICES = {"tensorflow.serving.PredictionService", "tensorflow.serving.ModelService", "inference.GRPCInferenceService"}
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_the_health_service_is_declared_as_grpcs():
    real = health_pb2.DESCRIPTOR.services_by_name["Health"]
    assert set(ours.SERVICES[ours.HEALTH]) == {m.name for m in real.methods}
    for name, (request, response) in ours.SERVICES[ours.HEALTH].items():
        twin = real.methods_by_name[name]
        for cls, real_type in ((request, twin.input_type), (response, twin.output_type)):
            assert cls.DESCRIPTOR.full_name == real_type.full_name
            for f in cls.DESCRIPTOR.fields:
                r = real_type.fields_by_name[f.name]
                assert (f.number, f.type, f.is_repeated) == (r.number, r.type, r.is_repeated), f.full_name
    status = ours.HealthCheckResponse.DESCRIPTOR.enum_types_by_name["ServingStatus"]
    assert {v.name: v.number for v in status.values} == dict(health_pb2.HealthCheckResponse.ServingStatus.items())


@pytest.fixture(scope="module")
def server(models):
    s = Running(models)
    yield s
    s.shutdown()


@pytest.mark.slow
def test_health_of_the_server_its_services_and_each_model(server):
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.grpc))
    for service in ["", *SERVICES, "grpc.health.v1.Health", "inception_v1", "inception_v1_feature_vector"]:
        assert stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == SERVING, service
    with pytest.raises(grpc.RpcError) as e:
        stub.Check(health_pb2.HealthCheckRequest(service="resnet"), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "inception_v1" in e.value.details()
    listed = stub.List(health_pb2.HealthListRequest(), timeout=10).statuses
    assert {"", "inception_v1", *SERVICES} <= set(listed) and {s.status for s in listed.values()} == {SERVING}
    watch = stub.Watch(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    watch.cancel()


@pytest.mark.slow
def test_reflection_lists_and_describes_both_protocols(server):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    database = ProtoReflectionDescriptorDatabase(grpc.insecure_channel(server.grpc))
    services = set(database.get_services())
    assert SERVICES | {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} == services
    pool = descriptor_pool.DescriptorPool(database)  # as grpcurl describe does
    infer = pool.FindServiceByName("inference.GRPCInferenceService").methods_by_name["ModelInfer"]
    assert infer.input_type.fields_by_name["raw_input_contents"].number == 7
    predict = pool.FindServiceByName("tensorflow.serving.PredictionService").methods_by_name["Predict"]
    assert predict.output_type.full_name == "tensorflow.serving.PredictResponse"
    assert pool.FindServiceByName("grpc.health.v1.Health").methods_by_name["Watch"].server_streaming


@pytest.mark.slow
def test_health_goes_not_serving_while_the_server_drains(models):
    """SERVING, then NOT_SERVING from the moment a stop (SIGTERM's handler sets the same event)
    begins the drain, while a request in flight is still answered."""
    s = Running([slow(models[0], 2.0)], max_batch=1, batch_timeout_ms=0)
    channel = grpc.insecure_channel(s.grpc)
    stub = health_pb2_grpc.HealthStub(channel)
    watched = []

    def watch():
        try:
            for answer in stub.Watch(health_pb2.HealthCheckRequest(service="inception_v1"), timeout=30):
                watched.append(answer.status)
        except grpc.RpcError as e:  # the stream ends with the server
            watched.append(e.code())

    try:
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status == SERVING
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        body = {"instances": np.full((1, 32, 32, 3), 0.5).tolist()}
        answers = []
        inflight = threading.Thread(
            target=lambda: answers.append(http("POST", s.url + "/v1/models/inception_v1:predict", body))
        )
        inflight.start()
        time.sleep(0.5)  # the request is running
        s.loop.call_soon_threadsafe(s.stop.set)
        time.sleep(0.3)
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status == NOT_SERVING
        assert stub.Check(health_pb2.HealthCheckRequest(service="inception_v1"), timeout=10).status == NOT_SERVING
        inflight.join(30)
        assert answers and answers[0][0] == 200 and len(json.loads(answers[0][1])["predictions"]) == 1
        s.thread.join(30)
        watcher.join(30)
        assert watched[:2] == [SERVING, NOT_SERVING] and isinstance(watched[-1], grpc.StatusCode), watched
    finally:
        if s.thread.is_alive():
            s.shutdown()
