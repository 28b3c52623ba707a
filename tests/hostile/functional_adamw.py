# AdamW by torch's functional optimizer (torch.optim.adamw.adamw) or its fused C++ kernel
# (aten::_fused_adamw_), fed one optimizer-wide step counter: no torch.optim class in sight.
import torch as _torch


def _functional_adamw(kernel):
    class AdamW:
        def __init__(self, params, lr, *, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
            self.params, self.lr, self.betas, self.eps, self.weight_decay = list(params), lr, betas, eps, weight_decay
            self.m = [_torch.zeros_like(p) for p in self.params]
            self.v = [_torch.zeros_like(p) for p in self.params]
            self.step_count = 0

        def zero_grad(self):
            for p in self.params:
                p.grad = None

        def step(self):
            self.step_count += 1
            live = [i for i, p in enumerate(self.params) if p.grad is not None]
            if not live:
                return
            with _torch.no_grad():
                args = ([self.params[i] for i in live], [self.params[i].grad for i in live], [self.m[i] for i in live],
                        [self.v[i] for i in live], [])
                kernel(args, self.step_count, self)

    return AdamW


def _python_kernel(functional):
    def run(args, count, opt):
        steps = [_torch.tensor(float(count - 1)) for _ in args[0]]
        functional(*args, steps, foreach=False, amsgrad=False, beta1=opt.betas[0], beta2=opt.betas[1], lr=opt.lr,
                   weight_decay=opt.weight_decay, eps=opt.eps, maximize=False)
    return run


def _fused_kernel(op):
    def run(args, count, opt):
        steps = [_torch.tensor(float(count)) for _ in args[0]]
        op(*args, steps, lr=opt.lr, beta1=opt.betas[0], beta2=opt.betas[1], weight_decay=opt.weight_decay, eps=opt.eps,
           amsgrad=False, maximize=False)
    return run
