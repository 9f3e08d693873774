"""Ray plumbing shared by everything that shards its work over processes or machines:
`bnnforge sweep` (a task per candidate), `bnnforge sim --ray` (a task per chunk of
images) and `benchmarks/fuzz.py --ray` (a task per case).

Ray is the optional extra ``bnnforge[cluster]``. Without an address a local Ray with
the given number of worker CPUs is started for the call and shut down after it; with
``--address`` (the HOST:PORT that ``ray start --head`` prints) an existing cluster is
joined. An address is checked with a plain TCP connection first, because ``ray.init``
waits a long time on an address where nothing listens.
"""
from __future__ import annotations

import contextlib
import os
import socket

from bnnforge.errors import BnnforgeError

INSTALL_HINT = "pip install 'bnnforge[cluster]'"


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def require_ray(option: str) -> None:
    """One line naming the option when Ray is not installed."""
    if not ray_available():
        raise BnnforgeError(f"{option}: needs Ray, which is not installed ({INSTALL_HINT})")


def check_address(address: str) -> None:
    """Refuse an unreachable cluster address in seconds: nothing listening, or something
    that is not a Ray head (`ray.init` would retry for minutes on either)."""
    if address in ("auto", "local"):
        return
    scheme, _, hostport = address.rpartition("://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit() or scheme not in ("", "ray"):
        raise BnnforgeError(f"--address {address!r}: expected HOST:PORT (or ray://HOST:PORT)")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as e:
        raise BnnforgeError(f"--address {address}: cannot reach a Ray cluster there ({e.strerror or e})") from None
    if scheme == "":   # ray:// is the Ray Client protocol, not the head's GCS
        problem = _gcs_problem(f"{host}:{port}")
        if problem:
            raise BnnforgeError(f"--address {address}: no Ray cluster answers there ({problem})")


def _local_token() -> str | None:
    """This machine's Ray authentication token, where Ray looks for it: $RAY_AUTH_TOKEN,
    the file $RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _gcs_problem(hostport: str, timeout: float = 5.0) -> str | None:
    """None when a Ray head's GCS answers at hostport (one gRPC call it serves to any
    client), else what answered instead, in one line.

    Ray 2.60's `ray start --head` requires a token when the head's machine has one, and
    a driver given an explicit address sends it only with RAY_AUTH_MODE=token: when the
    head refuses the anonymous call and this machine's token opens it, token mode is
    turned on for this process (ray.init would otherwise retry for minutes)."""
    try:
        import grpc
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    except ImportError:   # a Ray without these modules: leave the check to ray.init
        return None

    def call(metadata=()):
        with grpc.insecure_channel(hostport) as channel:
            try:
                gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                    gcs_service_pb2.GetClusterIdRequest(), timeout=timeout, metadata=metadata)
            except grpc.RpcError as e:
                return e
        return None

    err = call()
    if err is None:
        return None
    if err.code() != grpc.StatusCode.UNAUTHENTICATED:
        return f"{err.code().name}: {(err.details() or '').splitlines()[0][:160]}"
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return "the head requires token authentication, and RAY_AUTH_MODE=disabled here"
    token = _local_token()
    if not token:
        return ("the head requires its authentication token: copy the head's ~/.ray/auth_token to this "
                "machine or set RAY_AUTH_TOKEN")
    err = call((("authorization", f"Bearer {token}"),))
    if err is not None:
        return f"the head refused this machine's authentication token ({err.code().name})"
    from ray._private.authentication.authentication_token_setup import _enable_token_auth

    _enable_token_auth()
    return None


def prepare(option: str, address: str | None, workers: int | None) -> None:
    """Every check that can fail before any work: Ray installed, a sane worker count,
    a reachable address."""
    require_ray(option)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise BnnforgeError(f"--workers {workers!r}: must be a positive integer")
    if address is not None:
        check_address(address)


@contextlib.contextmanager
def ray_session(address: str | None = None, workers: int | None = None):
    """Ray for the duration of the block: the caller's when it already started one,
    else a local one with `workers` CPUs (default: the cores) or the cluster at
    `address`; one line when it cannot be started or joined."""
    import logging

    import ray

    started = False
    if not ray.is_initialized():
        kw = dict(address=address) if address else dict(num_cpus=workers or os.cpu_count() or 1)
        try:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, **kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"--address {address}" if address else "local Ray"
            raise BnnforgeError(f"{where}: cannot start or join Ray ({str(e).splitlines()[0][:200]})") from None
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def cluster_cpus() -> int:
    import ray

    return int(ray.cluster_resources().get("CPU", 0))


class TaskFailed:
    """The outcome of a task that produced no result: its worker was lost more often
    than the retries allow, or the function raised. `message` is one line."""

    def __init__(self, message: str):
        self.message = message

    def __repr__(self):
        return f"TaskFailed({self.message!r})"


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300]}" if text else type(e).__name__


def run_tasks(fn, jobs: list, *, shared: tuple = (), ordered: bool = False, max_retries: int = 3):
    """Each job as a Ray task `fn(job, *shared)` on one CPU, inside a `ray_session`.
    Yields (index, result) as tasks finish, or in the order of `jobs` with `ordered`;
    a task without a result yields a `TaskFailed` as its result. `shared` objects are
    put in the object store once, not copied into every task.

    A worker process lost mid-task (killed, out of memory, node gone) reruns the task
    on another worker up to `max_retries` times; an exception raised by `fn` itself is
    not retried (the functions here return their own failures as values)."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=max_retries)(fn)
    shared_refs = [ray.put(s) for s in shared]
    refs = [task.remote(job, *shared_refs) for job in jobs]
    index = {ref: i for i, ref in enumerate(refs)}
    pending = list(refs)
    done: dict[int, object] = {}
    next_out = 0
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            i = index[ready[0]]
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None)
                result = TaskFailed(_one_line(cause) if isinstance(cause, BaseException) else _one_line(e))
            except ray.exceptions.RayError as e:  # retries exhausted: the worker was lost every time
                result = TaskFailed(f"worker lost: {_one_line(e)}")
            if not ordered:
                yield i, result
                continue
            done[i] = result
            while next_out in done:
                yield next_out, done.pop(next_out)
                next_out += 1
    finally:
        for ref in pending:  # the caller stopped early (a bound on time or failures)
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
