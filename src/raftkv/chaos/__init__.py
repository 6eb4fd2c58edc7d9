"""Jepsen-style fault testing of raftkv on real processes (`raftkv chaos`).

    from raftkv.chaos import ChaosConfig, run_campaign, write_report
    result = asyncio.run(run_campaign(ChaosConfig(out=Path("r"), nodes=3, duration=20,
                                                  faults=("partition-leader",))))
    assert result.passed, result.problems

Modules: cluster (the node processes), workload (the clients and their history), nemesis
(the faults), checks (the verdicts), runner (one campaign), report and plot (the output).
The command is raftkv.cli.chaos.
"""

from raftkv.chaos.nemesis import ALL_FAULTS, FAMILIES, expand_faults
from raftkv.chaos.report import write_report
from raftkv.chaos.runner import ChaosConfig, ChaosResult, run_campaign
from raftkv.chaos.workload import WorkloadConfig

__all__ = [
    "ALL_FAULTS",
    "FAMILIES",
    "ChaosConfig",
    "ChaosResult",
    "WorkloadConfig",
    "expand_faults",
    "run_campaign",
    "write_report",
]
