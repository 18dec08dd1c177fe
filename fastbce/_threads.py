"""How many threads a call uses.

Resolution order: the call's ``n_threads``; else :func:`set_num_threads`; else the
``FASTBCE_NUM_THREADS`` environment variable; else every core this process may run on.
Requests above the core count are capped at it (results do not depend on the thread count).
"""

import os

_ENV_VAR = "FASTBCE_NUM_THREADS"
_library_default = None


def available_cores():
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _check_count(value, name):
    if isinstance(value, bool) or not isinstance(value, (int,)) and not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    value = int(value)
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return value


def set_num_threads(n):
    """Set the library-wide default thread count (``None`` restores the automatic default)."""
    global _library_default
    _library_default = None if n is None else _check_count(n, "n")


def get_num_threads():
    """The thread count a call with ``n_threads=None`` uses."""
    if _library_default is not None:
        return min(_library_default, available_cores())
    env = os.environ.get(_ENV_VAR)
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"{_ENV_VAR} must be a positive integer, got {env!r}") from None
        return min(_check_count(n, _ENV_VAR), available_cores())
    return available_cores()


def resolve_num_threads(n_threads):
    """The thread count for one call: ``n_threads`` if given (capped at the cores), else the default."""
    if n_threads is None:
        return get_num_threads()
    return min(_check_count(n_threads, "n_threads"), available_cores())
