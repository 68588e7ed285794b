"""Suite-wide set-up.

torch starts on one thread in every test process: results that tests compare bit for bit do not
depend on the machine's core count, and the parallel workers of ``make test`` (pytest-xdist, one
per core) do not oversubscribe the cores.  This is set once, at start-up: a test that changes it
in-process (a CLI call with ``--threads``) leaves it changed for the tests after it in the same
worker, which is why tests/test_jets_gan.py and tests/test_calochallenge_classifier.py pin it
per test with a fixture.  Subprocesses set their own (``OMP_NUM_THREADS``).
"""

import torch

torch.set_num_threads(1)
