"""The limits of a grading run that more than one module needs: the CLI's defaults and the file cap.

Each is defined here once; ``g2c autograde --help``, the README and the tests read them from here.
"""

TIMEOUT = 120.0  # seconds for each of a submission's two sandboxed runs (--timeout)
CELL_TIMEOUT = 30.0  # seconds per notebook cell, nbgrader's default (--cell-timeout)
MEMORY_MB = 4096  # MB of address space of each process of a run, and of memory of all of them together (--memory)
MAX_FILE_BYTES = 64 * 2**20  # any file a sandboxed run writes (RLIMIT_FSIZE): its output, so also what the grader reads of it
MAX_PROCESSES = 256  # tasks (processes and threads) of a run's uid (RLIMIT_NPROC): a fork bomb stops here
MEMORY_SAMPLE_SECONDS = 0.25  # how often a run's init looks at its processes' memory
