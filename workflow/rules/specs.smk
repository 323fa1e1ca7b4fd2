# Resolved job specs: one per diffusion job, and one per shared stage (decode, controls, masks,
# prompt) carrying only the overrides that stage reads, so a new control weight leaves them alone.


rule spec:
    output:
        json=run_path("spec"),
    params:
        spec=spec_file,
        args=spec_args,
    log:
        f"{RUN}/logs/spec/{{stage}}-{{key}}.log",
    benchmark:
        f"{RUN}/benchmarks/spec/{{stage}}-{{key}}.tsv"
    conda:
        "../envs/cosmos-t2.yaml"
    shell:
        "cosmos-t2 validate {params.spec:q} {params.args:q} --json-out {output.json:q} > {log:q} 2>&1"
