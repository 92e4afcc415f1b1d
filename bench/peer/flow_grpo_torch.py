#!/usr/bin/python3
"""
The PyTorch peer of etaflow's Flow-GRPO iteration (bench/rl.ts, `flow_grpo_tiny_unet`): the same network
(the tiny U-Net of test/fixtures/models/make-fixtures.py, all weights trained), batch, steps and KL
reference, written as flow_grpo's train_sd3.py does it in eager PyTorch (Debian's python3-torch, CPU):

  rollout   P prompts × G samples, N steps of flow_grpo's `sde_step_with_logprob` (noise level a), no grad
  reward    a 784-512-512-10 MLP classifier's log-softmax (etaflow's reward classifier's size), no grad
  advantage (r − mean)/(std + 1e-4) over the batch (global_std)
  update    ⌊N·0.99⌋ trained steps per trajectory in minibatches of `batch` trajectories: the policy's mean
            with grad, the reference's (the frozen initial network) without, PPO-clip (ε 1e-4) + β·KL
            (flow_grpo's code form), AdamW (lr 3e-5, weight decay 1e-4), gradient norm clipped to 1

Prints one JSON line: seconds per iteration (median over `--iterations` after one warm-up) and the setup.
"""
import argparse
import copy
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "test", "fixtures", "models"))
from importlib import import_module  # noqa: E402

TinyUNet = import_module("make-fixtures").TinyUNet


def sde_step(model_out, sigma, sigma_next, x, a, prev=None, generator=None):
    """flow_grpo's sde_step_with_logprob: the mean, the sample and its log-prob (mean over dims)."""
    dt = sigma_next - sigma
    std = math.sqrt(sigma / (1 - sigma)) * a
    mean = x * (1 + std ** 2 / (2 * sigma) * dt) + model_out * (1 + std ** 2 * (1 - sigma) / (2 * sigma)) * dt
    scale = std * math.sqrt(-dt)
    if prev is None:
        prev = mean + scale * torch.randn(x.shape, generator=generator)
    lp = -((prev.detach() - mean) ** 2) / (2 * scale ** 2) - math.log(scale) - math.log(math.sqrt(2 * math.pi))
    return prev, mean, lp.mean(dim=(1, 2, 3)), scale


def iteration(policy, ref, classifier, opt, args, g):
    n = args.prompts * args.group
    sigmas = [1 - k / args.steps for k in range(args.steps)] + [0.0]
    sigmas[0] = 1 - 1e-3  # flow_grpo's SDE needs σ < 1 at the first step
    with torch.no_grad():
        x = torch.randn(n, 1, 28, 28, generator=g)
        xs, lps = [x], []
        for k in range(args.steps):
            t = torch.full((n,), sigmas[k])
            x, _, lp, _ = sde_step(policy(x, t), sigmas[k], sigmas[k + 1], x, args.noise, generator=g)
            xs.append(x)
            lps.append(lp)
        reward = classifier(x.view(n, -1))[:, 7]
        adv = (reward - reward.mean()) / (reward.std(unbiased=False) + 1e-4)
    trained = int(args.steps * 0.99)
    for start in range(0, n, args.batch):
        rows = slice(start, start + args.batch)
        opt.zero_grad()
        for k in range(trained):
            t = torch.full((rows.stop - rows.start,), sigmas[k])
            x_k, x_next = xs[k][rows], xs[k + 1][rows]
            _, mean, lp, scale = sde_step(policy(x_k, t), sigmas[k], sigmas[k + 1], x_k, args.noise, prev=x_next)
            with torch.no_grad():
                _, ref_mean, _, _ = sde_step(ref(x_k, t), sigmas[k], sigmas[k + 1], x_k, args.noise, prev=x_next)
            ratio = torch.exp(lp - lps[k][rows])
            a = adv[rows]
            pg = torch.maximum(-a * ratio, -a * torch.clamp(ratio, 1 - 1e-4, 1 + 1e-4)).mean()
            kl = (((mean - ref_mean) ** 2).mean(dim=(1, 2, 3)) / (2 * scale ** 2)).mean()
            ((pg + args.beta * kl) / trained).backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--beta", type=float, default=0.01)
    p.add_argument("--noise", type=float, default=0.7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iterations", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    policy = TinyUNet()
    ref = copy.deepcopy(policy).eval()
    for q in ref.parameters():
        q.requires_grad_(False)
    classifier = torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.SiLU(), torch.nn.Linear(512, 512), torch.nn.SiLU(),
        torch.nn.Linear(512, 10), torch.nn.LogSoftmax(dim=-1)).eval()
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-5, weight_decay=1e-4)
    g = torch.Generator().manual_seed(1)
    iteration(policy, ref, classifier, opt, args, g)  # warm-up
    times = []
    for _ in range(args.iterations):
        t0 = time.perf_counter()
        iteration(policy, ref, classifier, opt, args, g)
        times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({"seconds": times[len(times) // 2], "all": times, "torch": torch.__version__,
                      "threads": args.threads, "trajectories": args.prompts * args.group, "steps": args.steps}))


if __name__ == "__main__":
    main()
