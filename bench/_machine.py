"""Machine description written next to every benchmark result (cores, CPU model, load, torch)."""

from __future__ import annotations

import os
import platform


def machine_info() -> dict:
    """nproc, CPU model, load average, total memory and library versions."""
    import torch

    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    try:
        import psutil

        mem_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    info = {"nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu_model": model, "memory_gb": mem_gb, "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()]}
    try:
        import nnunetv2  # noqa: F401
        from importlib.metadata import version

        info["nnunetv2"] = version("nnunetv2")
    except Exception:
        pass
    return info


def machine_line(info: dict) -> str:
    return (f"{info['nproc']} cores ({info['cpu_model']}), {info.get('memory_gb')} GB, torch {info['torch']}, "
            f"load average at start {info['load_average_1_5_15']}")


def load_note(info: dict) -> str:
    """Say whether other jobs shared the cores: a 1-minute load above 1.5 (of 2 cores) means they did."""
    if max(info["load_average_at_end"][0], info["load_average_1_5_15"][0]) > 1.5:
        return "Other jobs shared the machine while this ran (see the load averages): times are upper bounds."
    return "The machine was otherwise idle (1-minute load average below 1.5)."
