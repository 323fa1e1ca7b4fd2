# The diffusion job: latents from the job spec, its controls, masks and prompt embeddings. With
# more than one GPU it runs under torchrun, one process per GPU (context parallel).


rule diffuse:
    input:
        unpack(diffuse_inputs),
    output:
        latents=run_path("latents"),
        sidecar=run_path("diffuse_sidecar"),
    log:
        f"{RUN}/logs/diffuse/{{job}}/{{name}}.log",
    benchmark:
        f"{RUN}/benchmarks/diffuse/{{job}}/{{name}}.tsv"
    conda:
        "../envs/cosmos-t2.yaml"
    resources:
        **needs("diffuse"),
    params:
        launcher=launcher,
        outdir=lambda wildcards, output: os.path.dirname(output.latents),
        args=infer_args,
    shell:
        "{params.launcher} infer {input.spec:q} -o {params.outdir:q} {params.args:q} > {log:q} 2>&1"
