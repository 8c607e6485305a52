"""The training input produced by other processes or machines: TensorFlow's tf.data service.

    python -m sslrs_tf.data.service dispatcher --port 5050
    python -m sslrs_tf.data.service worker --dispatcher HOST:5050 [--port 5051]   # one per input machine
    python train.py --config dual_simclr.yaml data.service=grpc://HOST:5050

The trainer sends the graph of its training pipeline (:func:`sslrs_tf.data.pipeline.make_dataset`) to the
dispatcher; each worker runs it and streams batches back. Workers read the dataset's files at the paths the
trainer names: a filesystem every machine mounts at the same place, or ``gs://``.

The pipeline's epochs are the units the workers share (``distributed_epoch``: the dispatcher hands each
epoch to one worker), so that every batch the trainer gets is a batch the local pipeline makes for that epoch
(same samples, crops and normalisation), each epoch whole and in its own order; with several workers, the
batches of the epochs being made at the same time interleave in the order they arrive. What this means for a
resumed or a multi-worker run: docs/distribution.md.
"""

import argparse
import socket
import sys
import time

from sslrs_tf.errors import UserError

#: how long a trainer waits for the dispatcher to answer before giving up with a line
CONNECT_TIMEOUT_S = 20


def address(url, key="data.service"):
    """``(host, port)`` of a ``grpc://HOST:PORT`` (or ``HOST:PORT``, ``[IPv6]:PORT``) address; a
    :class:`UserError` naming `key` otherwise."""
    rest = url[len("grpc://"):] if url.startswith("grpc://") else url
    host, _, port = rest.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{key} must look like grpc://HOST:PORT (a port in 1..65535). Received: {key}={url!r}")
    return host, int(port)


def check_reachable(url, timeout=CONNECT_TIMEOUT_S, key="data.service"):
    """Raises a one-line :class:`UserError` (naming `key`) unless something accepts connections at `url` within
    about `timeout` s (TF's client would otherwise retry for as long as its own timeouts allow, silently)."""
    host, port = address(url, key)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError as err:
            if time.monotonic() > deadline:
                raise UserError(f"{key}: no tf.data dispatcher answers at {url} ({err.strerror or err}); "
                                f"start one with `python -m sslrs_tf.data.service dispatcher --port {port}`") from None
            time.sleep(0.5)


def distribute(dataset, url):
    """`dataset` produced by the workers of the dispatcher at `url`, each epoch by one worker.

    Args:
        dataset: a training pipeline whose first source is its range of epochs (as
            :func:`~sslrs_tf.data.pipeline.make_dataset` builds it while training).
        url: ``grpc://HOST:PORT`` of a running dispatcher.
    """
    import tensorflow as tf

    check_reachable(url)
    return dataset.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC, service=url))


def serve(role, port, dispatcher=None, worker_host="localhost"):
    """Starts a dispatcher or a worker of the tf.data service and serves until the process is stopped."""
    import tensorflow as tf

    service = tf.data.experimental.service
    if role == "dispatcher":
        server = service.DispatchServer(service.DispatcherConfig(port=port))
        bound = server._address.rpartition(":")[2]  # noqa: SLF001  (the port it bound: --port 0 picks a free one)
        print(f"tf.data dispatcher serving at grpc://{socket.gethostname()}:{bound}", flush=True)
    else:
        host, dispatcher_port = address(dispatcher, "--dispatcher")
        target = f"[{host}]:{dispatcher_port}" if ":" in host else f"{host}:{dispatcher_port}"
        check_reachable(f"grpc://{target}", key="--dispatcher")
        server = service.WorkerServer(service.WorkerConfig(dispatcher_address=target,
                                                           port=port, worker_address=f"{worker_host}:%port%"))
        bound = server._address.rpartition(":")[2]  # noqa: SLF001
        print(f"tf.data worker serving at {worker_host}:{bound} for dispatcher {target}", flush=True)
    server.join()


def main(argv=None):
    """``python -m sslrs_tf.data.service dispatcher --port P`` or ``... worker --dispatcher HOST:P [--port Q]``."""
    parser = argparse.ArgumentParser(prog="python -m sslrs_tf.data.service",
                                     description="Run a tf.data service dispatcher or worker for data.service.")
    roles = parser.add_subparsers(dest="role", required=True)
    d = roles.add_parser("dispatcher", help="the process trainers connect to (data.service=grpc://HOST:PORT)")
    d.add_argument("--port", type=int, required=True)
    w = roles.add_parser("worker", help="a process that runs the trainers' input pipelines")
    w.add_argument("--dispatcher", required=True, help="HOST:PORT (or grpc://HOST:PORT) of the dispatcher")
    w.add_argument("--port", type=int, default=0, help="this worker's port (default: any free one)")
    w.add_argument("--host", default=socket.gethostname(),
                   help="the name the trainers reach this worker by (default: this machine's host name)")
    args = parser.parse_args(argv)
    from sslrs_tf.errors import run_entry_point

    return run_entry_point(lambda: serve(args.role, args.port, getattr(args, "dispatcher", None),
                                         getattr(args, "host", "localhost")))


if __name__ == "__main__":
    sys.exit(main())
