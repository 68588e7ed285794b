"""Suite-wide set-up.

torch runs on one thread in every test process: results that tests compare bit for bit do not
depend on the machine's core count, and the parallel workers of ``make test`` (pytest-xdist, one
per core) do not oversubscribe the cores.  Tests that time or exercise threading set their own
count (``--threads``, ``OMP_NUM_THREADS`` in subprocesses).
"""

import torch

torch.set_num_threads(1)
