"""The Imp paper's reported figures, as data, for comparison beside this workflow's own (dashboards,
model cards, the paper-size latency report). Source: the paper's Table 3 (ten benchmarks, 16-bit)
and Table 4 (llama.cpp at 16/8/4 bits on an RTX 3090 and two Snapdragon phones)."""

from __future__ import annotations

# Table 3: headline per benchmark (VQAv2/VizWiz/TextVQA soft accuracy, GQA and SQA-IMG accuracy, POPE
# mean F1, MME perception out of 2000, MMBench and MMBench-CN circular accuracy, MM-Vet judge mean).
TABLE3 = {
    "Imp-2B": {
        "vqav2": 79.2,
        "gqa": 61.9,
        "vizwiz": 39.6,
        "sqa": 66.1,
        "textvqa": 54.5,
        "pope": 86.7,
        "mme": 1304.8,
        "mmbench": 63.8,
        "mmbench_cn": 61.3,
        "mmvet": 33.5,
    },
    "Imp-3B": {
        "vqav2": 81.2,
        "gqa": 63.5,
        "vizwiz": 54.1,
        "sqa": 72.8,
        "textvqa": 59.8,
        "pope": 88.0,
        "mme": 1446.4,
        "mmbench": 72.9,
        "mmbench_cn": 46.7,
        "mmvet": 43.3,
    },
    "Imp-4B": {
        "vqav2": 81.5,
        "gqa": 63.5,
        "vizwiz": 51.2,
        "sqa": 78.3,
        "textvqa": 60.2,
        "pope": 86.9,
        "mme": 1507.7,
        "mmbench": 73.3,
        "mmbench_cn": 61.1,
        "mmvet": 44.6,
    },
}

# Table 4: per model and precision, the files' size (GB), SQA-IMG and MMB, and the latency per hardware
# (T_VE s, S_prompt tok/s, S_gen tok/s, T_total s). The paper names bits, not llama.cpp's quantization
# types; BITS maps this project's GGUF levels onto them for side-by-side plots.
_HARDWARE = ("RTX 3090", "Snapdragon 8 Gen 3", "Snapdragon 888")


def _latency(*rows: tuple[float, float, float, float]) -> dict[str, dict[str, float]]:
    return {
        hw: {"t_ve_s": r[0], "s_prompt_tps": r[1], "s_gen_tps": r[2], "t_total_s": r[3]}
        for hw, r in zip(_HARDWARE, rows, strict=False)
    }


TABLE4 = {
    "Imp-3B@384": {
        "16-bit": {"size_gb": 6.0, "sqa": 73.13, "mmbench": 71.05, "latency": _latency((0.045, 6125.18, 97.91, 0.83))},
        "8-bit": {
            "size_gb": 3.6,
            "sqa": 73.03,
            "mmbench": 71.05,
            "latency": _latency(
                (0.043, 4731.30, 138.17, 0.68), (8.57, 15.73, 11.91, 63.57), (17.52, 10.10, 5.82, 105.80)
            ),
        },
        "4-bit": {
            "size_gb": 2.3,
            "sqa": 72.88,
            "mmbench": 70.88,
            "latency": _latency(
                (0.043, 4814.34, 167.17, 0.59), (8.88, 14.02, 11.02, 70.12), (16.9, 9.89, 6.74, 105.05)
            ),
        },
    },
    "Imp-3B@196": {
        "16-bit": {"size_gb": 6.0, "sqa": 68.37, "mmbench": 63.40, "latency": _latency((0.018, 6325.2, 101.71, 0.69))},
        "8-bit": {
            "size_gb": 3.6,
            "sqa": 68.42,
            "mmbench": 63.66,
            "latency": _latency(
                (0.017, 3744.14, 137.57, 0.57), (2.09, 17.12, 13.63, 21.24), (4.02, 11.68, 6.86, 34.65)
            ),
        },
        "4-bit": {
            "size_gb": 2.3,
            "sqa": 68.47,
            "mmbench": 63.14,
            "latency": _latency(
                (0.017, 3930.54, 170.42, 0.48),
                (2.10, 15.64, 12.73, 22.72),
                (4.02, 10.84, 8.31, 34.37),
            ),
        },
    },
}

BITS = {"F16": "16-bit", "Q8_0": "8-bit", "Q4_K_M": "4-bit"}


def table4_sizes_gb(model: str) -> dict[str, float]:
    """Table 4's file size (GB) of ``model`` per GGUF level of this project."""
    return {level: TABLE4[model][bits]["size_gb"] for level, bits in BITS.items() if bits in TABLE4[model]}
