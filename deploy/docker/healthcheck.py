"""Container health check: exit 0 when the service at the given address is ready, 1 otherwise.

    python healthcheck.py http://127.0.0.1:8000/ready   # HTTP: a 2xx answer
    python healthcheck.py grpc://127.0.0.1:50051        # gRPC: grpc.health.v1 says SERVING

The slim images carry no curl; this runs on the interpreter the service already has, and imports
grpc only for the gRPC form (only the router's image has it).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

TIMEOUT_S = 2.0


def http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError):
        return False


def grpc_serving(target: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: healthcheck.py http://host:port/path | grpc://host:port\n")
        return 2
    address = argv[0]
    ok = grpc_serving(address.removeprefix("grpc://")) if address.startswith("grpc://") else http_ready(address)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
