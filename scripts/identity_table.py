"""One row per job folder: its mp4, latents and YUV sha256 (first 12 hex), steady s/step and total seconds, and
whether the mp4 bytes equal the first folder's. `python scripts/identity_table.py DIR [DIR ...]` (scripts/gpu_e2e.sh).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    rows, first = [], None
    for folder in map(Path, sys.argv[1:]):
        sidecars = [p for p in sorted(folder.glob("*.json")) if not p.name.startswith("batch")]
        if not sidecars:
            print(f"{folder}: no sidecar")
            continue
        record = json.loads(sidecars[0].read_text())
        ident = record.get("identity", {})
        video = folder / record.get("outputs", {}).get("video", "-")
        data = video.read_bytes() if video.is_file() else b""
        first = data if first is None else first
        rows.append(
            f"{folder.name:10} mp4 {ident.get('video_sha256', '-')[:12]} latents {ident.get('latents_sha256', '-')[:12]}"
            f" yuv {ident.get('yuv_sha256', '-')[:12]} det={record.get('acceleration', {}).get('deterministic')}"
            f" step={record.get('steady_seconds_per_step')} s/step={record.get('seconds_per_step')}"
            f" total={record.get('total_s')} same_mp4_as_first={data == first and bool(data)}"
        )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
