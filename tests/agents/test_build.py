import platform
import subprocess
import sys

import pytest

# Allocates, touches and frees a 64 MiB tensor six times, then prints the page faults of the last
# four rounds (the first two let the heap reach its size): fresh pages from the OS fault (and are
# zeroed) on first touch, reused ones do not.
PROBE = """
import resource, sys, torch
from cahl.agents.build import apply_runtime
from cahl.config import ModelConfig
apply_runtime(ModelConfig(keep_freed_memory=sys.argv[1] == "true"))
def touch():
    x = torch.empty(16 * 2**20, dtype=torch.float32)
    x.fill_(1.0)
    del x
touch(); touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch(); touch(); touch(); touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(keep: bool) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, str(keep).lower()], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_keep_freed_memory_reuses_pages_instead_of_faulting_them_in_again():
    round_pages = 64 * 2**20 // 4096  # 64 MiB in 4 KiB pages
    without, with_ = faults(False), faults(True)
    assert without >= 4 * round_pages  # each round's block came fresh from the OS (mmap), and went back on free
    # the heap kept the block: later rounds reuse its pages (seen: none faulted in, now and then one round
    # did, when glibc placed the block anew)
    assert with_ <= round_pages
