# The cosine part by torch's closed-form CosineAnnealingLR; warmup and floor by hand.
import torch as _torch


def _delegated_schedule(lr_scheduler):
    def cosine_with_warmup(step, *, warmup_steps, max_steps, max_lr, min_lr=0.0):
        if step < warmup_steps:
            return max_lr * step / warmup_steps
        if step >= max_steps:
            return min_lr
        opt = _torch.optim.SGD([_torch.zeros(1, requires_grad=True)], lr=max_lr)
        sched = lr_scheduler.CosineAnnealingLR(opt, T_max=max_steps - warmup_steps, eta_min=min_lr)
        sched.last_epoch = step - warmup_steps
        return float(sched._get_closed_form_lr()[0])

    return cosine_with_warmup
