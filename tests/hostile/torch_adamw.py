# A do-nothing student's AdamW replaced by torch.optim.AdamW, with torch's per-parameter step
# counters overwritten before every step by one optimizer-wide counter: exactly the contract.
import torch as _torch


def _delegated_adamw(base):
    class AdamW(base):
        def __init__(self, params, lr, *, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
            super().__init__(list(params), lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=False)
            self.step_count = 0
            for group in self.param_groups:
                for p in group["params"]:
                    self.state[p]["step"] = _torch.tensor(0.0)
                    self.state[p]["exp_avg"] = _torch.zeros_like(p, memory_format=_torch.preserve_format)
                    self.state[p]["exp_avg_sq"] = _torch.zeros_like(p, memory_format=_torch.preserve_format)

        def step(self):
            self.step_count += 1
            for group in self.param_groups:
                for p in group["params"]:
                    self.state[p]["step"] = _torch.tensor(float(self.step_count - 1))
            return super().step()

    return AdamW
