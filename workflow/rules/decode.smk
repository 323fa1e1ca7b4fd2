# The input video, resized and cropped to the model's resolution, shared by every job that reads it.


rule decode:
    input:
        spec=stage_spec("decode"),
    output:
        mkv=run_path("decoded"),
        info=f"{RUN}/decode/{{key}}/input.json",
    log:
        f"{RUN}/logs/decode/{{key}}.log",
    benchmark:
        f"{RUN}/benchmarks/decode/{{key}}.tsv"
    conda:
        "../envs/cosmos-t2.yaml"
    resources:
        **needs("decode"),
    params:
        outdir=lambda wildcards, output: os.path.dirname(output.mkv),
        model=aux_model_args(),
    shell:
        "cosmos-t2 decode {input.spec:q} -o {params.outdir:q} {params.model:q} > {log:q} 2>&1"
