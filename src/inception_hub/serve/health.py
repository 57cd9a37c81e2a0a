"""gRPC's health checking protocol (`grpc.health.v1.Health`), which Kubernetes' gRPC probes and
grpc_health_probe ask: the server as a whole (service ""), each service of the port by its full
name, and each model by its name are SERVING, and NOT_SERVING once the server drains. Its calls
are never refused under load: a busy server is still alive.
"""

from __future__ import annotations

import asyncio

import grpc

from .core import ServingCore
from .v2_protos import NOT_SERVING, SERVICE_UNKNOWN, SERVING, HealthCheckResponse, HealthListResponse

#: How often a Watch looks at the server's state.
WATCH_EVERY_S = 0.25


class HealthService:
    PROBES = frozenset({"Check", "List"})
    STREAMS = frozenset({"Watch"})

    def __init__(self, core: ServingCore, services: list[str]) -> None:
        self.core = core
        self.services = [*services, "grpc.health.v1.Health"]

    def names(self) -> list[str]:
        """What can be asked about: "" (the server), the services, the models."""
        return ["", *self.services, *self.core.models]

    def status(self, service: str) -> int:
        if service not in self.names():
            return SERVICE_UNKNOWN
        return NOT_SERVING if self.core.draining else SERVING

    async def Check(self, request, context):  # noqa: N802
        status = self.status(request.service)
        if status == SERVICE_UNKNOWN:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"unknown service {request.service!r}: ask about '' (the server), a service or a model "
                f"({', '.join(self.names()[1:])})",
            )
        return HealthCheckResponse(status=status)

    async def List(self, request, context):  # noqa: N802
        response = HealthListResponse()
        for name in self.names():
            response.statuses[name].status = self.status(name)
        return response

    async def Watch(self, request, context):  # noqa: N802
        """The status now, then each change, until the client leaves or the server stops."""
        last = None
        while True:
            status = self.status(request.service)
            if status != last:
                yield HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(WATCH_EVERY_S)
