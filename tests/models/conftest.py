"""Run torch single-threaded per worker."""


def pytest_configure(config):
    # pytest-xdist runs one worker per core; torch's default of one thread
    # per core in every worker oversubscribes the CPU, and OpenMP spin-waits
    # then make tiny models 10-100x slower.  One thread per worker is fastest.
    try:
        import torch
    except ImportError:  # data tests do not need torch
        return
    torch.set_num_threads(1)
