# The sweep's manifest (which files belong to which job) and the HTML report of that sweep (its jobs in
# every run folder; other jobs left in results/ are listed apart as earlier runs).


rule manifest:
    output:
        json=run_path("manifest"),
    log:
        f"{RUN}/logs/manifest.log",
    benchmark:
        f"{RUN}/benchmarks/manifest/manifest.tsv"
    params:
        jobs=sorted(SWEEP.jobs),
        bench=BENCH,
    run:
        from cosmos_t2.workflow.manifest import write_manifest

        write_manifest(output.json, sweep_manifest())


rule report:
    input:
        manifest=run_path("manifest"),
        videos=all_videos(),
        sidecars=all_diffusion("diffuse_sidecar"),
        bench=all_bench(),
    output:
        html=report(REPORT, caption="../report/report.rst", category="Report"),
    log:
        f"{RUN}/logs/report.log",
    benchmark:
        f"{RUN}/benchmarks/report/report.tsv"
    conda:
        "../envs/cosmos-t2.yaml"
    params:
        results=lambda wildcards: RESULTS,
        metrics=dir_args("depth_model_dir") + ["--device", config["device"]],
    shell:
        "cosmos-t2 report {params.results:q} -o {output.html:q} --sweep {input.manifest:q} {params.metrics:q} > {log:q} 2>&1"
