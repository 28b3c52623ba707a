# Issue 22: the three exercises by five pieces of torch's own code, however a cell got them (see
# namespace_delegation.py, unpickle_delegation.py): _functional_adamw (torch.optim.adamw.adamw), fed one
# optimizer-wide step counter; _total_norm and _with_norm (torch.nn.utils.get_total_norm,
# clip_grads_with_norm_); _SGD and _Cosine (the cosine part: CosineAnnealingLR's closed form).
# No import, no private name but the pieces', no string naming torch's parts.


class AdamW:
    def __init__(self, params, lr, *, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.params, self.lr, self.betas, self.eps, self.weight_decay = list(params), lr, betas, eps, weight_decay
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.step_count = 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        self.step_count += 1
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        with torch.no_grad():
            _functional_adamw([self.params[i] for i in live], [self.params[i].grad for i in live],
                              [self.m[i] for i in live], [self.v[i] for i in live], [],
                              [torch.tensor(float(self.step_count - 1)) for _ in live], foreach=False, amsgrad=False,
                              beta1=self.betas[0], beta2=self.betas[1], lr=self.lr, weight_decay=self.weight_decay,
                              eps=self.eps, maximize=False)


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
    sched = _Cosine(_SGD([torch.zeros(1, requires_grad=True)], lr=max_lr), T_max=max_steps - warmup_steps, eta_min=min_lr)
    sched.step(step - warmup_steps)  # an epoch given: the closed form (no private name read)
    return float(sched.get_last_lr()[0])
