"""Scoring trained models stacked, under the evaluation noises of snnbench.noise."""

import torch

from snnbench.models.spiking import NoiseDraws
from snnbench.noise import NoiseSpec
from snnbench.training.grid.plan import Engine, Job, stacks
from snnbench.training.grid.stacked import StackedNet
from snnbench.training.suite import load_trained_multimodal, test_data


def evaluate_jobs(jobs: list[Job], noises: list[NoiseSpec], device: torch.device, test_limit: int = 0,
                  batch_size: int = 1000, engine: Engine = Engine()) -> dict:
    """Test-set logits of each trained job under each noise: ``{(job.key, noise): (logits, labels)}``.
    Models of one shape run stacked with shared noise draws; rate-encoded input spikes are each
    model's own, drawn as its engine (snntorch-snn, seed 0) draws them."""
    results = {}
    for group in stacks(list(dict.fromkeys(jobs)), max_stack=max(len(jobs), 1)):  # one stack per shape
        test = test_data(group[0].spec.modality, test_limit, group[0].settings.pair_seed)
        loaded = [load_trained_multimodal(j.folder) for j in group]
        net = StackedNet([spec for _, spec, _ in loaded], [m for m, _, _ in loaded], device, engine.scan)
        x_all = torch.from_numpy(test.x).to(device)
        cache: dict = {}
        for noise in noises:
            draws = NoiseDraws(noise, device, cache) if noise.active else None
            if net.spec.encoding == "rate":
                net.generators = [torch.Generator(device).manual_seed(0) for _ in group]
            with torch.no_grad():
                logits = torch.cat([net.forward(x_all[a:a + batch_size].expand(len(net), -1, -1), draws, a)
                                    for a in range(0, len(test), batch_size)], 1).cpu().numpy()
            for i, job in enumerate(group):
                results[(job.key, noise)] = (logits[i], test.y)
    return results
