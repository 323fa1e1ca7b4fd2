# Control videos computed from the decoded input (edge, vis, depth, seg), one folder per distinct
# input x set of modalities and presets.


rule controls:
    input:
        spec=stage_spec("controls"),
        video=decoded_input,
    output:
        folder=directory(run_path("controls")),
    log:
        f"{RUN}/logs/controls/{{key}}.log",
    benchmark:
        f"{RUN}/benchmarks/controls/{{key}}.tsv"
    conda:
        "../envs/cosmos-t2.yaml"
    resources:
        **needs("controls"),
    params:
        cli=gpu_command,
        device=config["device"],
        models=aux_model_args("depth_model_dir", "seg_model_dir", "grounding_model_dir"),
    shell:
        "{params.cli} controls {input.spec:q} -o {output.folder:q} --input {input.video:q}"
        " --device {params.device} {params.models:q} > {log:q} 2>&1"
