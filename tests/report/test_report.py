"""The HTML report over a results folder made here: real videos, controls, sidecars and benchmark files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cosmos_t2.report.build import ReportOptions, build_report
from cosmos_t2.workflow.manifest import manifest
from cosmos_t2.workflow.sweep import plan_sweep

BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def frames(seed: int, t: int = 6, h: int = 32, w: int = 48) -> np.ndarray:
    """A bright box on a dark, slightly noisy background, moving right."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 12, (t, h, w, 3)).astype(np.uint8)
    for i in range(t):
        video[i, 8:24, 6 + 2 * i : 26 + 2 * i] = 210
    return video


def make_results(
    root: Path,
    labels: tuple[str, ...] = ("cpu-test", "h100-test"),
    grid: dict[str, list[Any]] | None = None,
) -> Path:
    """A results folder as the workflow leaves it, for a 2-spec x 2-weight sweep (or `grid`) on two hardware
    labels."""
    from cosmos_t2.controls.blur import blur_video
    from cosmos_t2.controls.edge import canny_edges
    from cosmos_t2.video import write_video

    ex = root / "ex"
    ex.mkdir(parents=True)
    source = frames(0)
    write_video(ex / "input.mp4", source, 16)
    base = {"prompt": "a robot arm stacks red cubes", "video_path": "input.mp4"}
    (ex / "edge.json").write_text(json.dumps({**base, "name": "robot_edge", "edge": {}}))
    (ex / "vis.json").write_text(json.dumps({**base, "name": "robot_vis", "vis": {}}))
    sweep = plan_sweep(
        {"specs": ["ex/edge.json", "ex/vis.json"], "grid": grid or {"control_weight": [0.5, 1.0]}}, root
    )
    results = root / "results"
    for n, label in enumerate(labels):
        run = results / label
        gpu = "h100" in label
        data = manifest(
            sweep, {"label": label, "device": "cuda" if gpu else "cpu"}, ["720p93"] if gpu else []
        )
        (run / "manifest.json").parent.mkdir(parents=True)
        (run / "manifest.json").write_text(json.dumps(data))
        if gpu:  # a `cosmos-t2 bench --json-out` result
            bench = {"preset": {"name": "720p93"}, "options": {"cp": 1, "warmup": 2}, "device": "NVIDIA H100"}
            bench["attention_kernel"] = "cudnn"
            bench["cosmos_t2"] = {"step_s": 6.9, "peak_gib": 21.5, "step_times_s": [6.9, 6.9]}
            (run / "bench").mkdir()
            (run / "bench" / "720p93.json").write_text(json.dumps(bench))
        for i, job in enumerate(data["jobs"]):
            paths = job["paths"]
            weight = job["settings"].get("control_weight", 0.75)
            # a higher weight follows the input more closely: less noise on top of it
            noise = np.random.default_rng(i).normal(0, 60 * (1 - weight), source.shape)
            output = np.clip(source + noise, 0, 255).astype(np.uint8)
            write_video(run / paths["video"], output, 16)
            sidecar = {
                "name": job["name"],
                "steps": 2,
                "diffusion_steps_total": 2,
                "seconds_per_step": 0.5 / (n + 1),
                "label": "tiny random-weight model",
                "tiny": True,
                "timings_s": {"load": 0.2, "diffusion": 1.0 / (n + 1), "vae_decode": 0.1},
                "startup_s": {"process_start": 0.05, "imports": 2.5},
                "peak_memory_gib": {"gpu_allocated": 3.5} if "h100" in label else {"cpu_rss": 1.2},
                "device": {
                    "type": "cuda" if "h100" in label else "cpu",
                    "name": "NVIDIA H100" if "h100" in label else "AMD EPYC 7B13",
                    **({} if "h100" in label else {"threads": 2}),
                    "processes": 1,
                    **({"attention": "fa4"} if "h100" in label else {}),
                },
            }
            (run / paths["diffuse_sidecar"]).parent.mkdir(parents=True, exist_ok=True)
            (run / paths["diffuse_sidecar"]).write_text(json.dumps(sidecar))
            (run / paths["video"]).with_suffix(".json").write_text(
                json.dumps({**sidecar, "render": {"seconds": 0.3}})
            )
            (run / paths["spec"]).parent.mkdir(parents=True, exist_ok=True)
            (run / paths["spec"]).write_text(
                json.dumps({"name": job["name"], "edge": {"control_weight": weight}})
            )
            decoded = run / "decode" / job["benchmarks"]["decode"] / "input.mkv"
            if not decoded.is_file():  # what the controls were computed from: the ceiling reference
                write_video(decoded, source, 16, lossless=True)
            controls = run / paths["controls"]
            if not controls.is_dir():
                modality = job["modalities"][0]
                video = canny_edges(source, "medium") if modality == "edge" else blur_video(source, "medium")
                write_video(controls / f"{modality}.mkv", video, 16, lossless=True)
                (controls / f"{modality}.json").write_text(json.dumps({"modality": modality}))
            for rule, key in job["benchmarks"].items():
                tsv = run / "benchmarks" / rule / f"{key}.tsv"
                tsv.parent.mkdir(parents=True, exist_ok=True)
                seconds = {"diffuse": 10.0, "encode": 2.0}.get(rule, 0.5) / (n + 1)
                tsv.write_text(
                    BENCH_HEADER
                    + f"{seconds}\t0:00:01\t512.5\t900\t400\t410\t1.5\t2.5\t95.0\t{seconds * 0.9}\n"
                )
    return results


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("report")
    results = make_results(root)
    out = build_report(results, results / "report.html", ReportOptions(metric_frames=4))
    return out, out.read_text()


def test_report_is_one_self_contained_file(report_html: tuple[Path, str]) -> None:
    _, html = report_html
    assert html.count("<html") == 1
    # nothing fetched from elsewhere: no external scripts, styles, images or media
    assert not re.search(r"<(script|img|video|source|link)[^>]+(src|href)=\"(https?:)?//", html)
    assert html.count("Plotly.newPlot") >= 3 and html.count("plotly.js v") == 1  # the library inlined once
    assert len(re.findall(r'<video [^>]*src="data:video/mp4;base64,', html)) == 8  # 4 jobs x 2 labels
    assert len(re.findall(r'src="data:image/jpeg;base64,', html)) == 16  # output + control thumbnails


def test_report_tables_hold_each_job_its_costs_and_fidelity(report_html: tuple[Path, str]) -> None:
    _, html = report_html
    for text in (
        "robot_edge",
        "robot_vis",
        "cpu-test",
        "h100-test",
        "edge_f1",
        "blur_ssim",
        "s_per_step",
        "diffuse_gpu_gib",
    ):
        assert text in html
    for chart in ("chart-rule-time", "chart-s-per-step", "chart-stages", "chart-fidelity"):
        assert f'id="{chart}"' in html
    bench = re.search(r'<section id="bench">(.*?)</section>', html, re.S)
    assert bench and "<th>cosmos_t2.step_s</th>" in bench[1] and "<td>6.9</td>" in bench[1]
    assert "options.warmup" not in bench[1] and "<th>options.cp</th>" in bench[1]
    assert (
        "h100-test (NVIDIA H100, fa4)" in html
        and "h100-test (NVIDIA H100, cudnn)" in html
        and "cosmos-t2 bench" in html.split('id="chart-s-per-step"', 1)[1].split("</script>", 1)[0]
    )
    rules = re.search(r'<section id="rules">(.*?)</section>', html, re.S)
    assert rules and all(r in rules[1] for r in ("decode", "controls", "prompt", "diffuse", "encode"))


def test_report_metrics_rise_with_control_weight(tmp_path: Path) -> None:
    from cosmos_t2.report.data import benchmark_table, compute_metrics, find_runs, job_table

    results = make_results(tmp_path, labels=("cpu-test",))
    runs = find_runs(results)
    jobs = job_table(runs, benchmark_table(runs), compute_metrics(runs, max_frames=6))
    edge = jobs[jobs["sample"] == "robot_edge"].sort_values("control_weight")
    vis = jobs[jobs["sample"] == "robot_vis"].sort_values("control_weight")
    assert list(edge["control_weight"]) == [0.5, 1.0]
    assert edge["edge_f1"].iloc[1] > edge["edge_f1"].iloc[0]
    assert edge["edge_f1"].iloc[1] > 0.9  # the unchanged input against its own edges (mp4 loss aside)
    assert vis["blur_ssim"].iloc[1] > vis["blur_ssim"].iloc[0]
    assert edge["diffuse_s"].iloc[0] == 10.0 and edge["s_per_step"].iloc[0] == 0.5
    assert jobs["hardware"].unique().tolist() == ["cpu-test"]


def test_large_previews_are_linked_not_inlined(tmp_path: Path) -> None:
    results = make_results(tmp_path, labels=("cpu-test",))
    out = build_report(
        results, tmp_path / "elsewhere" / "r.html", ReportOptions(metrics=False, embed_limit_mb=0)
    )
    html = out.read_text()
    assert "data:video/mp4" not in html
    assert 'href="../results/cpu-test/videos/' in html
    assert "<th>edge_f1</th>" not in html  # no metrics column without --metrics


def test_report_cli_and_its_errors(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cosmos_t2.cli import app

    results = make_results(tmp_path, labels=("cpu-test",))
    runner = CliRunner()
    done = runner.invoke(app, ["report", str(results), "-o", str(tmp_path / "r.html"), "--no-metrics"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "r.html").is_file() and "r.html" in done.output
    empty = tmp_path / "empty"
    empty.mkdir()
    from cosmos_t2.errors import CosmosError

    failed = runner.invoke(app, ["report", str(empty), "-o", str(tmp_path / "x.html")])
    assert isinstance(failed.exception, CosmosError) and "manifest.json" in str(failed.exception)
    assert not (tmp_path / "x.html").exists()


def find_chromium() -> str | None:
    import shutil

    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


# Reports, after the page has loaded, whether each preview decoded (readyState 4 = enough data), whether
# anything is wider than its box (the page, a section, a card, a table's scroll box; folded details aside)
# and how many marks each chart drew.
PROBE = """<script>
window.addEventListener("load", () => {
  document.querySelectorAll("video").forEach((v, i) => {
    const tell = () => console.log(`probe video ${i} ready=${v.readyState} error=${v.error ? v.error.code : 0}`);
    v.addEventListener("loadeddata", tell); v.addEventListener("error", tell); v.load();
  });
  setTimeout(() => {
    const wide = [];
    if (document.documentElement.scrollWidth > window.innerWidth + 1) wide.push("page");
    document.querySelectorAll("section, .card, .scroll").forEach((el) => {
      if (!el.closest("details:not([open])") && el.scrollWidth > el.clientWidth + 1)
        wide.push(`${(el.closest("section") || {}).id}/${el.className}:${el.scrollWidth}>${el.clientWidth}`);
    });
    console.log(`probe layout overflow=[${wide.join(" ")}]`);
    document.querySelectorAll("div[id^=chart-]").forEach((d) => console.log(
      `probe chart ${d.id} drawn=${d.classList.contains("js-plotly-plot")} marks=${
        d.querySelectorAll(".point, .bars path, .scatterlayer .trace path").length}`));
  }, 300);
});
</script></body>"""


def browse(page: Path, html: str, width: int = 1280) -> tuple[list[str], Path]:
    """Open `html` (with PROBE) in headless Chromium at `width` px: its console lines and a screenshot."""
    import subprocess

    probe = page.with_name(f"probe-{page.stem}.html")
    probe.write_text(html.replace("</body>", PROBE))
    shot = page.with_name(f"{page.stem}-{width}.png")
    cmd = [
        str(find_chromium()), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=8000", f"--window-size={width},2400",
        f"--screenshot={shot}", probe.as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line], shot


NO_BROWSER = "Chromium is not installed (scripts/browser-local.sh installs Debian's chromium)"


@pytest.mark.skipif(find_chromium() is None, reason=NO_BROWSER)
def test_report_opens_in_headless_chromium_without_console_errors(report_html: tuple[Path, str]) -> None:
    import cv2

    path, html = report_html
    console, shot = browse(path, html, 1280)
    errors = [line for line in console if "probe " not in line]
    assert not errors, errors  # the page itself logs nothing: no errors, no warnings
    videos = [line for line in console if "probe video" in line]
    assert len(videos) == 8 and all("ready=4 error=0" in line for line in videos), videos
    layout = [line for line in console if "probe layout" in line]
    assert len(layout) == 1 and "overflow=[]" in layout[0], layout  # nothing wider than its box at 1280 px
    charts = [line for line in console if "probe chart" in line]
    assert len(charts) == 4, console
    assert all("drawn=true" in c and int(c.split("marks=")[1].split('"')[0]) > 0 for c in charts), charts
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[1] == 1280 and float(image.std()) > 20  # not a blank page


def test_report_covers_the_sweep_and_lists_earlier_runs_apart(tmp_path: Path) -> None:
    """An earlier sweep's job left in the run folder (sidecar + benchmark files) is listed under Earlier runs
    and counted nowhere else: not in the header, the per-rule table or the charts."""
    results = make_results(tmp_path, labels=("cpu-test",))
    run = results / "cpu-test"
    old = run / "diffuse" / "0123456789abcdef"
    old.mkdir(parents=True)
    (old / "robot_old.json").write_text(json.dumps({"steps": 35, "seconds_per_step": 9.5}))
    for rule in ("diffuse", "encode"):
        tsv = run / "benchmarks" / rule / "0123456789abcdef" / "robot_old.tsv"
        tsv.parent.mkdir(parents=True)
        tsv.write_text(BENCH_HEADER + "999.0\t0:16:39\t1\t1\t1\t1\t1\t1\t1\t1\n")
    out = build_report(
        results, tmp_path / "r.html", ReportOptions(metrics=False, sweep=run / "manifest.json")
    )
    html = out.read_text()
    header = html.split("</header>", 1)[0]
    assert "cpu-test (4 jobs" in header and "1 earlier jobs" in header
    rules = re.search(r'<section id="rules">(.*?)<details>', html, re.S)
    assert rules and "999" not in rules[1] and "robot_old" not in rules[1]
    diffuse_row = re.search(r"<td>diffuse</td>\s*<td>(\d+)</td>", rules[1])
    assert diffuse_row and diffuse_row[1] == "4"
    charts = html.split('<section id="charts">', 1)[1].split("</section>", 1)[0]
    assert "robot_old" not in charts and "9.5" not in charts
    earlier = re.search(r'<section id="earlier">(.*?)</section>', html, re.S)
    assert earlier and "robot_old" in earlier[1] and "0123456789abcdef" in earlier[1]
    assert "robot_old" not in html.replace(earlier[1], "")

    # a sweep that shares no job with a run folder leaves that folder out, listed as earlier runs
    other = json.loads((run / "manifest.json").read_text())
    other["jobs"] = other["jobs"][:1]
    (tmp_path / "one.json").write_text(json.dumps(other))
    html = build_report(
        results, tmp_path / "r1.html", ReportOptions(metrics=False, sweep=tmp_path / "one.json")
    ).read_text()
    assert "cpu-test (1 jobs" in html and "4 earlier jobs" in html


def test_every_metric_has_its_reference_points_and_noise_reads_as_noise(tmp_path: Path) -> None:
    from cosmos_t2.report.data import compute_references, find_runs
    from cosmos_t2.video import write_video

    results = make_results(tmp_path, labels=("cpu-test",))
    run = results / "cpu-test"
    refs = compute_references(find_runs(results), max_frames=6)
    assert len(refs) == 2  # one per control set (edge, vis), shared by the jobs of each
    for scores in refs.values():
        (metric,) = scores["input"]
        assert scores["input"][metric] > 0.99  # the input is what its controls were computed from
        assert scores["noise"][metric] < scores["input"][metric]
        assert scores["unrelated"][metric] < scores["input"][metric]
    # the output of one edge job replaced by pure noise: the report says so
    data = json.loads((run / "manifest.json").read_text())
    victim = next(
        j for j in data["jobs"] if j["name"] == "robot_edge" and j["settings"]["control_weight"] == 0.5
    )
    noise = np.random.default_rng(3).integers(0, 256, frames(0).shape, dtype=np.uint8)
    write_video(run / victim["paths"]["video"], noise, 16)
    html = build_report(results, tmp_path / "r.html", ReportOptions(metric_frames=6)).read_text()
    fidelity = re.search(r'<section id="fidelity">(.*?)</section>', html, re.S)
    assert fidelity is not None
    rows = re.findall(r"<tr>(.*?)</tr>", fidelity[1], re.S)
    noisy = [r for r in rows if "control_weight=0.5" in r and "edge_f1" in r]
    faithful = [r for r in rows if "control_weight=1.0" in r and "edge_f1" in r]
    assert len(noisy) == 1 and "no better than" in noisy[0]
    assert len(faithful) == 1 and "of the way from the best floor to the input" in faithful[0]
    for name in ("input (ceiling)", "unrelated video (floor)", "noise (floor)"):
        assert f"<th>{name}</th>" in fidelity[1]
    chart = html.split('id="chart-fidelity"', 1)[1].split("</script>", 1)[0]
    assert all(name in chart for name in ("input (ceiling)", "noise (floor)", "unrelated video (floor)"))


def test_the_model_label_is_on_the_header_every_card_and_every_chart(report_html: tuple[Path, str]) -> None:
    _, html = report_html
    label = "tiny random-weight model"
    assert label in html.split("</header>", 1)[0] and 'id="model-banner"' in html
    cards = re.findall(r'<div class="card" id=.*?(?=<div class="card" id=|</section>)', html, re.S)
    assert len(cards) == 8 and all(f'<span class="model tiny">{label}</span>' in c for c in cards)
    charts = re.findall(r'id="(chart-[a-z-]+)"(.*?)</script>', html, re.S)
    assert len(charts) == 4 and all(f"outputs of the {label}" in body for _, body in charts)


def test_controls_given_as_files_get_thumbnails_and_cpu_runs_name_the_cpu(tmp_path: Path) -> None:
    from cosmos_t2.video import write_video

    results = make_results(tmp_path, labels=("cpu-test",))
    run = results / "cpu-test"
    data = json.loads((run / "manifest.json").read_text())
    job = data["jobs"][0]
    depth = tmp_path / "given-depth.mp4"
    write_video(depth, frames(4), 16)
    job["modalities"] = [*job["modalities"], "depth"]
    spec = json.loads((run / job["paths"]["spec"]).read_text())
    spec["depth"] = {"control_path": str(depth), "control_weight": 1.0}
    (run / job["paths"]["spec"]).write_text(json.dumps(spec))
    (run / "manifest.json").write_text(json.dumps(data))
    html = build_report(results, tmp_path / "r.html", ReportOptions(metrics=False)).read_text()
    card = html.split(f'id="cpu-test-{job["key"]}"', 1)[1].split('<div class="card"', 1)[0]
    assert 'alt="depth control (given)"' in card and 'alt="edge control (computed)"' in card
    assert "CPU: AMD EPYC 7B13, 2 threads" in html and "per GPU type" not in html
    # the diffuse rule's wall time split: start-up, imports, stages and the rest
    stages = re.search(r'<section id="stages">(.*?)</section>', html, re.S)
    assert stages is not None
    for part in ("process start", "imports", "diffusion", "other"):
        assert f"<th>{part}</th>" in stages[1]
    assert job["key"] not in stages[1]  # rows are named by sample and settings, not by hash
    # 10 s rule wall time - (0.05 + 2.5 + 0.2 + 1.0 + 0.1) s of parts = 6.15 s other
    assert "<td>6.15</td>" in stages[1]


def plot_of(html: str, div_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The data and layout a chart of the page hands Plotly.newPlot."""
    call = re.search(rf'Plotly\.newPlot\(\s*"{div_id}",\s*', html)
    assert call is not None, div_id
    decoder = json.JSONDecoder()
    data, end = decoder.raw_decode(html, call.end())
    layout, _ = decoder.raw_decode(html, html.index("{", end))
    return data, layout


def test_charts_label_their_axes_and_name_jobs_by_sample_and_settings(report_html: tuple[Path, str]) -> None:
    from cosmos_t2.report.charts import stage_colours

    _, html = report_html
    data, layout = plot_of(html, "chart-fidelity")
    yaxes = [v for k, v in layout.items() if k.startswith("yaxis")]
    xaxes = [v for k, v in layout.items() if k.startswith("xaxis")]
    assert len(yaxes) == 2 and len(xaxes) == 2  # edge_f1 and blur_ssim, each its own labelled panel
    for axis in yaxes:  # an explicit, shared 0..1 range with tick labels in every panel
        assert axis["range"] == [-0.02, 1.02] and axis["showticklabels"] is True
        assert "is better" in axis["title"]["text"]
    assert all(axis["title"]["text"] == "control_weight" for axis in xaxes)
    names = {trace["name"] for trace in data}
    assert {"floor band (noise, unrelated video)", "input (ceiling)", "robot_edge (cpu-test)"} <= names
    points = [t for t in data if t["mode"] == "markers"]
    assert all("control_weight=" in text and "robot_" in text for t in points for text in t["text"])

    data, _ = plot_of(html, "chart-stages")
    keys = {
        job["key"]
        for job in json.loads((report_html[0].parent / "cpu-test" / "manifest.json").read_text())["jobs"]
    }
    ticks = {x for trace in data for x in trace["x"]}
    assert ticks == {f"{s} · control_weight={w}" for s in ("robot_edge", "robot_vis") for w in (0.5, 1.0)}
    assert not ticks & keys  # no content hashes on the axis
    colours = {}
    for trace in data:
        colours.setdefault(trace["name"], trace["marker"]["color"])
        assert colours[trace["name"]] == trace["marker"]["color"]  # one colour per stage in every facet
    assert len(set(colours.values())) == len(colours)  # and no two stages share one
    # a stage keeps its colour whatever else is in the chart (another report, another sweep)
    assert stage_colours(["imports", "diffusion"])["diffusion"] == colours["diffusion"] != colours["imports"]
    assert stage_colours(list(colours))["imports"] == stage_colours(["imports"])["imports"]


def test_a_seed_sweep_spreads_its_points_and_colours_them_by_seed(tmp_path: Path) -> None:
    results = make_results(tmp_path, labels=("cpu-test",), grid={"seed": [1, 2, 3]})
    html = build_report(results, tmp_path / "r.html", ReportOptions(metric_frames=4)).read_text()
    data, layout = plot_of(html, "chart-fidelity")
    assert "against job" in html  # no numeric setting but the seed varies: one place per sample
    points = [t for t in data if t["mode"] == "markers"]
    assert {t["name"] for t in points} == {"seed 1", "seed 2", "seed 3"}
    assert len({t["marker"]["color"] for t in points}) == 3
    edge_x = sorted(x for t in points if t["xaxis"] == "x" for x in t["x"])
    assert len(edge_x) == 3 and len(set(edge_x)) == 3  # one column of seeds spread apart, not stacked
    assert layout["xaxis"]["ticktext"] == ["robot_edge"]
    assert all("seed=" in text for t in points for text in t["text"])


def test_every_job_card_says_what_its_fidelity_amounts_to(report_html: tuple[Path, str]) -> None:
    _, html = report_html
    cards = re.findall(r'<div class="card" id=.*?(?=<div class="card" id=|</section>)', html, re.S)
    assert len(cards) == 8
    for card in cards:
        verdicts = re.findall(r'<p class="verdict[^"]*"><b>(\w+):</b> ([^<]+)</p>', card)
        assert len(verdicts) == 1, card[-1500:]
        assert (
            verdicts[0][1].startswith(("no better than", "above the floors"))
            or "of the way" in verdicts[0][1]
        )


def make_infer_outputs(folder: Path, seeds: tuple[int, ...] = (1, 2)) -> Path:
    """What `cosmos-t2 infer` (one job, or a batch) leaves: <name>.mp4 beside its sidecar <name>.json."""
    from cosmos_t2.video import write_video

    folder.mkdir(parents=True)
    for seed in seeds:
        name = f"robot_edge_s{seed}"
        write_video(folder / f"{name}.mp4", frames(seed), 16)
        sidecar = {
            "name": name, "label": "tiny random-weight model", "tiny": True, "seed": seed, "steps": 2,
            "spec": {"name": name, "seed": seed, "num_steps": 2, "guidance": 3, "edge": {"control_weight": 1.0}},
            "outputs": {"video": f"{name}.mp4"}, "seconds_per_step": 0.1,
            "timings_s": {"load_models": 0.1, "diffusion": 0.2, "write": 0.1},
            "startup_s": {"process_start": 0.2, "imports": 3.0}, "peak_memory_gib": {"cpu_rss": 0.5},
            "device": {"type": "cpu", "name": "AMD EPYC", "threads": 1, "processes": 1},
        }  # fmt: skip
        (folder / f"{name}.json").write_text(json.dumps(sidecar))
    return folder


def test_report_of_plain_infer_outputs_a_batch_and_one_run_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cosmos_t2.cli import app

    runner = CliRunner()
    one = make_infer_outputs(tmp_path / "out", seeds=(7,))
    done = runner.invoke(app, ["report", str(one), "-o", str(tmp_path / "one.html")])
    assert done.exit_code == 0, done.output
    html = (tmp_path / "one.html").read_text()
    assert "out (1 jobs, CPU: AMD EPYC, 1 thread)" in html  # "1 thread", singular
    assert 'id="out-robot_edge_s7"' in html
    assert "&#34;control_weight&#34;: 1.0" in html  # the resolved spec, from the sidecar
    assert 'src="data:video/mp4;base64,' in html

    batch = tmp_path / "batch"
    make_infer_outputs(batch / "a", seeds=(1, 2))
    make_infer_outputs(batch / "b", seeds=(3,))
    done = runner.invoke(app, ["report", str(batch), "-o", str(tmp_path / "batch.html"), "--no-metrics"])
    assert done.exit_code == 0, done.output
    html = (tmp_path / "batch.html").read_text()
    assert "a (2 jobs" in html and "b (1 jobs" in html
    assert "seed = 1" in html and "seed = 2" in html  # the setting that tells a folder's jobs apart
    data, _ = plot_of(html, "chart-stages")
    assert {x for trace in data for x in trace["x"]} >= {"robot_edge_s1 · seed=1", "robot_edge_s2 · seed=2"}

    results = make_results(tmp_path / "wf", labels=("cpu-test",))
    done = runner.invoke(
        app, ["report", str(results / "cpu-test"), "-o", str(tmp_path / "run.html"), "--no-metrics"]
    )
    assert done.exit_code == 0, done.output
    assert "cpu-test (4 jobs" in (tmp_path / "run.html").read_text()


def test_demo_summary_says_what_was_made_what_it_is_and_where_the_report_is(tmp_path: Path) -> None:
    import subprocess
    import sys

    results = make_results(tmp_path, labels=("cpu-test",))
    proc = subprocess.run(
        [sys.executable, "-m", "cosmos_t2.report.summary", str(results), str(results / "report.html")],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3, lines
    assert lines[0] == f"made 4 videos in {results / 'cpu-test' / 'videos'}/"
    assert "noise from the tiny random-weight model" in lines[1]
    assert lines[2] == f"report: {results / 'report.html'}"


def test_a_sidecar_field_of_another_type_is_shown_as_missing_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from cosmos_t2.report.sidecars import read_sidecar

    results = make_results(tmp_path, labels=("cpu-test",))
    sidecars = sorted((results / "cpu-test").rglob("diffuse/*/*.json"))
    odd = sidecars[0]
    data = json.loads(odd.read_text())
    data.update(peak_memory_gib=3.5, device="cpu", timings_s={"load": "fast", "diffusion": 1.0}, label=7)
    odd.write_text(json.dumps(data))
    with caplog.at_level("WARNING"):
        out = build_report(results, tmp_path / "r.html", ReportOptions(metric_frames=4, metrics=False))
    assert out.is_file()
    warned = [r.getMessage() for r in caplog.records if str(odd) in r.getMessage()]
    assert any("'peak_memory_gib' is a number, not an object" in w for w in warned), warned
    assert len(warned) == len(set(warned))  # one line per file and field
    read = read_sidecar(odd)
    assert read.timings.peak_memory_gib == {} and read.device is None and read.label is None
    assert read.timings.stages_s == {"diffusion": 1.0}
