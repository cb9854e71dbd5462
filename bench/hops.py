"""What one hop of ModelRouter's path costs on this machine, each measured alone (the floor the design
stands on; ``docs/performance.md`` reads the bench against it).

    python -m bench.hops [--calls N]    # about 35 s; prints a table, p50 wall and client CPU per call

Hops: a cross-process TCP round trip (the kernel's share of every hop), a grpc.aio unary call to a
trivial servicer (another process) and a message each way on an open gRPC stream, a core NATS
request/reply (these two also 20 ms after the previous call: what waking idle processes costs),
a JetStream publish with its ack, a Redis EVALSHA through redis-py, and one OpenTelemetry SDK span.
Uses the NATS and Redis of ``NATS_URL``/``REDIS_URL`` (defaults: the local ones).
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import nats
import uvloop
from nats.aio.msg import Msg
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from bench.machine import python_speed_us
from common.grpc_io import use_iomgr_io

CALLS = 2000  # per hop (five times as many for the cheap ones); --calls changes it
IDLE_S = 0.02  # the pause before each call of the "after the last" rows
IDLE_CALLS = 300  # at most (--calls lowers it too)


@dataclass(frozen=True)
class Hop:
    name: str
    p50_ms: float
    client_cpu_ms: float


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(
    name: str, call: Callable[[], Awaitable[object]], calls: int | None = None, idle_s: float = 0.0
) -> Hop:
    """``call``'s p50 wall time and CPU; with ``idle_s``, each call follows that long asleep (untimed)."""
    calls = calls or CALLS
    for _ in range(calls // 10):
        await call()
    times = []
    cpu = _cpu_s()
    for _ in range(calls):
        if idle_s:
            await asyncio.sleep(idle_s)
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return Hop(name, statistics.median(times) * 1000, (_cpu_s() - cpu) / calls * 1000)


def tcp_round_trip() -> Hop:
    """Blocking ping-pong with a forked echo process: the wake-up cost every hop pays."""
    server = socket.create_server(("127.0.0.1", 0))
    if os.fork() == 0:
        conn, _ = server.accept()
        while data := conn.recv(256):
            conn.sendall(data)
        os._exit(0)
    client = socket.create_connection(server.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    cpu = _cpu_s()
    for _ in range(CALLS * 5):
        started = time.perf_counter()
        client.sendall(b"x" * 200)
        client.recv(256)
        times.append(time.perf_counter() - started)
    hop = Hop(
        "TCP round trip to another process", statistics.median(times) * 1000, (_cpu_s() - cpu) / len(times) * 1000
    )
    client.close()
    os.wait()
    return hop


_ECHO = "/bench.Hops/Echo"


def _same(message: bytes) -> bytes:
    return message


async def grpc_hops() -> list[Hop]:
    """A unary call, and one message each way on an open bidirectional stream (the router's RouteBatchStream)."""
    import grpc  # loaded by main(), after use_iomgr_io()
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.hops", "--grpc-server", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        port = int(await server.stdout.readline())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest()
            unary = await measure("grpc.aio unary call (trivial servicer)", lambda: stub.Check(request))
            stream = channel.stream_stream(_ECHO, _same, _same)()
            payload = os.urandom(100)

            async def ping_pong() -> object:
                await stream.write(payload)
                return await stream.read()

            streamed = await measure("grpc.aio stream message and answer", ping_pong)
            # Between a stream's chunks (1 ms apart in the bench) the router sits idle for the whole
            # stream; on this VM a process woken after a pause answers markedly slower.
            after_idle = await measure(
                f"grpc.aio stream message and answer, {IDLE_S * 1000:g} ms after the last",
                ping_pong,
                calls=min(IDLE_CALLS, CALLS),
                idle_s=IDLE_S,
            )
            await stream.done_writing()
            return [unary, streamed, after_idle]
    finally:
        server.terminate()
        await server.wait()


async def _grpc_server() -> None:
    import grpc
    from grpc_health.v1 import health, health_pb2_grpc

    class Echo(grpc.GenericRpcHandler):
        def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
            if handler_call_details.method != _ECHO:
                return None

            async def echo(messages: AsyncIterator[bytes], context: object) -> AsyncIterator[bytes]:
                async for message in messages:
                    yield message

            return grpc.stream_stream_rpc_method_handler(echo, _same, _same)

    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server.add_generic_rpc_handlers((Echo(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


async def nats_hops(url: str) -> list[Hop]:
    requester, responder = await nats.connect(url), await nats.connect(url)
    subject = f"bench.hops.{uuid.uuid4().hex}"

    async def echo(msg: Msg) -> None:
        await msg.respond(b"ok")

    await responder.subscribe(subject, cb=echo)
    await responder.flush()
    payload = os.urandom(300)
    hops = [await measure("NATS request/reply", lambda: requester.request(subject, payload, timeout=1))]
    hops.append(
        await measure(
            f"NATS request/reply, {IDLE_S * 1000:g} ms after the last",
            lambda: requester.request(subject, payload, timeout=1),
            calls=min(IDLE_CALLS, CALLS),
            idle_s=IDLE_S,
        )
    )
    js = requester.jetstream()
    stream = f"BENCH_HOPS_{uuid.uuid4().hex[:8]}"
    await js.add_stream(name=stream, subjects=[f"{subject}.js"])
    try:
        hops.append(await measure("JetStream publish + ack", lambda: js.publish(f"{subject}.js", payload)))
    finally:
        await js.delete_stream(stream)
        await requester.close()
        await responder.close()
    return hops


async def redis_evalsha(url: str) -> Hop:
    redis = Redis.from_url(url)
    script = redis.register_script("return redis.call('incr', KEYS[1])")
    key = f"bench:hops:{uuid.uuid4().hex}"
    try:
        return await measure("Redis EVALSHA (redis-py)", lambda: script(keys=[key]))
    finally:
        await redis.delete(key)
        await redis.aclose()


async def otel_span() -> Hop:
    tracer = TracerProvider().get_tracer("bench")

    async def one() -> None:
        with tracer.start_as_current_span("send x", kind=SpanKind.PRODUCER, attributes={"messaging.system": "nats"}):
            pass

    return await measure("OpenTelemetry SDK span", one, calls=CALLS * 5)


async def run() -> list[Hop]:
    nats_url = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    return [
        tcp_round_trip(),
        *await grpc_hops(),
        *await nats_hops(nats_url),
        await redis_evalsha(redis_url),
        await otel_span(),
    ]


def main(argv: list[str] | None = None) -> int:
    global CALLS
    args = sys.argv[1:] if argv is None else argv
    use_iomgr_io()  # gRPC's I/O engine as the gateway and router run it; the server process inherits it
    if args == ["--grpc-server"]:
        uvloop.run(_grpc_server())
        return 0
    if args[:1] == ["--calls"]:
        CALLS = int(args[1])
    speed = python_speed_us()  # the machine's pace right now: on a shared VM it drifts
    hops = uvloop.run(run())
    print(f"`sum(range(1000))` takes {speed:.1f} µs here now; GRPC_EXPERIMENTS={os.environ['GRPC_EXPERIMENTS']}\n")
    print("| hop | p50 ms | client CPU ms per call |\n|---|---|---|")
    for hop in hops:
        print(f"| {hop.name} | {hop.p50_ms:.3f} | {hop.client_cpu_ms:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
