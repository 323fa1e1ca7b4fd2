# Binary mask videos for controls that have a mask_path or a mask_prompt.


rule masks:
    input:
        spec=stage_spec("masks"),
        video=decoded_input,
    output:
        folder=directory(run_path("masks")),
    log:
        f"{RUN}/logs/masks/{{key}}.log",
    benchmark:
        f"{RUN}/benchmarks/masks/{{key}}.tsv"
    conda:
        "../envs/cosmos-t2.yaml"
    resources:
        **needs("masks"),
    params:
        cli=gpu_command,
        device=config["device"],
        models=aux_model_args("seg_model_dir", "grounding_model_dir"),
    shell:
        "{params.cli} masks {input.spec:q} -o {output.folder:q} --input {input.video:q}"
        " --device {params.device} {params.models:q} > {log:q} 2>&1"
