# VAE decode of the latents and the mp4 (with a JSON sidecar beside it); where use_server, a request
# to the GPU's server, whose VAE the diffuse jobs built.


rule encode:
    input:
        latents=run_path("latents"),
    output:
        video=report(
            run_path("video"),
            caption="../report/video.rst",
            category="Videos",
            subcategory="{name}",
            labels={"sample": "{name}", "job": "{job}"},
        ),
        # declared so that an mp4 without it (a render cut off between the two renames) is redone
        sidecar=run_path("video_sidecar"),
    log:
        f"{RUN}/logs/encode/{{job}}/{{name}}.log",
    benchmark:
        f"{RUN}/benchmarks/encode/{{job}}/{{name}}.tsv"
    conda:
        "../envs/cosmos-t2.yaml"
    resources:
        **needs("encode"),
    params:
        cli=gpu_command,
        model=model_args("model_dir"),
        device=config["device"],
        server=serve_args,
    shell:
        "{params.cli} render {input.latents:q} -o {output.video:q} {params.model:q} --device {params.device}"
        " {params.server:q} > {log:q} 2>&1"
