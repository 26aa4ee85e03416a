"""A grpcio echo over a Unix socket (no generated code: raw bytes in and out),
for the IPC client benchmark. `python grpc_echo.py serve /path/to.sock`."""

import sys
from concurrent import futures

import grpc


def main() -> None:
    path = sys.argv[2]
    handler = grpc.method_handlers_generic_handler(
        "uwire.bench.Echo",
        {"Echo": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"unix:{path}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
