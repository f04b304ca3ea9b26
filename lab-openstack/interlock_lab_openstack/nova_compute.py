"""nova-compute with the lab's driver: Nova loads drivers only from `nova.virt`, so
the lab's driver is made available there (`compute_driver = interlock_lab.LabDriver`)."""

from __future__ import annotations

import sys


def main() -> None:
    # nova.cmd first: it decides how the process is patched (eventlet or threads) before
    # anything else of Nova's is imported.
    from nova.cmd.compute import main as compute_main

    from interlock_lab_openstack import nova_driver

    sys.modules["nova.virt.interlock_lab"] = nova_driver
    compute_main()
