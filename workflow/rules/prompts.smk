# Prompt and negative-prompt embeddings. The text encoder runs here alone, so the diffusion jobs
# never hold it in memory and every job with the same prompt reuses one file. Where use_server, a
# request to the GPU's server, which keeps the encoder for the next prompt (until a diffuse job).


rule prompt:
    input:
        spec=stage_spec("prompt"),
    output:
        embeddings=run_path("prompt"),
    log:
        f"{RUN}/logs/prompt/{{key}}.log",
    benchmark:
        f"{RUN}/benchmarks/prompt/{{key}}.tsv"
    conda:
        "../envs/cosmos-t2.yaml"
    resources:
        **needs("prompt"),
    params:
        cli=gpu_command,
        model=model_args("text_encoder_dir"),
        device=config["device"],
        server=serve_args,
    shell:
        "{params.cli} encode-prompt {input.spec:q} -o {output.embeddings:q} {params.model:q}"
        " --device {params.device} {params.server:q} > {log:q} 2>&1"
