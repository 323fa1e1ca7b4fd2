# Resolved job specs: one per diffusion job, and one per shared stage (decode, controls, masks,
# prompt) carrying only the overrides that stage reads, so a new control weight leaves them alone.


rule spec:
    # The sample that writes a shared stage's spec is whichever this sweep offers first, so it is read in
    # `run`, not given as params: Snakemake reruns a job whose params changed, and another sweep sharing
    # results/ (another sample for the same content key) would redo the stage and everything below it.
    output:
        json=run_path("spec"),
    log:
        f"{RUN}/logs/spec/{{stage}}-{{key}}.log",
    benchmark:
        f"{RUN}/benchmarks/spec/{{stage}}-{{key}}.tsv"
    conda:
        "../envs/cosmos-t2.yaml"
    run:
        shell(spec_command(wildcards, output.json, log[0]))
