# Optional full-size benchmarks (config bench.presets); random weights are fine for speed.


rule bench:
    output:
        json=run_path("bench"),
    log:
        f"{RUN}/logs/bench/{{preset}}.log",
    benchmark:
        f"{RUN}/benchmarks/bench/{{preset}}.tsv"
    conda:
        "../envs/cosmos-t2.yaml"
    resources:
        **needs("bench"),
    params:
        cli=gpu_command,
        args=bench_args,
    shell:
        "{params.cli} bench --preset {wildcards.preset} {params.args:q} --json-out {output.json:q} > {log:q} 2>&1"
