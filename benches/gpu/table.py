"""The table benches/gpu/run.sh prints last, from the JSON lines it gathered.

    python3 benches/gpu/table.py results.jsonl
"""

from __future__ import annotations

import json
import statistics
import sys


def main(path: str) -> None:
    rows = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            record = json.loads(line)
            rows[record["what"]] = record
    matmul = rows.get("bf16_matmul_8192", {}).get("tflops")
    if matmul:
        print(f"bf16 matrix rate (8192^3, torch): {matmul:.0f} TFLOP/s")
    print(f"{'case':<34} {'kiln s/img':>11} {'diffusers s/img':>16} {'kiln/diffusers':>15} {'img/s kiln':>11} {'peak MiB kiln':>14} {'peak GiB diffusers':>19}")
    cases = [("sdxl_b1", "sdxl_1024_steps30_batch1"), ("sdxl_b4", "sdxl_1024_steps30_batch4"),
             ("sd15_b1", "sd15_512_steps50_batch1")]
    for kiln_name, peer_name in cases:
        kiln = rows.get(f"kiln_{kiln_name}")
        peer = rows.get(peer_name)
        k = statistics.median(kiln["seconds_per_image"]) if kiln and kiln["seconds_per_image"] else None
        p = peer["seconds_per_call"] / int(peer_name.rsplit("batch", 1)[1]) if peer else None
        ratio = f"{k / p:.2f}" if k and p else "-"
        print(f"{peer_name:<34} {k or float('nan'):>11.3f} {p or float('nan'):>16.3f} {ratio:>15} "
              f"{(1 / k if k else float('nan')):>11.2f} {kiln.get('peak_device_mib_nvidia_smi', 0) if kiln else 0:>14} "
              f"{(peer.get('peak_gib') if peer else None) or float('nan'):>19.1f}")
    for name, record in rows.items():
        if name.endswith("x128") or name.endswith("x64"):
            share = f" ({record['tflops'] / matmul:.0%} of the matrix rate)" if matmul else ""
            print(f"diffusers UNet CFG call {name}: {record['seconds'] * 1000:.1f} ms, "
                  f"{record['flops'] / 1e12:.2f} TFLOP, {record['tflops']:.0f} TFLOP/s{share}")


if __name__ == "__main__":
    main(sys.argv[1])
