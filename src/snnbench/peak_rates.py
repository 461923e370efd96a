"""Datasheet peak rates (dense, no sparsity) of the GPUs the suite's timings were taken on, so that a
measured time can stand beside the time its arithmetic and its memory traffic need at peak."""

PEAK_RATES = {"NVIDIA H200": {"fp32_flops": 66.9e12, "tf32_flops": 494.7e12, "bf16_flops": 989.4e12,
                              "memory_bytes_per_s": 4.8e12}}
