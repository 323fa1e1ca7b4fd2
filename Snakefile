# cosmos-t2 sweep: specs x grid -> videos -> one HTML report. Run with
#   snakemake --profile profiles/local          (CPU, tiny model, the bundled example)
#   snakemake --profile profiles/slurm-h100     (SLURM, H100 nodes; docs/slurm.md)
# Each rule's shell line is one `cosmos-t2` command; cosmos_t2.workflow.sweep plans the jobs.
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import min_version

from cosmos_t2.workflow.config import check_sweep_config
from cosmos_t2.workflow.hardware import resolve_hardware

min_version("9.0")


# The sweep is the --configfile given, or config.yaml when none is: Snakemake would otherwise merge the
# two, and a one-key config would silently inherit the default specs and grid. `--config key=value`
# still overrides single keys; profiles set no config (see cosmos_t2/workflow/hardware.py).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


check_sweep_config(
    config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml", workflow.overwrite_configfiles
)
HARDWARE = resolve_hardware(
    config,
    workflow.resource_settings.overwrite_resources,
    workflow.global_resources,
    workflow.resource_settings.default_resources,
)
config.update(device=HARDWARE.device, hardware_label=HARDWARE.label)
logger.info(
    f"cosmos-t2 sweep: config {', '.join(map(str, workflow.overwrite_configfiles)) or 'config.yaml'}; "
    f"device {HARDWARE.device}, hardware label {HARDWARE.label}"
    + (f" ({' and '.join(HARDWARE.derived)} from the profile's resources)" if HARDWARE.derived else "")
)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/specs.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/controls.smk"
include: "workflow/rules/masks.smk"
include: "workflow/rules/prompts.smk"
include: "workflow/rules/diffuse.smk"
include: "workflow/rules/encode.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/report.smk"


wildcard_constraints:
    key="[0-9a-f]{16}",
    job="[0-9a-f]{16}",
    stage="job|decode|controls|masks|prompt",
    name="[^/]+",
    preset="[A-Za-z0-9_]+",


localrules:
    all,
    spec,
    manifest,
    report,


# The latents are targets too: Snakemake 8+ does not remake a lost intermediate file while what was
# made from it is up to date, and a deleted diffusion output should be redone (with what follows).
rule all:
    default_target: True
    input:
        REPORT,
        all_videos(),
        all_diffusion("latents", "diffuse_sidecar"),


# A SLURM request that no node of its partition can meet stops the run before the first submission.
onstart:
    slurm_preflight()


# A failed job (with --keep-going, after the others finished) still gets a report: it lists every job,
# the finished ones with their videos, the failed ones with the rule, the error line and the log.
onerror:
    write_failure_report()
    stop_server()


onsuccess:
    stop_server()
